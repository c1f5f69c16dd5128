"""Training one unit of a run: train one model (model x configuration x seed) on the training part
of one fold, pick its epoch on a validation split, predict the test fold; and the unit
folder it is written to.

A unit folder ``units/<unit name>/`` holds ``history.csv`` (one row per epoch),
``predictions.csv`` (one row per test clip), ``scores.json`` and, with checkpoints on,
``model.pt``: a self-contained checkpoint (:func:`checkpoint`) that
:mod:`mer_di.training.inference` loads with ``torch.load(weights_only=True)``. The folder is
written under a temporary name and renamed when whole, so a unit folder that exists is
finished.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mer_di import __version__
from mer_di.errors import DivergedError
from mer_di.training.augment import flip_rotate
from mer_di.training.configs import get_config
from mer_di.training.determinism import channels_last
from mer_di.training.flow_input import flow_flip_rotate, flow_unit_samples
from mer_di.training.folds import validation_split
from mer_di.training.loop import fit, predict
from mer_di.training.metrics import confusion, scores
from mer_di.training.models.prototype import build_for_unit
from mer_di.training.plan import Plan, jitter_applies
from mer_di.training.results import PRED_COLUMNS
from mer_di.training.samples import ImageBank, unit_samples
from mer_di.training.units import CHECKPOINT, FAILED, SCORES, Unit

CHECKPOINT_FORMAT = "mer-di checkpoint 1"


@dataclass
class UnitResult:
    """What one unit produced: ``history`` one row per epoch, ``predictions`` one row per
    test clip (none for a final unit), ``scores`` its summary (metrics, epochs, sizes,
    confusion), ``checkpoint`` the chosen weights with what is needed to use them alone."""

    unit: Unit
    history: pd.DataFrame
    predictions: pd.DataFrame
    scores: dict[str, object]
    checkpoint: dict[str, object] | None
    # --apex-robustness: the test clips predicted at shifted and spotted apexes
    # (:mod:`mer_di.training.robustness`); None when not asked or not apex-dependent
    robustness: pd.DataFrame | None = None


def unit_split(plan: Plan, unit: Unit) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Clip indices ``(train, validation or None, test)`` of ``unit``; a final unit has no
    test clips and carves its validation split from every clip. Under ``--select-epoch
    test-fold`` (replication of the paper's protocol only) the validation clips are the
    test fold's: every training clip trains, and the test fold picks the epoch."""
    spec, clips = plan.spec, plan.clips
    test = (np.zeros(0, np.int64) if unit.fold is None
            else plan.folds[unit.seed][unit.fold])
    train = np.setdiff1d(np.arange(len(clips)), test)
    val = None
    if spec.train.select_epoch == "test-fold":  # the paper's protocol: no split is carved
        return train, test, test
    if spec.train.val_fraction > 0:
        train, val = validation_split(train, clips.labels, clips.groups,
                                      subject_disjoint=spec.protocol != "kfold",
                                      fraction=spec.train.val_fraction, seed=unit.seed_value)
    return train, val, test


def run_unit(plan: Plan, unit: Unit, bank: ImageBank,
             on_epoch: Callable[[dict], None] | None = None) -> UnitResult:
    """Train and test one unit on ``bank`` (the clip set's images for this model)."""
    spec, clips = plan.spec, plan.clips
    cfg, model_cfg = get_config(unit.config), plan.cfgs[unit.model]
    train, val, test = unit_split(plan, unit)
    apex_frame = spec.input == "apex"
    augment = flip_rotate
    if model_cfg.input_kind == "flow":  # a FlowBank (samples.model_bank)
        def samples(idx, dual):
            return flow_unit_samples(clips.labels, bank, idx, dual)
        augment = flow_flip_rotate  # flipping a flow negates u
    else:
        def samples(idx, dual, jitter_seed=None):
            return unit_samples(clips, bank, idx, model_cfg.pair, dual, apex_frame,
                                jitter_seed=jitter_seed)
    if jitter_applies(spec, model_cfg, unit.config):  # --apex-jitter: training clips only
        train_s = samples(train, cfg.dual, jitter_seed=unit.seed_value)
    else:
        train_s = samples(train, cfg.dual)
    val_s = samples(val, False) if val is not None else None
    test_s = samples(test, False)
    model, info, made = build_for_unit(unit.model, len(clips.classes), unit.seed_value,
                                       pretrained=spec.weights_for(unit.model),
                                       tiny=spec.tiny, backbone=spec.backbone)
    device = bank.tensor.device
    if channels_last(spec.determinism, device, model):
        model = model.to(memory_format=torch.channels_last)
    where = {"host": socket.gethostname(), "device": _device_name(device)}
    start = time.perf_counter()
    try:
        result = fit(model, bank.tensor, train_s, val_s, spec.train, unit.seed_value,
                     cfg.fliprot, on_epoch, augment=augment)
    except DivergedError as exc:  # a failed unit: recorded, never scored
        return UnitResult(unit, _history(unit, exc.history),
                          pd.DataFrame(columns=list(PRED_COLUMNS)),
                          {"model": unit.model, "config": unit.config, "seed": unit.seed,
                           "fold": unit.fold, FAILED: str(exc), **where,
                           "seconds": time.perf_counter() - start}, None)
    label = clips.labels[test]
    pred = (predict(model, bank.tensor, test_s, amp=spec.train.amp).argmax(1) if len(test)
            else np.zeros(0, np.int64))
    preds = pd.DataFrame({
        "model": unit.model, "config": unit.config, "seed": unit.seed, "fold": unit.fold,
        "dataset": clips.datasets[test], "subject": clips.subjects[test],
        "clip": clips.clips[test], "label": label, "pred": pred,
        "label_name": [clips.classes[i] for i in label],
        "pred_name": [clips.classes[i] for i in pred]})
    history = _history(unit, result.history)
    robust, robust_info = None, None
    if getattr(spec, "apex_robustness", False) and len(test):  # the same model, its test clips
        from mer_di.training.robustness import unit_robustness

        robust, robust_info = unit_robustness(plan, unit, model, device, test)
    summary = {"model": unit.model, "config": unit.config, "seed": unit.seed,
               "fold": unit.fold,
               **(scores(label, pred, len(clips.classes)).as_dict() if len(test) else {}),
               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "stopped_early": result.stopped_early, "train_samples": len(train_s),
               "val_clips": 0 if val is None else len(val), "test_clips": len(test),
               "select_epoch": spec.train.select_epoch, "init": made, **where,
               "seconds": time.perf_counter() - start,
               "confusion": confusion(label, pred, len(clips.classes)).tolist(),
               **({"apex_robustness": robust_info} if robust_info else {})}
    state = checkpoint(plan, unit, model, info) if spec.checkpoints else None
    return UnitResult(unit, history, preds, summary, state, robust)


def _device_name(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``: where a unit really ran."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _history(unit: Unit, epochs: list[dict]) -> pd.DataFrame:
    """One row per epoch, led by the unit's model, config, seed and fold."""
    history = pd.DataFrame(epochs)
    history.insert(0, "fold", unit.fold)
    for col, value in (("seed", unit.seed), ("config", unit.config), ("model", unit.model)):
        history.insert(0, col, value)
    return history


def checkpoint(plan: Plan, unit: Unit, model: torch.nn.Module, info) -> dict[str, object]:
    """The unit's chosen weights with everything needed to use them alone: the model and
    how to build it, the classes, the input (size, normalisation, dynamic images or apex
    frame) and the caches' build parameters. Only tensors, numbers, text, lists and dicts,
    so it loads with ``torch.load(weights_only=True)``."""
    spec = plan.spec
    return {
        "format": CHECKPOINT_FORMAT, "tool_version": __version__,
        "model": unit.model, "tiny": spec.tiny, "backbone": spec.backbone,
        "pair": info.pair, "input_size": info.input_size, "mean": list(info.mean),
        "std": list(info.std), "input": spec.input,
        "input_kind": plan.cfgs[unit.model].input_kind,
        "classes": list(plan.clips.classes), "class_set": spec.classes,
        "config": unit.config, "seed": unit.seed, "fold": unit.fold,
        "caches": [dict(p) for p in plan.cache_params],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def write_unit(units_dir: Path, result: UnitResult) -> bool:
    """Write ``result`` as its unit folder; False when another writer finished that unit
    first (its folder is kept, ours discarded).

    Every file is made in memory first, then written into a temporary folder beside the
    unit's (same filesystem) that is renamed when whole, so a unit folder that exists is
    finished; ``scores.json``, written last, records each file's bytes and SHA-256
    (:data:`~mer_di.training.units.FILES`), so a later edit or damage is found
    (:func:`~mer_di.training.units.unit_damage`). On any failure (a full disk, an I/O
    error, an interrupt) nothing of ours is left behind; a write that fails raises
    :class:`mer_di._files.WriteError` whose ``needed`` is the unit's size in bytes."""
    import errno
    import hashlib
    import io

    from mer_di._files import WriteError, write_atomic
    from mer_di.training.units import FILES, unit_done

    name = result.unit.name
    final = units_dir / name
    tmp = units_dir / f".tmp-{name}-{os.getpid()}"
    files = {"history.csv": result.history.to_csv(index=False).encode(),
             "predictions.csv": result.predictions.to_csv(index=False).encode()}
    if result.robustness is not None:
        from mer_di.training.robustness import PREDICTIONS

        files[PREDICTIONS] = result.robustness.to_csv(index=False).encode()
    if result.checkpoint is not None:
        buffer = io.BytesIO()  # torch's own writer hides the errno of a full disk
        torch.save(result.checkpoint, buffer)
        files[CHECKPOINT] = buffer.getvalue()
    record = {n: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
              for n, b in files.items()}
    files[SCORES] = json.dumps({**result.scores, FILES: record}, indent=1).encode()
    needed = sum(len(b) for b in files.values())
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for file_name, data in files.items():
            write_atomic(tmp / file_name, data)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if unit_done(units_dir, result.unit):  # another writer finished it first
                shutil.rmtree(tmp)
                return False
            shutil.rmtree(final)  # a damaged folder of this unit: ours replaces it
            os.rename(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            exc = WriteError(tmp, exc)
        if isinstance(exc, WriteError):
            exc.needed = needed
            raise exc from None
        raise
    return True
