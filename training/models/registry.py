"""The model registry: one name -> one builder, and what the training loop needs to feed it.

Registered names (:data:`MODEL_NAMES`): ``vggface`` (:mod:`.vggface`), ``vgg19``,
``resnet34``, ``efficientnet_b0``, ``vit_base_patch16_224`` (:mod:`.timm_models`),
``learnet`` (:mod:`.learnet`) and ``dianet`` (:mod:`.dianet`). Any other timm model name
(``timm.list_models()``, optionally ``name.tag``) is built through timm as well.

Nothing is downloaded: models start from random initialisation unless ``pretrained`` names a
local weights file (see :mod:`.weights` for the formats and the loading rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timm
from torch import nn

from mer_di.training.models.dianet import DEFAULT_BACKBONE, build_dianet
from mer_di.training.models.learnet import build_learnet
from mer_di.training.models.timm_models import (
    CACHE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    create_timm,
    load_timm_weights,
    norm_of,
    resolve_pretrained,
)
from mer_di.training.models.vggface import VGGFACE_MEAN, VGGFACE_STD, build_vggface
from mer_di.training.models.weights import ModelError

__all__ = ["MODEL_NAMES", "ModelError", "ModelInfo", "build_model", "is_known"]

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class ModelInfo:
    """How to feed a built model.

    Images are min-max scaled to [0, 1], resized to ``input_size`` square, then normalised
    ``(x - mean) / std`` per RGB channel. ``pair`` models take ``forward(onset, offset)``.
    """

    name: str
    input_size: int
    mean: Triple
    std: Triple
    pair: bool
    pretrained: str | None
    n_params: int


# name -> builder(name, num_classes, pretrained, tiny, backbone) -> (model, side, mean, std)
_Built = tuple[nn.Module, int, Triple, Triple]
_Builder = Callable[[str, int, str | Path | None, bool, str | None], _Built]


def _vggface(name, num_classes, pretrained, tiny, backbone) -> _Built:
    model, side = build_vggface(num_classes, pretrained=pretrained, tiny=tiny)
    return model, side, VGGFACE_MEAN, VGGFACE_STD


def _learnet(name, num_classes, pretrained, tiny, backbone) -> _Built:
    model, side = build_learnet(num_classes, pretrained=pretrained, tiny=tiny)
    return model, side, IMAGENET_MEAN, IMAGENET_STD


def _dianet(name, num_classes, pretrained, tiny, backbone) -> _Built:
    backbone = backbone or DEFAULT_BACKBONE
    if not timm.is_model(backbone):
        raise ModelError(f"dianet: backbone {backbone!r} is not a timm model name")
    model, side = build_dianet(num_classes, pretrained=pretrained, tiny=tiny, backbone=backbone)
    return (model, side, *norm_of(backbone))


def _timm(name, num_classes, pretrained, tiny, backbone) -> _Built:
    model, side = create_timm(name, num_classes, tiny=tiny)
    if pretrained is not None:
        load_timm_weights(model, name, pretrained)
    return (model, side, *norm_of(name))


_REGISTRY: dict[str, _Builder] = {
    "vggface": _vggface,
    "vgg19": _timm,
    "resnet34": _timm,
    "efficientnet_b0": _timm,
    "vit_base_patch16_224": _timm,
    "learnet": _learnet,
    "dianet": _dianet,
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
_PAIR = frozenset({"dianet"})


def is_known(name: str) -> bool:
    """Whether ``name`` is registered here or is a timm model name (``name.tag`` allowed)."""
    return name in _REGISTRY or timm.is_model(name)


def build_model(name: str, num_classes: int, *, pretrained: str | Path | None = None,
                tiny: bool = False, backbone: str | None = None) -> tuple[nn.Module, ModelInfo]:
    """Build model ``name`` with a ``num_classes`` head, and the :class:`ModelInfo` to feed it.

    ``pretrained``: a local weights file (never downloaded), or ``"cache"`` for a timm model:
    timm's weights where an earlier download left them in the local hub cache; ``tiny``:
    the small variant of the same architecture, for tests and CPU demos; ``backbone``:
    dianet's per-stream timm model (default ``resnet18``). The model takes ``x``
    [shape=(B, 3, S, S)], ``S = info.input_size`` (a pair model two such tensors) and
    returns logits [shape=(B, num_classes)]. Raises :class:`ModelError` for an unknown name, a bad
    ``num_classes``, a ``backbone`` for a model without one, or a weights file that does not fit.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"model {name!r}: num_classes must be a positive int, "
                         f"not {num_classes!r}")
    builder = _REGISTRY.get(name)
    if builder is None:
        if not timm.is_model(name):
            raise ModelError(f"unknown model {name!r}: not one of {', '.join(MODEL_NAMES)} "
                             "and not a timm model name")
        builder = _timm
    if backbone is not None and name not in _PAIR:
        raise ModelError(f"model {name!r} takes no backbone (got {backbone!r}); only "
                         f"{', '.join(sorted(_PAIR))} does")
    if pretrained is not None and str(pretrained) == CACHE:
        if builder is not _timm:
            raise ModelError(f"--pretrained cache: {name} has no timm weights to look for; "
                             "give a weights file")
        pretrained = resolve_pretrained(name, pretrained)
    model, side, mean, std = builder(name, num_classes, pretrained, tiny, backbone)
    info = ModelInfo(
        name=name,
        input_size=int(side),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        pair=name in _PAIR,
        pretrained=str(pretrained) if pretrained is not None else None,
        n_params=sum(p.numel() for p in model.parameters()),
    )
    return model, info
