"""The optical-flow models of the field, trained from scratch: STSTNet and OFF-ApexNet.

Both are fed a clip's flow phase, not a dynamic image (``ModelCfg.input_kind == "flow"``):
``x`` [shape=(B, 3, 28, 28), float32], channels u (horizontal flow), v (vertical flow) and
optical strain, in that order, scaled by :func:`mer_di.training.flow_input.prepare_flow`
(u, v in [-1, 1], strain in [0, 1]). OFF-ApexNet reads u and v and ignores the strain
channel, so that every flow model takes the same tensor.

STSTNet (Liong, Gan, See, Khor, Huang, "Shallow Triple Stream Three-dimensional CNN
(STSTNet) for Micro-expression Recognition", FG 2019, arXiv:1902.03634; the MEGC2019
composite baseline), after the paper's Table I and the authors' code (github
christy1206/STSTNet: ``STSTNet.mat`` for MATLAB, ``main.py`` for PyTorch)::

    x (u, v, strain)                              (B,  3, 28, 28)
    three streams over the whole x, k = 3, 5, 8 kernels:
      conv 3x3/1 'same' -> k, ReLU, BN            (B,  k, 28, 28)
      max pool 3x3/3 'same', dropout 0.5          (B,  k, 10, 10)
    concat                                        (B, 16, 10, 10)
    average pool 2x2/2                            (B, 16,  5,  5)
    flatten, linear -> classes                    (B, num_classes)

Parameters with 3 classes: 1,683 = convolutions 448 + batch norms' scales and shifts 32 +
linear 1,203; the same count as the authors' PyTorch ``STSTNet()`` (its layers are these).
The paper states 1,670 ("learnable parameters size (i.e., 1670 of weights and biases)",
Section IV, and 0.00167 million in its Table V), 13 fewer (0.8%); its Table I's layers
give 1,651 without batch norms and 1,683 with the batch norms that the authors' MATLAB
(``batchnorm_1`` ... in ``STSTNet.mat``) and PyTorch networks have, so the 1,670 is
neither. The authors' PyTorch code pads the convolutions by 2 (30x30 maps, then pooled
with padding 1 to the same 10x10); this module pads by 1, the 'same' of Table I and of the
MATLAB network; the count is the same.

OFF-ApexNet (Gan, Liong, Yau, Huang, Tan, "OFF-ApexNet on micro-expression recognition
system", Signal Processing: Image Communication 74, 2019, arXiv:1805.08699): two streams,
one over u and one over v (onset -> apex flow), each a LeNet-like pair of convolutions,
then two fully connected layers::

    u = x[:, 0:1], v = x[:, 1:2]                  (B,  1, 28, 28) each
    per stream:
      conv 5x5/1 'same' -> 6, ReLU, max pool 2/2  (B,  6, 14, 14)
      conv 5x5/1 'same' -> 16, ReLU, max pool 2/2 (B, 16,  7,  7)
    flatten both, concat                          (B, 1568)
    dense 1024, ReLU, dropout 0.5                 (B, 1024)
    dense 1024, ReLU, dropout 0.5                 (B, 1024)
    linear -> classes                             (B, num_classes)

Parameters with 3 classes: 2,664,475 (convolutions 5,144, dense layers 2,656,256, head
3,075). No code of OFF-ApexNet's authors was found to check against; the layers are those
of the re-implementation in github ECNU-Cross-Innovation-Lab/PRICAI2021-Off-TANet
(``models/off_apexnet.py``), whose README gives "2.66M" for it: equal to ours. The
STSTNet paper (three of the same authors, Table V) gives OFF-ApexNet 2.77 million at
28x28x2, 4% more; which layer accounts for the difference it does not say. Choice made
here: a ReLU after each convolution (that re-implementation has none; the count does not
depend on it).

Tiny variants (``tiny=True``), for tests and CPU demos: STSTNet is already tiny and is the
same network; OFF-ApexNet keeps its two streams at 28x28 with 4 and 8 kernels and dense
layers of 64 (56,419 parameters with 3 classes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mer_di.training.models.registry import ModelCfg, register_model
from mer_di.training.models.weights import load_matching, read_state_dict

INPUT_SIZE = 28  # both papers' input side, pixels
FLOW_MEAN = (0.0, 0.0, 0.0)  # prepare_flow has scaled the input already: identity
FLOW_STD = (1.0, 1.0, 1.0)
STSTNET_CHANNELS = ("u", "v", "strain")
OFF_APEXNET_CHANNELS = ("u", "v")

STSTNET_FULL = {"kernels": (3, 5, 8), "input_size": INPUT_SIZE}
STSTNET_TINY = STSTNET_FULL  # 1,683 parameters: nothing to shrink
OFF_APEXNET_FULL = {"widths": (6, 16), "dense": 1024, "input_size": INPUT_SIZE}
OFF_APEXNET_TINY = {"widths": (4, 8), "dense": 64, "input_size": INPUT_SIZE}


def _pooled(side: int, kernel: int, stride: int, padding: int) -> int:
    """The side of a pooled map (PyTorch's floor rule)."""
    return (side + 2 * padding - kernel) // stride + 1


class STSTNet(nn.Module):
    """``forward(x)``: x [shape=(B, 3, S, S)] (u, v, strain) -> logits [shape=(B, classes)].

    S is ``input_size`` (28 for the published model); the linear layer is sized from it.
    """

    def __init__(self, num_classes: int, input_size: int = INPUT_SIZE,
                 kernels: tuple[int, ...] = STSTNET_FULL["kernels"], dropout: float = 0.5):
        super().__init__()
        self.streams = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3, k, 3, padding=1), nn.ReLU(inplace=True),
                          nn.BatchNorm2d(k), nn.MaxPool2d(3, stride=3, padding=1),
                          nn.Dropout(dropout))
            for k in kernels)
        self.avgpool = nn.AvgPool2d(2, stride=2)
        side = _pooled(_pooled(input_size, 3, 3, 1), 2, 2, 0)
        self.head = nn.Linear(sum(kernels) * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([stream(x) for stream in self.streams], dim=1)
        return self.head(torch.flatten(self.avgpool(x), 1))


def _lenet_stream(widths: tuple[int, int]) -> nn.Sequential:
    """One OFF-ApexNet stream: [shape=(B, 1, S, S)] -> [shape=(B, widths[1], S/4, S/4)]."""
    return nn.Sequential(nn.Conv2d(1, widths[0], 5, padding=2), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2, stride=2),
                         nn.Conv2d(widths[0], widths[1], 5, padding=2), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2, stride=2))


class OFFApexNet(nn.Module):
    """``forward(x)``: x [shape=(B, C >= 2, S, S)] -> logits [shape=(B, classes)]; channel 0
    (u) feeds one stream, channel 1 (v) the other, any further channel is ignored."""

    def __init__(self, num_classes: int, input_size: int = INPUT_SIZE,
                 widths: tuple[int, int] = OFF_APEXNET_FULL["widths"],
                 dense: int = OFF_APEXNET_FULL["dense"], dropout: float = 0.5):
        super().__init__()
        self.u_stream = _lenet_stream(widths)
        self.v_stream = _lenet_stream(widths)
        side = _pooled(_pooled(input_size, 2, 2, 0), 2, 2, 0)
        self.fc = nn.Sequential(nn.Linear(2 * widths[1] * side * side, dense),
                                nn.ReLU(inplace=True), nn.Dropout(dropout),
                                nn.Linear(dense, dense), nn.ReLU(inplace=True),
                                nn.Dropout(dropout))
        self.head = nn.Linear(dense, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.flatten(self.u_stream(x[:, 0:1]), 1)
        v = torch.flatten(self.v_stream(x[:, 1:2]), 1)
        return self.head(self.fc(torch.cat([u, v], dim=1)))


def _load(model: nn.Module, pretrained: str | Path | None, what: str) -> nn.Module:
    """``pretrained``: a local state_dict of this module (e.g. saved by an earlier run); its
    ``head`` is kept only where it has the same number of classes."""
    if pretrained is not None:
        load_matching(model, read_state_dict(pretrained), pretrained, ("head",), what=what)
    return model


def build_ststnet(num_classes: int, *, pretrained: str | Path | None = None,
                  tiny: bool = False) -> STSTNet:
    """An STSTNet at 28x28 (``tiny`` is the same network)."""
    cfg = STSTNET_TINY if tiny else STSTNET_FULL
    return _load(STSTNet(num_classes, cfg["input_size"], cfg["kernels"]), pretrained, "ststnet")


def build_off_apexnet(num_classes: int, *, pretrained: str | Path | None = None,
                      tiny: bool = False) -> OFFApexNet:
    """An OFF-ApexNet at 28x28 (tiny: kernels 4, 8 and dense layers of 64)."""
    cfg = OFF_APEXNET_TINY if tiny else OFF_APEXNET_FULL
    return _load(OFFApexNet(num_classes, cfg["input_size"], cfg["widths"], cfg["dense"]),
                 pretrained, "off_apexnet")


def ststnet_cfg(name: str, tiny: bool, backbone: str | None) -> ModelCfg:
    """STSTNet's input: flow (u, v, strain) at 28, no further normalisation, from scratch."""
    return ModelCfg(name, INPUT_SIZE, FLOW_MEAN, FLOW_STD, pair=False, weights_file=None,
                    from_scratch=True, input_kind="flow", flow_channels=STSTNET_CHANNELS)


def off_apexnet_cfg(name: str, tiny: bool, backbone: str | None) -> ModelCfg:
    """OFF-ApexNet's input: flow (u, v read; strain ignored) at 28, from scratch."""
    return ModelCfg(name, INPUT_SIZE, FLOW_MEAN, FLOW_STD, pair=False, weights_file=None,
                    from_scratch=True, input_kind="flow", flow_channels=OFF_APEXNET_CHANNELS)


register_model("ststnet", ststnet_cfg,
               lambda name, n, pretrained, tiny, backbone: build_ststnet(
                   n, pretrained=pretrained, tiny=tiny))
register_model("off_apexnet", off_apexnet_cfg,
               lambda name, n, pretrained, tiny, backbone: build_off_apexnet(
                   n, pretrained=pretrained, tiny=tiny))
