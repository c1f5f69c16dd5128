"""Which pretrained weights a weights file holds, and so how its model's input is normalised.

timm publishes several weights per architecture under tags (``vit_base_patch16_224``'s
default ``augreg2_in21k_ft_in1k`` normalises with mean = std = 0.5, ImageNet's tags with
0.485/0.229...), but a file saved as ``<name>.pth`` does not say which tag it came from.
A file may record it, in either of two ways:

- a sidecar ``<file>.json`` beside it: ``{"timm_name": "resnet34.a1_in1k", "mean": [...],
  "std": [...]}`` (any of the keys), or
- inside the file: ``torch.save({"state_dict": sd, "pretrained_cfg": cfg}, file)`` with
  timm's ``model.pretrained_cfg`` (it has ``architecture``, ``tag``, ``mean``, ``std``), or
  the same keys in a ``.safetensors`` file's metadata.

:func:`provenance` reads what the file records (cheaply: the sidecar, a memory-mapped
``torch.load``, or the safetensors header), checks that its architecture is the model's,
and says what the run uses: the recorded mean/std when there are some, else the model
name's default tag's, with a note that the file did not say.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mer_di.errors import ModelError
from mer_di.training.models.registry import CACHE, HUB, ModelCfg, as_triple


@dataclass(frozen=True)
class Provenance:
    """What a model's weights are: ``cfg`` (its input normalisation as the run uses it),
    ``tag`` (for its rows: ``weights resnet34.a1_in1k``), ``note`` (for the run's notes;
    '' when nothing needs saying)."""

    cfg: ModelCfg
    tag: str
    note: str = ""


def recorded(path: str | Path) -> dict[str, object]:
    """What weights file ``path`` records about itself (``timm_name``, ``mean``, ``std``;
    empty when it records nothing). Raises :class:`ModelError` for an unreadable sidecar."""
    path = Path(path)
    side = path.with_name(path.name + ".json")
    if side.is_file():
        try:
            info = json.loads(side.read_text())
            assert isinstance(info, dict)
        except (OSError, ValueError, AssertionError) as exc:
            raise ModelError(f"{side}: not a JSON object naming the weights of {path} "
                             f"({exc or 'not an object'})") from None
        return _normal(info)
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as fh:
                meta = fh.metadata() or {}
        except Exception:  # unreadable files are refused with the loader's own message
            return {}
        info = {k: (json.loads(v) if k in ("mean", "std") else v) for k, v in meta.items()}
        return _normal(info)
    try:  # memory-mapped: only the small dict entries are read, not the tensors
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return {}
    cfg = obj.get("pretrained_cfg") if isinstance(obj, dict) else None
    return _normal(cfg) if isinstance(cfg, dict) else {}


def _normal(info: dict) -> dict[str, object]:
    out: dict[str, object] = {}
    name = info.get("timm_name")
    if not name and info.get("architecture"):
        name = info["architecture"] + (f".{info['tag']}" if info.get("tag") else "")
    if name:
        out["timm_name"] = str(name)
    for key in ("mean", "std"):
        if info.get(key) is not None:
            out[key] = as_triple(info[key])
    return out


def provenance(model: str, weights: str | None, cfg: ModelCfg,
               default_name: str | None) -> Provenance:
    """What model ``model`` (metadata ``cfg``) starts from with ``weights`` (a file,
    ``cache``, ``hub`` or None). ``default_name``: the timm name whose weights the model
    takes (``resnet34.a1_in1k``: the model's default tag; the backbone's for DIANet; None
    for a model outside timm, VGG-Face)."""
    if weights is None:
        return Provenance(cfg, "")
    if weights in (CACHE, HUB):
        return Provenance(cfg, f"weights {default_name or model} (timm)")
    info = recorded(weights)
    name = info.get("timm_name")
    if name and default_name and str(name).split(".")[0] != default_name.split(".")[0]:
        raise ModelError(f"{model}: weights file {weights} records that it holds {name}, "
                         f"another architecture than {default_name.split('.')[0]}")
    mean, std = info.get("mean"), info.get("std")
    if mean is not None or std is not None or name:
        if mean is None or std is None:  # a name alone: timm knows its normalisation
            from mer_di.training.models.timm_models import norm_of

            m, s = norm_of(str(name)) if name else (cfg.mean, cfg.std)
            mean, std = mean or m, std or s
        used = dataclasses.replace(cfg, mean=tuple(mean), std=tuple(std))
        note = ""
        if (used.mean, used.std) != (cfg.mean, cfg.std):
            note = (f"{model}: normalised with the mean {list(used.mean)} and std "
                    f"{list(used.std)} that {weights} records"
                    + (f" ({name})" if name else "") + f", not those of {default_name}")
        return Provenance(used, f"weights {name or Path(weights).name}", note)
    if default_name is None:  # VGG-Face: one published file, one normalisation
        return Provenance(cfg, f"weights {Path(weights).name}")
    return Provenance(cfg, f"weights tag not recorded (normalised as {default_name})",
                      f"{model}: {weights} does not record which weights it holds; its input "
                      f"is normalised as timm's {default_name} (mean {list(cfg.mean)}, std "
                      f"{list(cfg.std)}): weights of another tag would be normalised wrongly. "
                      f"Record it beside the file ({Path(weights).name}.json: "
                      '{"timm_name": "<arch>.<tag>"}) or save it with its pretrained_cfg '
                      "(README, Models)")
