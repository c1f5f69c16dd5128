"""The model registry, the way timm keeps one: a name -> the model's metadata (what it is
fed, which weights file it starts from) and its builder, registered next to the model's own
code (:func:`register_model`), and readable without building anything (:func:`model_cfg`).

Registered in :mod:`.vggface` (``vggface``), :mod:`.timm_models` (``vgg19``, ``resnet34``,
``efficientnet_b0``, ``vit_base_patch16_224``, and any other timm model name as the fallback),
:mod:`.learnet`, :mod:`.dianet` and, fed optical flow instead of dynamic images
(``ModelCfg.input_kind == "flow"``), :mod:`.flow_models` (``ststnet``, ``off_apexnet``).
Nothing is downloaded: models start from random initialisation unless ``pretrained`` names
a local weights file (see :mod:`.weights` for the formats and the loading rule).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mer_di.errors import ModelError

Triple = tuple[float, float, float]
CACHE = "cache"  # --pretrained cache: timm's weights, if a download left them in a local cache
HUB = "hub"  # --pretrained hub: the same, downloaded when they are not there (online machines)


@dataclass(frozen=True)
class ModelCfg:
    """What a model is fed and starts from, known without building it.

    Images are min-max scaled to [0, 1], resized to ``input_size`` (pixels, square), then
    normalised ``(x - mean) / std`` per RGB channel. ``pair`` models take
    ``forward(onset, offset)``. ``weights_file``: the file name its pretrained weights go by
    in a weights folder: ``vgg_face_dag.pth`` for vggface, ``<name>.pth`` for a timm model,
    the backbone's ``<backbone>.pth`` for dianet (loaded into both streams), None for a model
    trained from scratch by design (``from_scratch``: learnet, ststnet, off_apexnet).

    ``input_kind``: what the model is fed, ``"di"`` (the dynamic images above, every model
    but the flow models) or ``"flow"`` (a clip's optical flow phase, channels u, v, optical
    strain, scaled by :func:`mer_di.training.flow_input.prepare_flow`, after which ``mean``
    0 and ``std`` 1 leave it as it is). ``flow_channels``: the channels of that input a flow
    model reads, in order (``("u", "v", "strain")`` for ststnet, ``("u", "v")`` for
    off_apexnet, which is still fed all three and ignores the third); empty for "di".
    """

    name: str
    input_size: int
    mean: Triple
    std: Triple
    pair: bool
    weights_file: str | None
    from_scratch: bool = False
    input_kind: str = "di"
    flow_channels: tuple[str, ...] = ()


INPUT_KINDS = ("di", "flow")  # the values of ModelCfg.input_kind


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
    input_kind: str = "di"


# cfg(name, tiny, backbone) -> ModelCfg
CfgFn = Callable[[str, bool, "str | None"], ModelCfg]
# build(name, num_classes, pretrained file or None, tiny, backbone) -> model
BuildFn = Callable[[str, int, "str | Path | None", bool, "str | None"], nn.Module]
# cached(name) -> the local file of the model's published weights, or ModelError
CachedFn = Callable[[str], Path]
# obtain(name, backbone) -> one sentence: where the model's pretrained weights come from
ObtainFn = Callable[[str, "str | None"], str]


@dataclass(frozen=True)
class _Entry:
    cfg: CfgFn
    build: BuildFn
    takes_backbone: bool  # a pair model over a chosen backbone (dianet)
    cached: CachedFn | None  # where `--pretrained cache` looks (timm's weights)
    known: Callable[[str], bool] | None = None  # the fallback: which names it takes
    obtain: ObtainFn | None = None  # how a user gets its pretrained weights
    hub: CachedFn | None = None  # where `--pretrained hub` gets them (downloading)


_REGISTRY: dict[str, _Entry] = {}
_FALLBACK: list[_Entry] = []


def register_model(name: str | None, cfg: CfgFn, build: BuildFn, *,
                   takes_backbone: bool = False, cached: CachedFn | None = None,
                   known: Callable[[str], bool] | None = None,
                   obtain: ObtainFn | None = None, hub: CachedFn | None = None) -> None:
    """Register model ``name``; each model's module calls this when it is imported.

    Parameters
    ----------
    name : str or None
        The registered name (it joins ``MODEL_NAMES``, in registration order). None registers
        the fallback for every name no one registered for which ``known(name)`` holds (timm's).
    cfg : callable
        ``cfg(name, tiny, backbone) -> ModelCfg``; must build nothing.
    build : callable
        ``build(name, num_classes, pretrained, tiny, backbone) -> nn.Module``: a randomly
        initialised model, then ``pretrained`` (a local file or None) loaded into it.
    takes_backbone : bool
        The model takes ``backbone=`` (a pair model over a chosen timm model).
    cached : callable, optional
        ``cached(name) -> Path``: the local copy of the model's published weights, for
        ``pretrained="cache"`` (raises :class:`ModelError` where there is none). None: the
        model has no published weights to look for.
    known : callable, optional
        With ``name`` None: which names the fallback takes.
    obtain : callable, optional
        ``obtain(name, backbone) -> str``: where the model's pretrained weights come from,
        for the message about a weights file that is not there.
    """
    entry = _Entry(cfg, build, takes_backbone, cached, known, obtain, hub)
    if name is None:
        _FALLBACK[:] = [entry]
    else:
        _REGISTRY[name] = entry


def registered() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


def is_known(name: str) -> bool:
    """Whether :func:`build_model` takes ``name``.

    Parameters
    ----------
    name : str
        A model name; a timm name may carry a pretrained tag (``resnet34.a1_in1k``).

    Returns
    -------
    bool
        True for a registered name or one the fallback takes (any timm model name).
    """
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
    """The metadata of model ``name``, read without building it.

    Parameters
    ----------
    name : str
        A registered name or any timm model name.
    tiny : bool
        The metadata of the small variant :func:`build_model` builds with ``tiny=True``.
    backbone : str, optional
        dianet's per-stream timm model (default ``resnet18``).

    Returns
    -------
    ModelCfg
        Equal, in ``input_size``, ``mean``, ``std`` and ``pair``, to the :class:`ModelInfo`
        that :func:`build_model` returns for the same arguments.

    Raises
    ------
    ModelError
        An unknown name, a backbone for a model without one, an unknown backbone or tag.
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
        if entry.cached is None:
            raise ModelError(f"--pretrained cache: {name} has no timm weights to look for; "
                             "give a weights file")
        pretrained = entry.cached(name)
    elif pretrained is not None and str(pretrained) == HUB:
        if entry.hub is None:
            raise ModelError(f"--pretrained hub: {name} has no published weights to download; "
                             "give a weights file")
        pretrained = entry.hub(name)
    if pretrained is not None and not Path(pretrained).is_file():
        raise ModelError(missing_weights(name, pretrained, tiny=tiny, backbone=backbone))
    model = entry.build(name, num_classes, pretrained, tiny, backbone)
    # read after the build, so that a name the build refuses says so as it always has
    cfg = entry.cfg(name, tiny, backbone)
    info = ModelInfo(name=name, input_size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                     pair=cfg.pair, pretrained=str(pretrained) if pretrained is not None else None,
                     n_params=sum(p.numel() for p in model.parameters()),
                     input_kind=cfg.input_kind)
    return model, info


def missing_weights(name: str, path: str | Path, *, tiny: bool = False,
                    backbone: str | None = None) -> str:
    """The message for a weights file of model ``name`` that is not at ``path``: the file
    looked for, the model, and how to obtain its weights."""
    entry = _entry(name, backbone)
    cfg = entry.cfg(name, tiny, backbone)
    what = f"{name} (backbone {backbone})" if backbone else name
    if Path(path).is_dir():
        msg = f"{what}: weights {path} is a folder; give the weights file"
    else:
        msg = f"{what}: no weights file {path}"
    if cfg.from_scratch:
        return msg + f" ({name} is trained from scratch: it has no published weights)"
    if cfg.weights_file:
        msg += f" (a weights folder holds it as {cfg.weights_file})"
    return msg + (f". {entry.obtain(name, backbone)}" if entry.obtain else "")


def check_weights(name: str, num_classes: int, pretrained: str | Path, *, tiny: bool = False,
                  backbone: str | None = None) -> None:
    """Check that weights file ``pretrained`` fits model ``name``, without building it in full.

    The model is built on the meta device (no memory allocated, no initialisation paid) and
    the file loaded by the same rule as :func:`build_model`, so a run can check every weights
    file before it trains anything. An architecture that cannot be built on the meta device
    is built for real instead (the random number generator's state is restored afterwards).

    Parameters
    ----------
    name, num_classes, tiny, backbone
        As for :func:`build_model`.
    pretrained : str or Path
        A local weights file, or ``"cache"`` (see :func:`build_model`).

    Raises
    ------
    ModelError
        What :func:`build_model` raises for the same arguments: an unknown name, a bad
        ``num_classes`` or ``backbone``, a file that is missing, unreadable or does not fit.
    """
    args = {"tiny": tiny, "backbone": backbone}
    if _builds_on_meta(name, num_classes, args):
        try:
            with _on_meta():
                build_model(name, num_classes, pretrained=pretrained, **args)
            return
        except ModelError:
            raise
        except Exception:  # the loading failed on the meta device, not the file: load for real
            pass
    with torch.random.fork_rng(devices=[]):  # the run's seeding must not see this build
        build_model(name, num_classes, pretrained=pretrained, **args)


def _builds_on_meta(name: str, num_classes: int, args: dict) -> bool:
    """Whether the model builds on the meta device, without weights. A constructor that
    computes with its tensors (an ``.item()``) does not, and timm turns that into a
    ModelError; nor does a bad name or argument, which the real build then refuses before it
    constructs anything, with build_model's own message."""
    try:
        with _on_meta():
            build_model(name, num_classes, **args)
    except Exception:
        return False
    return True


@contextmanager
def _on_meta() -> Iterator[None]:
    """Build on the meta device: parameters have shapes but no storage, and loading real
    tensors into them is a no-op (its warning silenced), so only the shapes are checked."""
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        yield


def as_triple(values) -> Triple:
    """Three floats (a mean or std from a cfg)."""
    a, b, c = (float(v) for v in values)
    return a, b, c
