"""LEARNet (Verma et al., "LEARNet: Dynamic Imaging Network for Micro Expression
Recognition", IEEE TIP 2019), after the authors' Keras model. Always trained from scratch.

Shapes of the full model (input 112, ``B`` the batch)::

    x                                            (B,   3, 112, 112)
    stem: conv 3x3/2 -> 16, ReLU                 (B,  16,  56,  56)
    four lateral branches k = 1..4, each
      a_k: conv 1x1/2 -> 16, ReLU                (B,  16,  28,  28)
      b_k: conv 3x3/2 -> 32, ReLU                (B,  32,  14,  14)
      c_k: conv 5x5/2 -> 64, ReLU                (B,  64,   7,   7)
    where branches 2 and 4 add in branches 1 and 3 at the 16- and 32-channel stages:
      a_2 <- BN(a_2 + a_1), b_2 <- BN(b_2 + b_1)   (b_2 is computed from the new a_2)
      a_4 <- BN(a_4 + a_3), b_4 <- BN(b_4 + b_3)
    concat(c_1..c_4), BN                         (B, 256,   7,   7)
    conv 3x3/2 -> 256, ReLU                      (B, 256,   4,   4)
    flatten, dense 256, ReLU, dropout 0.5        (B, 256)
    linear -> classes (softmax is in the loss)   (B, num_classes)

Parameter count with 8 classes: 1,866,824 (the paper's "about 1.87 M"; Keras' summary would
add the 704 batch-norm moving means/variances, which PyTorch keeps as buffers: 1,867,528).

Choices the description leaves open, made here: every convolution is followed by ReLU (the
count does not depend on it); an addition is taken after the ReLU of the branch's own
convolution; padding is 'same' in effect: symmetric ``k // 2``, which gives the output sizes of
Keras' 'same' (ceil(n / 2) at stride 2) but pads top/left as much as bottom/right, where
TensorFlow puts the odd pixel at the bottom/right.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mer_di.training.models.registry import ModelCfg, register_model
from mer_di.training.models.timm_models import IMAGENET_MEAN, IMAGENET_STD
from mer_di.training.models.weights import load_matching, read_state_dict

FULL = {"stem": 16, "widths": (16, 32, 64), "conv": 256, "dense": 256, "input_size": 112}
TINY = {"stem": 4, "widths": (4, 8, 16), "conv": 64, "dense": 32, "input_size": 56}


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=2, padding=k // 2),
                         nn.ReLU(inplace=True))


def _halved(side: int, times: int) -> int:
    for _ in range(times):
        side = (side + 1) // 2
    return side


class Branch(nn.Module):
    """One lateral branch: 1x1, 3x3, 5x5 convolutions, each stride 2.

    With ``fuse=True`` it adds a partner branch's 1x1 and 3x3 outputs to its own, each sum
    followed by batch norm.
    """

    def __init__(self, cin: int, widths: tuple[int, int, int], fuse: bool):
        super().__init__()
        self.conv1 = _conv(cin, widths[0], 1)
        self.conv3 = _conv(widths[0], widths[1], 3)
        self.conv5 = _conv(widths[1], widths[2], 5)
        self.bn1 = nn.BatchNorm2d(widths[0]) if fuse else None
        self.bn3 = nn.BatchNorm2d(widths[1]) if fuse else None

    def forward(self, x: torch.Tensor, partner: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [shape=(B, cin, H, W)] -> (a, b, c) at H/2, H/4, H/8."""
        a = self.conv1(x)
        if partner is not None:
            a = self.bn1(a + partner[0])
        b = self.conv3(a)
        if partner is not None:
            b = self.bn3(b + partner[1])
        return a, b, self.conv5(b)


class LEARNet(nn.Module):
    """``forward(x)``: x [shape=(B, 3, S, S)] -> logits [shape=(B, num_classes)].

    S is ``input_size`` (112 for the published model); the dense layer's input is sized from it.
    """

    def __init__(self, num_classes: int, input_size: int = FULL["input_size"],
                 stem: int = FULL["stem"], widths: tuple[int, int, int] = FULL["widths"],
                 conv: int = FULL["conv"], dense: int = FULL["dense"], dropout: float = 0.5):
        super().__init__()
        self.stem = _conv(3, stem, 3)
        self.branch1 = Branch(stem, widths, fuse=False)
        self.branch2 = Branch(stem, widths, fuse=True)
        self.branch3 = Branch(stem, widths, fuse=False)
        self.branch4 = Branch(stem, widths, fuse=True)
        self.bn_concat = nn.BatchNorm2d(4 * widths[2])
        self.conv_out = _conv(4 * widths[2], conv, 3)
        side = _halved(input_size, 5)
        self.fc = nn.Linear(conv * side * side, dense)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dense, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        a1, b1, c1 = self.branch1(x)
        _, _, c2 = self.branch2(x, (a1, b1))
        a3, b3, c3 = self.branch3(x)
        _, _, c4 = self.branch4(x, (a3, b3))
        x = self.bn_concat(torch.cat([c1, c2, c3, c4], dim=1))
        x = torch.flatten(self.conv_out(x), 1)
        return self.head(self.dropout(self.relu(self.fc(x))))


def build_learnet(num_classes: int, *, pretrained: str | Path | None = None,
                  tiny: bool = False) -> tuple[LEARNet, int]:
    """A LEARNet and its input side (112; tiny: 56 with a quarter of the widths).

    ``pretrained``: a local state_dict of this module (e.g. saved by an earlier run); its
    ``head`` is kept only where it has ``num_classes`` outputs.
    """
    cfg = TINY if tiny else FULL
    model = LEARNet(num_classes, cfg["input_size"], cfg["stem"], cfg["widths"], cfg["conv"],
                    cfg["dense"])
    if pretrained is not None:
        load_matching(model, read_state_dict(pretrained), pretrained, ("head",), what="learnet")
    return model, cfg["input_size"]


def learnet_cfg(name: str, tiny: bool, backbone: str | None) -> ModelCfg:
    """LEARNet's input (112; tiny 56), ImageNet's normalisation, trained from scratch."""
    return ModelCfg(name, (TINY if tiny else FULL)["input_size"], IMAGENET_MEAN, IMAGENET_STD,
                    pair=False, weights_file=None, from_scratch=True)


register_model("learnet", learnet_cfg,
               lambda name, n, pretrained, tiny, backbone: build_learnet(
                   n, pretrained=pretrained, tiny=tiny)[0])
