"""Reading local weights files and loading them into a model, with clear errors.

Nothing here downloads: every file is one the user already has. A weights file is

- a ``.safetensors`` file (needs the ``safetensors`` package), or
- a ``torch.save`` file holding either a state_dict or a dict that holds one under
  ``state_dict``, ``model`` or ``state_dict_ema`` (the layouts of timm's and most training
  scripts' checkpoints). Files are read with ``torch.load(weights_only=True)``: a checkpoint
  that pickles other objects (an ``argparse.Namespace``, say) is refused rather than executed;
  save its state_dict alone to use it.

A ``module.`` prefix (DataParallel / DDP) is removed from every key.

:func:`load_matching` is the one loading rule for every model: keys under the model's
classifier (``head_prefixes``) are taken only where the file's tensor has the model's shape, so a
1000-class head is dropped and the model's fresh ``num_classes`` head stays; every other key
must be present on both sides with equal shapes, or :class:`ModelError` names the file and the
first key that does not fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from mer_di.errors import ModelError

_NESTED_KEYS = ("state_dict", "model", "state_dict_ema")
_WRAPPER_PREFIXES = ("module.",)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file, keyed by parameter name.

    Raises :class:`ModelError` naming the file when it is missing, unreadable, or holds no
    state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ModelError(f"weights file {path} is .safetensors but the 'safetensors' "
                             "package is not installed (pip install safetensors)") from exc
        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"weights file {path} could not be read as safetensors: "
                             f"{exc}") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle and zip errors have many types
            raise ModelError(f"weights file {path} could not be read with torch.load"
                             f"(weights_only=True): {exc}") from exc
    return _state_dict_of(obj, path)


def _state_dict_of(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and _all_tensors(inner):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not _all_tensors(obj):
        raise ModelError(f"weights file {path} holds no state_dict (expected a dict of "
                         "tensors, or one under 'state_dict', 'model' or 'state_dict_ema')")
    out = {}
    for key, value in obj.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapping.items())


def under(key: str, prefixes: Iterable[str]) -> bool:
    """Whether ``key`` is one of ``prefixes`` or a key inside one of those modules."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path,
                  head_prefixes: Iterable[str] = (), what: str = "model") -> None:
    """Load ``state`` into ``model`` in place: everything but a mismatched head, or an error.

    ``head_prefixes`` name the classifier modules (e.g. ``("fc",)``); their keys are loaded
    only where the shapes agree and are otherwise left at the model's fresh initialisation.
    Any other missing, unexpected or mis-shaped key raises :class:`ModelError` naming
    ``what``, ``source`` and the first such key.
    """
    heads = tuple(head_prefixes)
    own = model.state_dict()
    keep: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if under(key, heads) and (key not in own or own[key].shape != value.shape):
            continue
        if key not in own:
            raise ModelError(f"{what}: weights file {source} does not fit: unexpected key "
                             f"{key!r} (not in the model){_more(state, own, heads)}")
        if own[key].shape != value.shape:
            raise ModelError(f"{what}: weights file {source} does not fit: key {key!r} has "
                             f"shape {tuple(value.shape)}, the model expects "
                             f"{tuple(own[key].shape)}")
        keep[key] = value
    result = model.load_state_dict(keep, strict=False)
    missing = [k for k in result.missing_keys if not under(k, heads)]
    if missing:
        raise ModelError(f"{what}: weights file {source} does not fit: missing key "
                         f"{missing[0]!r}" + (f" and {len(missing) - 1} more"
                                              if len(missing) > 1 else ""))


def _more(state: Mapping, own: Mapping, heads: tuple[str, ...]) -> str:
    extra = [k for k in state if k not in own and not under(k, heads)]
    return f" and {len(extra) - 1} more" if len(extra) > 1 else ""
