"""What each row of a run's tables says about what produced it, and what differs from the
paper (Table I of the dual-phase dynamic-image paper): the model variant and its weights,
the loop's settings, how the epoch was chosen, the precision, the clips and their crop,
the determinism mode. ``config.json``'s ``setup`` holds it per model; every table that
shows a number of the run shows its model as ``name (tag)``.
"""

from __future__ import annotations

import numpy as np
import torch

from mer_di.training.determinism import mode_tag
from mer_di.training.loop import OPTIMISTIC, TrainOptions, amp_dtype

PAPER = TrainOptions()  # the paper's loop settings (epochs, batch size, learning rate)
# the clip counts behind the accuracies of the paper's Table I (5-fold, five classes)
PAPER_CLIPS = {"casme2": 245, "samm": 135}
# datasets whose frames are whole camera frames (a face with background), not face crops:
# built with --crop none, the face is a small part of the image
UNCROPPED_FRAMES = {"samm": "2040x1088 frames with background",
                    "casme3": "1280x720 frames with background"}


def precision_tag(device: torch.device, amp: bool) -> str:
    """``bf16``, ``fp16`` or ``fp32``: the precision the loop computes in on ``device``."""
    dtype = amp_dtype(device, amp)
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(dtype, "fp32")


def clips_tag(datasets: np.ndarray) -> str:
    """``240 clips (paper: 245)`` for a single-dataset run of a dataset the paper used;
    ``N clips`` otherwise."""
    names = list(dict.fromkeys(datasets.tolist()))
    n = len(datasets)
    if len(names) == 1 and names[0] in PAPER_CLIPS:
        return f"{n} clips (paper: {PAPER_CLIPS[names[0]]})"
    return f"{n} clips"


def crop_tags(cache_params: list[dict[str, str]]) -> list[str]:
    """``crop none`` / ``crop haar`` for each distinct crop of the caches."""
    return [f"crop {c}" for c in dict.fromkeys(p.get("crop", "?") for p in cache_params)]


def crop_warnings(cache_params: list[dict[str, str]], caches: list[str]) -> list[str]:
    """A warning for each cache of a dataset whose frames are not face crops (SAMM,
    CAS(ME)^3) built without a face crop: its images squash the whole frame."""
    out = []
    for path, p in zip(caches, cache_params, strict=True):
        dataset = p.get("dataset", "")
        if p.get("crop") == "none" and dataset in UNCROPPED_FRAMES:
            out.append(f"{path}: a {dataset} cache built with --crop none: its "
                       f"{UNCROPPED_FRAMES[dataset]} are squashed whole into each image, the "
                       "face a small part of it; rebuild with mer-prep build-cache --crop "
                       "haar for face crops")
    return out


def loop_tags(train: TrainOptions) -> list[str]:
    """The loop's settings that differ from the paper's, and how the epoch was chosen."""
    e = train.epochs
    tags = [f"{e} epoch{'s' * (e != 1)}" if e != PAPER.epochs else "",
            f"batch {train.batch_size}" if train.batch_size != PAPER.batch_size else "",
            f"lr {train.lr:g}" if train.lr != PAPER.lr else ""]
    if train.select_epoch == "test-fold":
        tags.append(OPTIMISTIC)
    elif train.val_fraction:
        tags.append(f"val split {100 * train.val_fraction:g}%")  # of the training folds
    else:
        tags.append("last epoch (no val split)")
    if train.val_fraction or train.select_epoch == "test-fold":
        tags.append(f"patience {train.patience}" if train.patience else "no early stopping")
    return [t for t in tags if t]


def setup_tags(plan, device: torch.device, weights: dict[str, str] | None = None
               ) -> dict[str, str]:
    """Per model of ``plan``, what produced its rows and differs from the paper, the same
    on every dataset: ``resnet34 (tiny, random init, 3 epochs, val split 20%, patience 10,
    fp32, reproducible mode)``. ``weights``: per model, which pretrained weights it starts
    from (timm's tag, or that the file does not say). What depends on the data (the clips
    against the paper's, the validation clips, the crop) is :func:`data_tag`'s."""
    spec, clips = plan.spec, plan.clips
    h, w = clips.full.shape[1:3]
    common = [*loop_tags(spec.train), precision_tag(device, spec.train.amp),
              mode_tag(spec.determinism)]
    out = {}
    for model, cfg in plan.cfgs.items():
        random = not cfg.from_scratch and spec.weights_for(model) is None
        up = (f"input upsampled {min(h, w)}->{cfg.input_size}"
              if cfg.input_size > min(h, w) else "")
        tags = ["tiny" if spec.tiny else "", "random init" if random else "",
                (weights or {}).get(model, ""), *common, up, _jitter_tag(plan, model, cfg)]
        out[model] = ", ".join(t for t in tags if t)
    return out


def _jitter_tag(plan, model: str, cfg) -> str:
    """``apex jitter +-K`` for a model whose training samples ``--apex-jitter`` changes
    (``(dual-phase configs)`` where only those of its configurations do); '' otherwise."""
    from mer_di.training.configs import applies
    from mer_di.training.plan import jitter_applies

    spec = plan.spec
    k = getattr(spec, "apex_jitter", 0)
    configs = [c for c in spec.configs if applies(c, cfg.pair)]
    hit = [c for c in configs if jitter_applies(spec, cfg, c)]
    if not k or not hit:
        return ""
    return f"apex jitter ±{k}" + ("" if len(hit) == len(configs) else " (dual-phase configs)")


def data_tag(plan) -> str:
    """What a run's numbers are over, against the paper: ``240 clips (paper: 245), 38
    validation clips per fold, crop none``."""
    from mer_di.training.trainer import unit_split

    fold_unit = next((u for u in plan.units if u.fold is not None), plan.units[0])
    _, val, test = unit_split(plan, fold_unit)
    if plan.spec.train.select_epoch == "test-fold":
        val_part = "epoch chosen on the test fold (no validation split)"
    elif val is None:
        val_part = "no validation split"
    else:
        val_part = f"{len(val)} validation clips per fold (of the training folds)"
    return ", ".join([clips_tag(plan.clips.datasets), val_part,
                      *crop_tags(plan.cache_params)])
