"""Inference (``mer-train predict``): the models of a finished run applied to clips of a
cache or of a dataset folder, one row per clip with its class probabilities.

A run's checkpoints (``units/<unit>/model.pt``, see :func:`mer_di.training.trainer.checkpoint`)
carry everything they need: the model and how to build it, the classes, the input size
and normalisation, and the build parameters of the caches it was trained on. Clips of a
dataset folder are turned into dynamic images with those parameters by the build's own
path (:func:`mer_di.pipeline.clip_pool.pool_clips`), so they are the images a cache would hold.
"""

from __future__ import annotations

import json
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mer_di._files import WriteError, free_bytes, human_bytes, write_atomic
from mer_di._paths import check_writable, make_folder
from mer_di.data_manifest import build_manifest
from mer_di.errors import MerError, PredictError
from mer_di.pipeline.build import BuildOptions
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.clip_pool import pool_clips
from mer_di.pipeline.store import CachedClip, parse_key
from mer_di.training.data import UNLABELLED, Loaded, assemble, read_clips
from mer_di.training.flow_input import clip_set_flow_bank, flow_unit_samples
from mer_di.training.loop import predict as predict_logits
from mer_di.training.models import build_model
from mer_di.training.plan import resolve_device
from mer_di.training.run_folder import read_config
from mer_di.training.samples import ImageBank, unit_samples
from mer_di.training.trainer import CHECKPOINT_FORMAT
from mer_di.training.units import CHECKPOINT, FINAL, Unit, unit_damage

MATCHING_PARAMS = ("weights", "size", "crop")  # a cache's images must be made the same way


@dataclass
class Trained:
    """The checkpoints of one (model, configuration, seed) of a run chosen to predict."""

    units: list[Unit]
    checkpoints: list[dict]

    @property
    def first(self) -> dict:
        return self.checkpoints[0]

    def describe(self) -> str:
        u = self.units[0]
        folds = [x.fold for x in self.units]
        which = (FINAL if folds == [None] else f"fold {folds[0]}" if len(folds) == 1
                 else f"mean of folds {', '.join(map(str, folds))}")
        return f"{u.model} {u.config} seed {u.seed} ({which})"


def load_trained(run: str | Path, model: str | None = None, config: str | None = None,
                 seed: int | None = None, fold: int | str | None = None) -> Trained:
    """The checkpoints of ``run`` to predict with.

    ``model``, ``config`` and ``seed`` choose among the run's (they may be left out when
    the run has one); ``fold``: a fold number, ``"final"`` (the model trained on every
    clip, ``mer-train cv --final``), ``"all"`` (every fold's model, probabilities
    averaged), or None: ``final`` where the run has it, else ``all``.
    """
    run = Path(run)
    try:
        config_json = json.loads((run / "config.json").read_text())
        names = list(config_json["units"])
    except (OSError, ValueError, KeyError, TypeError):
        raise PredictError(f"{run} is not a finished run folder (no readable config.json); "
                           "give a folder made by mer-train cv") from None
    units = [u for u in map(Unit.parse, names) if u is not None
             and (run / "units" / u.name / CHECKPOINT).is_file()]
    if not units:
        raise PredictError(f"{run} holds no checkpoints (made with --no-checkpoints, or not "
                           "finished); run mer-train cv without --no-checkpoints")
    chosen = [u for u in units if (model is None or u.model == model)
              and (config is None or u.config == config) and (seed is None or u.seed == seed)]
    groups = sorted({(u.model, u.config, u.seed) for u in chosen})
    if len(groups) != 1:
        have = "; ".join(f"--model {m} --config {c} --seed {s}"
                         for m, c, s in sorted({(u.model, u.config, u.seed) for u in units}))
        raise PredictError(f"{run}: {'no' if not groups else 'more than one'} trained model "
                           f"matches; choose one of: {have}")
    finals = [u for u in chosen if u.fold is None]
    folds = sorted((u for u in chosen if u.fold is not None), key=lambda u: u.fold)
    if fold is None:
        fold = FINAL if finals else "all"
    if fold == FINAL:
        if not finals:
            raise PredictError(f"{run} has no final model (add --final to mer-train cv); "
                               "use --fold all or a fold number")
        picked = finals
    elif fold == "all":
        picked = folds
    else:
        picked = [u for u in folds if str(u.fold) == str(fold)]
        if not picked:
            raise PredictError(f"{run} has no fold {fold}; its folds are "
                               f"{', '.join(str(u.fold) for u in folds)}")
    for u in picked:
        why = unit_damage(run / "units", u, checkpoint=True, unrecorded=False)
        if why:
            raise PredictError(f"{run}: unit {u.name} is damaged ({why}); redo it with "
                               f"`mer-train cv --resume --out {run}`")
    return Trained(picked, [_read_checkpoint(run, u, config_json) for u in picked])


CHECKPOINT_KEYS = ("model", "tiny", "backbone", "pair", "input_size", "mean", "std", "input",
                   "classes", "class_set", "config", "seed", "fold", "caches", "state_dict")


def _read_checkpoint(run: Path, unit: Unit, config: dict) -> dict:
    """The checkpoint of ``unit``, once it is known to be this unit's: readable, complete,
    and of its model, configuration, seed, fold and the run's classes."""
    path = run / "units" / unit.name / CHECKPOINT
    redo = f"redo the unit with `mer-train cv --resume --out {run}`"
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors have many types
        why = " ".join(str(exc).split())[:200]
        raise PredictError(f"{path}: not a readable checkpoint ({why}); {redo}") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise PredictError(f"{path}: a bare state_dict or another tool's file, not a "
                           f"{CHECKPOINT_FORMAT!r} (runs before mer-di 0.1 saved bare "
                           "weights; train the run again to predict with it)")
    lacking = [k for k in CHECKPOINT_KEYS if k not in ck]
    if lacking:
        raise PredictError(f"{path}: not a whole checkpoint (no {', '.join(lacking)}); {redo}")
    want = {"model": unit.model, "config": unit.config, "seed": unit.seed, "fold": unit.fold,
            "classes": list(config.get("classes", ck["classes"]))}
    other = [f"{k} {ck[k]!r}, the unit's is {v!r}" for k, v in want.items()
             if (list(ck[k]) if k == "classes" else ck[k]) != v]
    if other:
        raise PredictError(f"{path} is another unit's or run's checkpoint ({'; '.join(other)}); "
                           f"{redo}")
    return ck


def _build_params(ck: dict, dataset: str | None) -> dict[str, str]:
    """The build parameters of the run's cache of ``dataset`` (its first cache for a
    dataset it did not train on)."""
    caches = ck["caches"]
    return next((c for c in caches if c.get("dataset") == dataset), caches[0])


def _wanted(clips: list[str] | None):
    """A filter of clips by ``subject/clip`` keys (every clip when None), and the set of
    keys asked for (to name those not found)."""
    keys = {parse_key(k) for k in clips or ()}
    return (lambda c: not keys or (c.subject, c.clip) in keys), keys


def clips_from_cache(cache: str | Path, ck: dict, clips: list[str] | None = None
                     ) -> list[Loaded]:
    """The clips of ``cache`` (those named in ``clips``, or all) with their images;
    :class:`PredictError` when the cache was built other than the run's caches."""
    with open_cache(cache) as c:
        dataset, params = c.dataset, c.params
    want = _build_params(ck, dataset)
    differ = [f"{k}: cache {params[k]!r}, run {want.get(k, 'none')!r}"
              for k in (*MATCHING_PARAMS, *_flow_params(ck))
              if params[k] != want.get(k, "none")]
    if differ:
        raise PredictError(f"{cache} was built otherwise than the run's caches "
                           f"({'; '.join(differ)}); build it with the run's parameters")
    keep, _ = _wanted(clips)
    return read_clips(cache, keep)


def clips_from_folder(dataset: str, root: str | Path, ck: dict, sheet: str | Path | None = None,
                      clips: list[str] | None = None, workers: int | None = None
                      ) -> tuple[list[Loaded], list[dict[str, object]]]:
    """The clips of the dataset folder ``root`` (those named in ``clips``, or all usable
    ones), their images made with the run's build parameters; also the clips left out
    (``subject``, ``clip``, ``sheet_row``, ``reason``)."""
    manifest = build_manifest(dataset, root, sheet=sheet, classes="all")
    keep, _ = _wanted(clips)
    rows = [r for r in manifest.rows if keep(r)]
    left_out = [_left_out(r, r.problems) for r in rows if not r.full_ok]
    params = _build_params(ck, dataset)
    options = BuildOptions(size=None if params["size"] == "native" else int(params["size"]),
                           crop=params["crop"], weights=params["weights"], workers=workers,
                           apex=params.get("apex", "sheet"),
                           flow=params.get("flow", "none") if _flow_params(ck) else None)
    loaded: list[Loaded] = []
    with closing(pool_clips([(r, "") for r in rows if r.full_ok], options)) as pooled:
        for done in pooled:
            if done.record is None:
                left_out.append(_left_out(done.row, done.error))
                continue
            record = done.record
            loaded.append((CachedClip.from_attrs(dataset, record.subject, record.clip,
                                                 record.attrs, tuple(record.images)),
                           record.images))
    return loaded, left_out


def _flow_params(ck: dict) -> tuple[str, ...]:
    """``("flow",)`` for a flow model's checkpoint (its clips' flow must be made by the
    same method), else ``()``."""
    return ("flow",) if ck.get("input_kind", "di") == "flow" else ()


def _left_out(row, reason: str) -> dict[str, object]:
    return {"subject": row.subject, "clip": row.clip, "sheet_row": row.sheet_row,
            "reason": reason}


def predict_loaded(trained: Trained, loaded: list[Loaded], device: str = "auto",
                   amp: bool = True) -> pd.DataFrame:
    """Class probabilities of ``loaded`` clips under ``trained``: one row per clip with
    ``dataset, subject, clip, label, label_name, pred, pred_name, prob_<class>...,
    model, config, seed, fold``; ``label`` is empty for a clip outside the run's classes."""
    ck = trained.first
    classes = list(ck["classes"])
    clip_set = assemble(loaded, classes, ck["class_set"])
    dev = resolve_device(device)
    if _flow_params(ck):  # a flow model: each clip's onset->apex flow, as it was tested
        try:
            bank = clip_set_flow_bank(clip_set, ("baseline",), int(ck["input_size"]), dev)
        except MerError as exc:
            raise PredictError(f"{ck['model']} is fed optical flow: {exc}") from None
        samples = flow_unit_samples(clip_set.labels, bank, np.arange(len(clip_set)), False)
    else:
        bank = ImageBank(clip_set, int(ck["input_size"]), tuple(ck["mean"]),
                         tuple(ck["std"]), dev)
        samples = unit_samples(clip_set, bank, np.arange(len(clip_set)), bool(ck["pair"]),
                               dual=False, apex_frame=ck["input"] == "apex")
    probs = np.zeros((len(clip_set), len(classes)))
    for unit, checkpoint in zip(trained.units, trained.checkpoints, strict=True):
        model, _ = build_model(checkpoint["model"], len(classes), tiny=checkpoint["tiny"],
                               backbone=checkpoint["backbone"])
        try:
            model.load_state_dict(checkpoint["state_dict"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = " ".join(str(exc).split())[:200]
            raise PredictError(f"{unit.name}/{CHECKPOINT}: its weights are not those of "
                               f"{checkpoint['model']} with {len(classes)} classes ({first})"
                               ) from None
        model.to(dev)
        logits = torch.from_numpy(predict_logits(model, bank.tensor, samples, amp=amp))
        probs += torch.softmax(logits.double(), 1).numpy()
    probs /= len(trained.checkpoints)
    pred = probs.argmax(1)
    labelled = clip_set.labels != UNLABELLED
    unit = trained.units[0]
    out = pd.DataFrame({
        "dataset": clip_set.datasets, "subject": clip_set.subjects, "clip": clip_set.clips,
        "label": pd.array(np.where(labelled, clip_set.labels, 0), dtype="Int64"),
        "label_name": [classes[i] if i != UNLABELLED else "" for i in clip_set.labels],
        "pred": pred, "pred_name": [classes[i] for i in pred]})
    out.loc[~labelled, "label"] = pd.NA
    for i, name in enumerate(classes):
        out[f"prob_{name}"] = probs[:, i]
    fold = (FINAL if unit.fold is None else str(unit.fold) if len(trained.units) == 1
            else "mean:" + "+".join(str(u.fold) for u in trained.units))
    out["model"], out["config"], out["seed"], out["fold"] = (unit.model, unit.config,
                                                             unit.seed, fold)
    return out


def predict(run: str | Path, *, cache: str | Path | None = None,
            root: str | Path | None = None, dataset: str | None = None,
            sheet: str | Path | None = None, clips: list[str] | None = None,
            model: str | None = None, config: str | None = None, seed: int | None = None,
            fold: int | str | None = None, device: str = "auto", workers: int | None = None,
            out: str | Path | None = None) -> pd.DataFrame:
    """Apply a finished run's models to clips of a cache or of a dataset folder.

    Parameters
    ----------
    run : str or Path
        A run folder made by ``mer-train cv`` with checkpoints.
    cache : str or Path, optional
        A cache built with the run's parameters (weights, size, crop). Give this or
        ``root`` and ``dataset``.
    root, dataset, sheet : optional
        A dataset folder in its official layout, which reader, and its annotation sheet
        (default: found in ``root``); images are made with the run's build parameters.
    clips : list of str, optional
        ``subject/clip`` keys to predict (default: every usable clip).
    model, config, seed, fold :
        Which trained models (see :func:`load_trained`).
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    out : str or Path, optional
        Also write the table there as CSV.

    Returns
    -------
    predictions : pandas.DataFrame
        One row per clip: ``dataset, subject, clip, label, label_name, pred, pred_name``,
        ``prob_<class>`` (the softmax probabilities, averaged over the chosen models;
        they sum to 1), ``model, config, seed, fold``. ``label`` is the clip's class in the
        run's classes, empty when its emotion is outside them. ``predictions.attrs``
        ``left_out`` lists clips that could not be predicted, with the reason.

    Raises
    ------
    PredictError
        Bad arguments, a run without checkpoints, a cache built otherwise, unknown clips.
    """
    if out is not None and str(out) != "-":
        check_writable(out)
    if (cache is None) == (root is None):
        raise PredictError("give either a cache (--cache) or a dataset folder (--root with "
                           "--dataset)")
    if root is not None and dataset is None:
        raise PredictError("--root needs --dataset (which reader lays the folder out)")
    trained = load_trained(run, model, config, seed, fold)
    try:
        if cache is not None:
            loaded, left_out = clips_from_cache(cache, trained.first, clips), []
        else:
            loaded, left_out = clips_from_folder(dataset, root, trained.first, sheet, clips,
                                                 workers)
    except MerError as exc:
        raise PredictError(str(exc)) from None
    _, asked = _wanted(clips)
    missing = asked - {(c.subject, c.clip) for c, _ in loaded}
    missing -= {(m["subject"], m["clip"]) for m in left_out}
    if missing:
        raise PredictError(f"no clip {', '.join('/'.join(k) for k in sorted(missing))} in "
                           f"{cache or root}")
    if not loaded:
        raise PredictError(f"no usable clip in {cache or root}" + "".join(
            f"; {m['subject']}/{m['clip']}: {m['reason']}" for m in left_out))
    amp = bool(read_config(Path(run), PredictError)["spec"].get("train", {}).get("amp", True))
    table = predict_loaded(trained, loaded, device, amp)
    table.attrs["left_out"] = left_out
    table.attrs["models"] = trained.describe()
    if out is not None and str(out) == "-":
        table.to_csv(sys.stdout, index=False)
    elif out is not None:
        out = Path(out)
        make_folder(out.parent)
        data = table.to_csv(index=False)
        try:
            write_atomic(out, data)
        except WriteError as exc:
            free = free_bytes(out.parent)
            raise PredictError(f"{exc}: the table needs {human_bytes(len(data.encode()))}"
                               + (f" ({human_bytes(free)} free)" if free is not None else "")
                               + "; nothing was left under that name. Free some space or "
                               "give another --out, then run the same command again") from None
    return table
