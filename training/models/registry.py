"""The model registry, the way timm keeps one: a name -> the model's metadata (what it is
fed, which weights file it starts from) and its builder, registered next to the model's own
code (:func:`register_model`), and readable without building anything (:func:`model_cfg`).

Registered in :mod:`.vggface` (``vggface``), :mod:`.timm_models` (``vgg19``, ``resnet34``,
``efficientnet_b0``, ``vit_base_patch16_224``, and any other timm model name as the fallback),
:mod:`.learnet` and :mod:`.dianet`. Nothing is downloaded: models start from random
initialisation unless ``pretrained`` names a local weights file (see :mod:`.weights` for the
formats and the loading rule).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mer_di.errors import ModelError

Triple = tuple[float, float, float]
CACHE = "cache"  # --pretrained cache: timm's weights, if a download left them in a local cache


@dataclass(frozen=True)
class ModelCfg:
    """What a model is fed and starts from, known without building it.

    Images are min-max scaled to [0, 1], resized to ``input_size`` (pixels, square), then
    normalised ``(x - mean) / std`` per RGB channel. ``pair`` models take
    ``forward(onset, offset)``. ``weights_file``: the file name its pretrained weights go
    by in a weights folder (None: trained from scratch by design, ``from_scratch``).
    """

    name: str
    input_size: int
    mean: Triple
    std: Triple
    pair: bool
    weights_file: str | None
    from_scratch: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """How to feed a built model: its :class:`ModelCfg` values, the weights file it was
    loaded from (None: random initialisation) and its parameter count."""

    name: str
    input_size: int
    mean: Triple
    std: Triple
    pair: bool
    pretrained: str | None
    n_params: int


# cfg(name, tiny, backbone) -> ModelCfg
CfgFn = Callable[[str, bool, "str | None"], ModelCfg]
# build(name, num_classes, pretrained file or None, tiny, backbone) -> model
BuildFn = Callable[[str, int, "str | Path | None", bool, "str | None"], nn.Module]


@dataclass(frozen=True)
class _Entry:
    cfg: CfgFn
    build: BuildFn
    takes_backbone: bool  # a pair model over a chosen backbone (dianet)
    timm_weights: bool  # `--pretrained cache` can look for timm's weights
    known: Callable[[str], bool] | None = None  # the fallback: which names it takes


_REGISTRY: dict[str, _Entry] = {}
_FALLBACK: list[_Entry] = []


def register_model(name: str | None, cfg: CfgFn, build: BuildFn, *,
                   takes_backbone: bool = False, timm_weights: bool = False,
                   known: Callable[[str], bool] | None = None) -> None:
    """Register model ``name`` (its module calls this at import). ``name`` None with
    ``known`` registers the fallback for names no one registered (timm's)."""
    entry = _Entry(cfg, build, takes_backbone, timm_weights, known)
    if name is None:
        _FALLBACK[:] = [entry]
    else:
        _REGISTRY[name] = entry


def registered() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


def is_known(name: str) -> bool:
    """Whether ``name`` is registered or taken by the fallback (a timm name, ``name.tag``)."""
    return name in _REGISTRY or any(f.known(name) for f in _FALLBACK)


def _entry(name: str, backbone: str | None) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None:
        if not is_known(name):
            raise ModelError(f"unknown model {name!r}: not one of {', '.join(_REGISTRY)} "
                             "and not a timm model name")
        entry = _FALLBACK[0]
    if backbone is not None and not entry.takes_backbone:
        takers = sorted(n for n, e in _REGISTRY.items() if e.takes_backbone)
        raise ModelError(f"model {name!r} takes no backbone (got {backbone!r}); only "
                         f"{', '.join(takers)} does")
    return entry


def model_cfg(name: str, *, tiny: bool = False, backbone: str | None = None) -> ModelCfg:
    """The metadata of model ``name`` (tiny variant: ``tiny``; dianet's stream:
    ``backbone``), without building it.

    Raises
    ------
    ModelError
        An unknown name, a backbone for a model without one, or an unknown backbone.
    """
    return _entry(name, backbone).cfg(name, tiny, backbone)


def build_model(name: str, num_classes: int, *, pretrained: str | Path | None = None,
                tiny: bool = False, backbone: str | None = None) -> tuple[nn.Module, ModelInfo]:
    """Build model ``name`` with a ``num_classes`` head, and the :class:`ModelInfo` to feed it.

    Parameters
    ----------
    name : str
        A registered name or any timm model name.
    num_classes : int
        Outputs of the fresh head.
    pretrained : str or Path, optional
        A local weights file (never downloaded), or ``"cache"`` for a timm model: timm's
        weights where an earlier download left them in the local hub cache.
    tiny : bool
        The small variant of the same architecture, for tests and CPU demos.
    backbone : str, optional
        dianet's per-stream timm model (default ``resnet18``).

    Returns
    -------
    model : nn.Module
        Takes ``x`` [shape=(B, 3, S, S)], ``S = info.input_size`` (a pair model two such
        tensors) and returns logits [shape=(B, num_classes)].
    info : ModelInfo

    Raises
    ------
    ModelError
        An unknown name, a bad ``num_classes``, a ``backbone`` for a model without one, or a
        weights file that does not fit.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"model {name!r}: num_classes must be a positive int, "
                         f"not {num_classes!r}")
    entry = _entry(name, backbone)
    if pretrained is not None and str(pretrained) == CACHE:
        if not entry.timm_weights:
            raise ModelError(f"--pretrained cache: {name} has no timm weights to look for; "
                             "give a weights file")
        from mer_di.training.models.timm_models import resolve_pretrained

        pretrained = resolve_pretrained(name, pretrained)
    cfg = entry.cfg(name, tiny, backbone)
    model = entry.build(name, num_classes, pretrained, tiny, backbone)
    info = ModelInfo(name=name, input_size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                     pair=cfg.pair, pretrained=str(pretrained) if pretrained is not None else None,
                     n_params=sum(p.numel() for p in model.parameters()))
    return model, info


def check_weights(name: str, num_classes: int, pretrained: str | Path, *, tiny: bool = False,
                  backbone: str | None = None) -> None:
    """Raise :class:`ModelError` (as :func:`build_model` would) when ``pretrained`` does not
    fit model ``name``. Cheap: the model is built on the meta device (no memory, no
    initialisation), so a run can check every weights file before it trains anything."""
    with warnings.catch_warnings(), torch.device("meta"):
        # loading real tensors into meta parameters is a no-op, as wanted here
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        build_model(name, num_classes, pretrained=pretrained, tiny=tiny, backbone=backbone)


def as_triple(values) -> Triple:
    """Three floats (a mean or std from a cfg)."""
    a, b, c = (float(v) for v in values)
    return a, b, c
