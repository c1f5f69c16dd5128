"""``mer-train cv``: the grid model x configuration x seed, each cross-validated.

A run folder holds::

    config.json        the resolved configuration (every option, the caches' SHA-256)
    units/<unit>/      one finished fold of one (model, config, seed): history.csv,
                       predictions.csv, scores.json, model.pt; written to a temporary
                       folder and renamed, so a unit folder that exists is whole
    epochs.csv         one row per (model, config, seed, fold, epoch)
    predictions.csv    one row per test clip and (model, config, seed)
    folds.csv          one row per test fold: n, accuracy, UF1, UAR
    summary.csv, summary.md   mean +- std over folds and pooled, per model and config

The tables are made from the units at the end of a run. Because finished units are
never redone and every unit is seeded from (seed, fold) alone, an interrupted run given
``--resume`` ends with the numbers an uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mer_di.pipeline.store import file_sha256
from mer_di.training.augment import prepare_images
from mer_di.training.configs import CONFIG_NAMES, ConfigError, applies, get_config
from mer_di.training.data import ClipSet, load_caches
from mer_di.training.folds import PROTOCOLS, FoldError, make_folds, validation_split
from mer_di.training.loop import Samples, TrainOptions, fit, predict
from mer_di.training.metrics import confusion, scores
from mer_di.training.models import ModelError, ModelInfo, build_model, is_known
from mer_di.training.results import PRED_COLUMNS, fold_scores, summarise, summary_markdown

from mer_di import __version__
from mer_di.errors import RunError


@dataclass
class CVSpec:
    """Everything that decides a run's numbers (it is saved as ``config.json``)."""

    caches: list[str]
    models: list[str]
    configs: list[str] = field(default_factory=lambda: ["baseline"])
    protocol: str = "kfold"
    folds: int = 5
    seeds: list[int] = field(default_factory=lambda: [0])
    classes: str = "five"
    train: TrainOptions = field(default_factory=TrainOptions)
    # weights per model: {"*": FILE} for every model, {model: FILE} for one; a FILE may be
    # "cache" (timm's weights from the local hub cache)
    pretrained: dict[str, str] = field(default_factory=dict)
    backbone: str | None = None  # dianet's stream backbone
    tiny: bool = False
    checkpoints: bool = True
    input: str = "di"  # "di": dynamic images; "apex": the apex frame alone (the control)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def weights_for(self, model: str) -> str | None:
        """The weights file (or "cache") model ``model`` starts from; None: random."""
        return self.pretrained.get(model, self.pretrained.get("*"))


@dataclass
class Unit:
    model: str
    config: str
    seed: int
    fold: int

    @property
    def name(self) -> str:
        return f"{self.model}__{self.config}__seed{self.seed}__fold{self.fold:02d}"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {device}: no CUDA device here")
    return torch.device(device)


@dataclass
class Plan:
    """A checked run: the data, the folds per seed and the units, before any training."""

    spec: CVSpec
    clips: ClipSet
    folds: dict[int, list[np.ndarray]]
    units: list[Unit]
    infos: dict[str, ModelInfo]
    skipped: list[str]


def plan_run(spec: CVSpec) -> Plan:
    """Check everything a run needs and raise a clear error before any training."""
    try:
        spec.train.check()
    except ValueError as exc:
        raise RunError(str(exc)) from None
    unknown = [m for m in spec.models if not is_known(m)]
    if unknown:
        raise RunError(f"unknown model(s) {', '.join(unknown)}: not registered and not a timm "
                       "model name")
    for c in spec.configs:
        get_config(c)
    if spec.protocol not in PROTOCOLS:
        raise RunError(f"unknown protocol {spec.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    for model, path in spec.pretrained.items():
        if model != "*" and model not in spec.models:
            raise RunError(f"--pretrained {model}={path}: {model} is not a --model of this run")
        if path != "cache" and not Path(path).is_file():
            raise RunError(f"--pretrained {path}: no such file (give a weights file, or "
                           "'cache' for timm's weights from the local hub cache)")
    if not spec.seeds:
        raise RunError("no seeds given")
    if spec.input not in INPUTS:
        raise RunError(f"unknown input {spec.input!r}; choose {', '.join(INPUTS)}")
    clips = load_caches(spec.caches, spec.classes)
    if spec.input == "apex" and clips.apex is None:
        raise RunError(f"--input apex: {', '.join(spec.caches)} hold no apex frames (built "
                       "before cache schema 2); rebuild with mer-prep build-cache --rebuild")
    folds = {s: make_folds(spec.protocol, clips.labels, clips.subjects, spec.folds, s)
             for s in spec.seeds}
    infos, units, skipped = {}, [], []
    for model in spec.models:
        try:
            _, info = build_model(model, len(clips.classes), pretrained=spec.weights_for(model),
                                  tiny=spec.tiny, backbone=spec.backbone)
        except ModelError as exc:
            raise RunError(str(exc)) from None
        infos[model] = info
        if spec.input == "apex" and info.pair:
            raise RunError(f"--input apex: {model} takes a pair of phase images, not one frame")
        for config in spec.configs:
            if spec.input == "apex" and get_config(config).dual:
                skipped.append(f"{model} x {config}: --input apex has one still frame per "
                               "clip, no phase images")
                continue
            if not applies(config, info.pair):
                skipped.append(f"{model} x {config}: {model} takes each clip's onset and "
                               "offset images as a pair; the dual-phase configurations are "
                               "for single-image models")
                continue
            units += [Unit(model, config, s, k) for s in spec.seeds
                      for k in range(len(folds[s]))]
    if not units:
        raise RunError("nothing to run: " + "; ".join(skipped))
    return Plan(spec, clips, folds, units, infos, skipped)


INPUTS = ("di", "apex")
APEX_ROWS = 3  # the stacked image tensor: full, onset, offset, then (if any) apex frames


def _rows(clips: ClipSet, idx: np.ndarray, phase: int) -> np.ndarray:
    """Rows of the stacked (full, onset, offset[, apex]) image tensor."""
    return phase * len(clips) + idx


def unit_samples(clips: ClipSet, idx: np.ndarray, pair: bool, dual: bool,
                 still: bool = False) -> Samples:
    """Samples of clips ``idx``. Single-image: each clip's ``full`` row, plus its valid
    ``onset`` and ``offset`` rows when ``dual``. Pair: each clip's (onset, offset) rows,
    a missing phase image replaced by the clip's ``full`` image. ``still``: each clip's
    apex-frame row instead (the control)."""
    labels = clips.labels
    if still:
        return Samples(torch.from_numpy(_rows(clips, idx, APEX_ROWS)),
                       torch.from_numpy(labels[idx]))
    if pair:
        on = np.where(clips.has_onset[idx], _rows(clips, idx, 1), idx)
        off = np.where(clips.has_offset[idx], _rows(clips, idx, 2), idx)
        return Samples(torch.from_numpy(np.stack([on, off], 1)), torch.from_numpy(labels[idx]))
    rows, ys = [idx], [labels[idx]]
    if dual:
        for phase, has in ((1, clips.has_onset), (2, clips.has_offset)):
            sel = idx[has[idx]]
            rows.append(_rows(clips, sel, phase))
            ys.append(labels[sel])
    return Samples(torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(ys)))


class _Images:
    """The clip set's images prepared once per (size, mean, std) on the device."""

    def __init__(self, clips: ClipSet, device: torch.device):
        self.clips, self.device, self._cache = clips, device, {}

    def get(self, info: ModelInfo) -> torch.Tensor:
        key = (info.input_size, info.mean, info.std)
        if key not in self._cache:
            self._cache.clear()  # one model's images at a time
            parts = [self.clips.full, self.clips.onset, self.clips.offset]
            raw = np.concatenate(parts + ([] if self.clips.apex is None else [self.clips.apex]))
            self._cache[key] = prepare_images(raw, info.input_size, info.mean, info.std,
                                              self.device)
        return self._cache[key]


def _unit_seed(seed: int, fold: int) -> int:
    return seed * 1000 + fold


def train_unit(plan: Plan, unit: Unit, images: torch.Tensor, device: torch.device,
               on_epoch: Callable[[dict], None] | None = None) -> dict[str, object]:
    """Train and test one fold; returns its records (history, predictions, scores, state)."""
    spec, clips = plan.spec, plan.clips
    cfg, info = get_config(unit.config), plan.infos[unit.model]
    test = plan.folds[unit.seed][unit.fold]
    train = np.setdiff1d(np.arange(len(clips)), test)
    val = None
    if spec.train.val_fraction > 0:
        train, val = validation_split(train, clips.labels, clips.subjects,
                                      subject_disjoint=spec.protocol != "kfold",
                                      fraction=spec.train.val_fraction,
                                      seed=_unit_seed(unit.seed, unit.fold))
    still = spec.input == "apex"
    train_s = unit_samples(clips, train, info.pair, cfg.dual, still)
    val_s = unit_samples(clips, val, info.pair, False, still) if val is not None else None
    test_s = unit_samples(clips, test, info.pair, False, still)
    torch.manual_seed(_unit_seed(unit.seed, unit.fold))
    model, _ = build_model(unit.model, len(clips.classes),
                           pretrained=spec.weights_for(unit.model),
                           tiny=spec.tiny, backbone=spec.backbone)
    start = time.perf_counter()
    result = fit(model, images, train_s, val_s, spec.train, _unit_seed(unit.seed, unit.fold),
                 cfg.fliprot, on_epoch)
    logits = predict(model, images, test_s, amp=spec.train.amp)
    pred = logits.argmax(1)
    label = clips.labels[test]
    s = scores(label, pred, len(clips.classes))
    keys = [clips.keys[i] for i in test]
    preds = pd.DataFrame({
        "model": unit.model, "config": unit.config, "seed": unit.seed, "fold": unit.fold,
        "dataset": [k.split(":", 1)[0] for k in keys],
        "subject": [k.split(":", 1)[1].split("/", 1)[0] for k in keys],
        "clip": [k.split("/", 1)[1] for k in keys], "label": label, "pred": pred,
        "label_name": [clips.classes[i] for i in label],
        "pred_name": [clips.classes[i] for i in pred]})
    history = pd.DataFrame(result.history)
    history.insert(0, "fold", unit.fold)
    for col, value in (("seed", unit.seed), ("config", unit.config), ("model", unit.model)):
        history.insert(0, col, value)
    summary = {**dataclasses.asdict(unit), **s.as_dict(), "best_epoch": result.best_epoch,
               "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
               "train_samples": len(train_s), "val_clips": 0 if val is None else len(val),
               "test_clips": len(test), "seconds": time.perf_counter() - start,
               "confusion": confusion(label, pred, len(clips.classes)).tolist()}
    return {"history": history, "predictions": preds, "scores": summary,
            "state": ({k: v.detach().cpu() for k, v in model.state_dict().items()}
                      if spec.checkpoints else None)}


def _write_unit(units_dir: Path, unit: Unit, records: dict[str, object]) -> None:
    tmp = units_dir / f".tmp-{unit.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    records["history"].to_csv(tmp / "history.csv", index=False)
    records["predictions"].to_csv(tmp / "predictions.csv", index=False)
    if records["state"] is not None:
        torch.save(records["state"], tmp / "model.pt")
    (tmp / "scores.json").write_text(json.dumps(records["scores"], indent=1))
    os.rename(tmp, units_dir / unit.name)


def _config_record(plan: Plan) -> dict[str, object]:
    spec = plan.spec
    return {"spec": spec.as_dict(),
            "caches_sha256": {c: file_sha256(c) for c in spec.caches},
            "classes": plan.clips.classes, "clips": len(plan.clips),
            "units": [u.name for u in plan.units], "skipped": plan.skipped}


def run_cv(spec: CVSpec, out: str | Path, resume: bool = False, device: str = "auto",
           progress: bool = True, echo: Callable[[str], None] = print) -> pd.DataFrame:
    """Run (or, with ``resume``, finish) the grid into the run folder ``out``; returns the
    summary table (also written and echoed)."""
    out = Path(out)
    plan = plan_run(spec)
    dev = resolve_device(device)
    record = _config_record(plan)
    config_path = out / "config.json"
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        if not resume:
            raise RunError(f"{out} already holds a run; add --resume to finish it, or choose "
                           "another --out")
        if {k: saved.get(k) for k in record} != record:
            diff = [k for k in record if saved.get(k) != record[k]]
            raise RunError(f"--resume: {out} was started with other settings or data "
                           f"({', '.join(diff)} differ); choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise RunError(f"{out} exists and is not a run folder; choose another --out")
    units_dir = out / "units"
    units_dir.mkdir(parents=True, exist_ok=True)
    for stale in units_dir.glob(".tmp-*"):
        shutil.rmtree(stale)  # a unit a killed run was writing
    if not config_path.exists():
        full = {**record, "tool_version": __version__, "torch": torch.__version__,
                "device": str(dev),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        tmp = config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(full, indent=1))
        os.replace(tmp, config_path)
    for note in plan.skipped:
        echo(f"skipped {note}")
    random = [m for m in spec.models if m != "learnet" and spec.weights_for(m) is None]
    if random:
        echo(f"no --pretrained weights for {', '.join(random)}: random initialisation")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    todo = [u for u in plan.units if not (units_dir / u.name / "scores.json").exists()]
    if resume and len(todo) < len(plan.units):
        echo(f"resuming: {len(plan.units) - len(todo)} of {len(plan.units)} folds already done")
    _train_all(plan, todo, units_dir, dev, progress)
    return write_tables(out, plan.clips.classes, echo)


def _train_all(plan: Plan, todo: list[Unit], units_dir: Path, dev: torch.device,
               progress: bool) -> None:
    images = _Images(plan.clips, dev)
    runs: dict[tuple[str, str, int], list[Unit]] = {}
    for u in todo:
        runs.setdefault((u.model, u.config, u.seed), []).append(u)
    bars = _Bars(progress, len(runs))
    for (model, config, seed), units in runs.items():
        bars.run(f"{model} {config} seed {seed}", len(units))
        for unit in units:
            bars.fold(unit.fold, plan.spec.train.epochs)
            tensor = images.get(plan.infos[unit.model])
            records = train_unit(plan, unit, tensor, dev, on_epoch=bars.epoch)
            _write_unit(units_dir, unit, records)
            bars.fold_done(records["scores"])
        bars.run_done()
    bars.close()


class _Bars:
    """Progress bars: runs, folds of the current run, epochs of the current fold."""

    def __init__(self, enabled: bool, runs: int):
        self.enabled = enabled
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.runs = tqdm(total=runs, desc="runs", unit="run", position=0)
        self.folds = self.epochs = None

    def run(self, label: str, folds: int) -> None:
        if self.enabled:
            self.folds = self._tqdm(total=folds, desc=label, unit="fold", position=1,
                                    leave=False)

    def fold(self, fold: int, epochs: int) -> None:
        if self.enabled:
            self.epochs = self._tqdm(total=epochs, desc=f"fold {fold}", unit="epoch",
                                     position=2, leave=False)

    def epoch(self, record: dict) -> None:
        if self.enabled:
            self.epochs.set_postfix(loss=f"{record['train_loss']:.3f}",
                                    val=f"{record['val_loss']:.3f}", refresh=False)
            self.epochs.update()

    def fold_done(self, s: dict) -> None:
        if self.enabled:
            self.epochs.close()
            self.folds.set_postfix(last_uf1=f"{s['uf1']:.3f}", refresh=False)
            self.folds.update()

    def run_done(self) -> None:
        if self.enabled:
            self.folds.close()
            self.runs.update()

    def close(self) -> None:
        if self.enabled:
            self.runs.close()


def write_tables(out: Path, classes: list[str], echo: Callable[[str], None] = print
                 ) -> pd.DataFrame:
    """Gather every finished unit of ``out`` into the run's tables; echo the summary."""
    config = json.loads((out / "config.json").read_text())
    done = [out / "units" / name for name in config["units"]
            if (out / "units" / name / "scores.json").exists()]
    missing = len(config["units"]) - len(done)
    if missing:
        raise RunError(f"{out}: {missing} of {len(config['units'])} folds are not finished; "
                       "run again with --resume")
    history = pd.concat([pd.read_csv(d / "history.csv") for d in done], ignore_index=True)
    preds = pd.concat([pd.read_csv(d / "predictions.csv", keep_default_na=False,
                                   dtype={"subject": str, "clip": str}) for d in done],
                      ignore_index=True)[list(PRED_COLUMNS)]
    _atomic_csv(history, out / "epochs.csv")
    _atomic_csv(preds, out / "predictions.csv")
    _atomic_csv(fold_scores(preds, len(classes)), out / "folds.csv")
    summary = summarise(preds, len(classes))
    _atomic_csv(summary, out / "summary.csv")
    table = summary_markdown(summary)
    spec = config["spec"]
    head = (f"{', '.join(spec['caches'])}: {config['clips']} clips, classes "
            f"{', '.join(classes)}; protocol {spec['protocol']}"
            + (f" ({spec['folds']} folds)" if spec["protocol"] != "loso" else "")
            + f", seeds {', '.join(map(str, spec['seeds']))}; input: "
            + ("the apex frame alone (control)" if spec.get("input") == "apex"
               else "dynamic images"))
    (out / "summary.md").write_text(f"{head}\n\n{table}\n")
    echo(head)
    echo(table)
    return summary


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


__all__ = ["CONFIG_NAMES", "CVSpec", "ConfigError", "FoldError", "RunError", "run_cv"]
