"""VGG-Face: VGG-16 in the layout of the widely used PyTorch conversion ``vgg_face_dag.pth``.

Parkhi et al.'s VGG-Face (BMVC 2015), as converted from MatConvNet by Albanie
(``vgg_face_dag.py``): 13 convolutions 3x3 (padding 1) with ReLU in five blocks, each block
ended by a 2x2 max-pool, then ``fc6`` (25088 -> 4096), ReLU, dropout, ``fc7`` (4096 -> 4096),
ReLU, dropout, ``fc8`` (4096 -> classes). Parameters carry the conversion's names
(``conv1_1.weight`` ... ``conv5_3.bias``, ``fc6.weight`` [shape=(4096, 25088)], ``fc7.*``,
``fc8.weight`` [shape=(2622, 4096)]), so its state_dict loads with ``load_state_dict``.

Input: ``x`` [shape=(B, 3, 224, 224)] float, RGB. The conversion's meta gives mean
(129.186279296875, 104.76238250732422, 93.59396362304688) and std (1, 1, 1) on 0-255 pixels;
on images scaled to [0, 1] that is ``mean = those / 255`` and ``std = 1 / 255``, which is
what :data:`VGGFACE_MEAN` / :data:`VGGFACE_STD` hold (``(x - mean) / std == 255 x - mean_255``).
Output: logits [shape=(B, num_classes)].

``pool5`` is followed by an adaptive average pool to ``pool_size`` (7 for the full model),
which is the identity at the designed input and lets other input sizes through.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mer_di.errors import ModelError
from mer_di.training.models.registry import ModelCfg, register_model
from mer_di.training.models.weights import load_matching, read_state_dict

VGGFACE_MEAN = (129.186279296875 / 255, 104.76238250732422 / 255, 93.59396362304688 / 255)
VGGFACE_STD = (1 / 255, 1 / 255, 1 / 255)
VGGFACE_CLASSES = 2622  # identities of the original face-recognition head

FULL = {"widths": (64, 128, 256, 512, 512), "fc": 4096, "pool_size": 7, "input_size": 224}
TINY = {"widths": (8, 16, 32, 32, 32), "fc": 64, "pool_size": 1, "input_size": 32}
_BLOCK_CONVS = (2, 2, 3, 3, 3)


class VGGFace(nn.Module):
    """VGG-16 with the ``vgg_face_dag`` parameter names; ``widths`` per block, ``fc`` units.

    ``forward(x)``: x [shape=(B, 3, S, S)] -> logits [shape=(B, num_classes)], where S is
    224 for the full model (32 for :data:`TINY`).
    """

    def __init__(self, num_classes: int = VGGFACE_CLASSES,
                 widths: tuple[int, ...] = FULL["widths"], fc: int = FULL["fc"],
                 pool_size: int = FULL["pool_size"], dropout: float = 0.5):
        super().__init__()
        self.conv_names: list[str] = []
        layers: list[tuple[str, nn.Module]] = []
        prev = 3
        for block, (width, n) in enumerate(zip(widths, _BLOCK_CONVS, strict=True), start=1):
            for i in range(1, n + 1):
                name = f"conv{block}_{i}"
                self.conv_names.append(name)
                layers.append((name, nn.Conv2d(prev, width, kernel_size=3, padding=1)))
                layers.append((f"relu{block}_{i}", nn.ReLU(inplace=True)))
                prev = width
            layers.append((f"pool{block}", nn.MaxPool2d(kernel_size=2, stride=2)))
        for name, layer in layers:
            self.add_module(name, layer)
        self._trunk = [name for name, _ in layers]
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.fc6 = nn.Linear(prev * pool_size * pool_size, fc)
        self.relu6 = nn.ReLU(inplace=True)
        self.dropout6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(fc, fc)
        self.relu7 = nn.ReLU(inplace=True)
        self.dropout7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(fc, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._trunk:
            x = getattr(self, name)(x)
        x = torch.flatten(self.pool(x), 1)
        x = self.dropout6(self.relu6(self.fc6(x)))
        x = self.dropout7(self.relu7(self.fc7(x)))
        return self.fc8(x)


def build_vggface(num_classes: int, *, pretrained: str | Path | None = None,
                  tiny: bool = False) -> tuple[VGGFace, int]:
    """A VGG-Face and its input side; ``pretrained`` a local ``vgg_face_dag``-layout file.

    The file must hold every ``conv*``/``fc6``/``fc7`` key with the model's shapes (``fc6``
    and ``fc7`` may also be stored as convolutions, [shape=(4096, 512, 7, 7)] and
    [shape=(4096, 4096, 1, 1)], and are reshaped); its ``fc8`` (any number of outputs) is
    discarded and ``fc8`` is a fresh ``Linear(fc, num_classes)``.
    """
    cfg = TINY if tiny else FULL
    model = VGGFace(num_classes, cfg["widths"], cfg["fc"], cfg["pool_size"])
    if pretrained is not None:
        state = _as_linear(read_state_dict(pretrained), model, pretrained)
        state = {k: v for k, v in state.items() if not k.startswith("fc8.")}
        load_matching(model, state, pretrained, head_prefixes=("fc8",), what="vggface")
    return model, cfg["input_size"]


def _as_linear(state: dict[str, torch.Tensor], model: VGGFace,
               source: str | Path) -> dict[str, torch.Tensor]:
    """Reshape fully connected weights stored as convolutions to the model's Linear shape."""
    own = model.state_dict()
    out = dict(state)
    for key in ("fc6.weight", "fc7.weight"):
        value = state.get(key)
        if value is None or value.dim() != 4:
            continue
        want = own[key].shape
        if value.shape[0] == want[0] and value[0].numel() == want[1]:
            out[key] = value.reshape(want)
        else:
            raise ModelError(f"vggface: weights file {source} does not fit: key {key!r} has "
                             f"shape {tuple(value.shape)}, which can't be reshaped to the "
                             f"model's {tuple(want)}")
    return out


def vggface_cfg(name: str, tiny: bool, backbone: str | None) -> ModelCfg:
    """VGG-Face's input (224; tiny 32) and the conversion's normalisation."""
    return ModelCfg(name, (TINY if tiny else FULL)["input_size"], VGGFACE_MEAN, VGGFACE_STD,
                    pair=False, weights_file="vgg_face_dag.pth")


register_model("vggface", vggface_cfg,
               lambda name, n, pretrained, tiny, backbone: build_vggface(
                   n, pretrained=pretrained, tiny=tiny)[0],
               obtain=lambda name, backbone: (
                   "VGG-Face (Parkhi et al., 2015) in PyTorch is vgg_face_dag.pth from Samuel "
                   "Albanie's converted models (www.robots.ox.ac.uk/~albanie/"
                   "pytorch-models.html); download it there and give its path"))
