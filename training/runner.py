"""``mer-train cv``: the grid model x configuration x seed, each cross-validated.

A run folder holds::

    config.json        the resolved configuration (every option, the caches' SHA-256)
    units/<unit>/      one finished unit (see :mod:`mer_di.training.trainer`), written to a
                       temporary folder and renamed, so a unit folder that exists is whole
    epochs.csv         one row per (model, config, seed, fold, epoch)
    predictions.csv    one row per test clip and (model, config, seed)
    folds.csv          one row per test fold: n, accuracy, UF1, UAR
    summary.csv, summary.md   mean +- std over folds and pooled, per model and config
    tables.json        the tables' bytes and SHA-256, written after them
    .lock              while a cv writes the folder: one writer at a time
                       (:mod:`mer_di.training.run_folder`)

The flow: :func:`~mer_di.training.plan.plan_run` checks everything and lists the units; an
executor (:mod:`mer_di.training.executor`) runs those not yet finished; the tables are
made from the unit folders (:func:`~mer_di.training.results.write_tables`). Because
finished units are never redone and every unit is seeded from (seed, fold) alone, an
interrupted run given ``--resume`` ends with the numbers an uninterrupted one would have.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from mer_di import __version__
from mer_di._files import remove_partials, write_atomic
from mer_di._paths import check_writable, make_folder
from mer_di.errors import RunError
from mer_di.pipeline.store import file_sha256
from mer_di.training.determinism import apply_determinism
from mer_di.training.disk import check_space, run_bytes
from mer_di.training.executor import Executor, LocalExecutor
from mer_di.training.loop import TrainOptions
from mer_di.training.plan import CVSpec, Plan, plan_run, resolve_device
from mer_di.training.results import write_tables
from mer_di.training.run_folder import is_leftover, read_config, run_lock, run_writes
from mer_di.training.tags import data_tag, setup_tags
from mer_di.training.units import unit_damage, unit_done

RECORD_KEYS = ("spec", "caches_sha256", "classes", "clips", "units", "skipped")


def _config_record(plan: Plan) -> dict[str, object]:
    spec = plan.spec
    return {"spec": spec.as_dict(),
            "caches_sha256": {c: file_sha256(c) for c in spec.caches},
            "clip_list_sha256": file_sha256(spec.clip_list) if spec.clip_list else None,
            "classes": plan.clips.classes, "clips": len(plan.clips),
            "units": [u.name for u in plan.units], "skipped": plan.skipped}


def _comparable(record: dict[str, object]) -> dict[str, object]:
    """A run's record as resuming compares it: every setting flattened (``spec.train.lr``),
    and each cache by its content (its SHA-256), not by the path it was given under."""
    flat: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value

    shas = dict(record.get("caches_sha256") or {})
    walk("", {k: v for k, v in record.items() if k in RECORD_KEYS and k != "caches_sha256"})
    flat["spec.caches"] = [shas.get(c, c) for c in record["spec"]["caches"]]
    if record["spec"].get("clip_list"):  # a list, like a cache, by its content
        flat["spec.clip_list"] = record.get("clip_list_sha256") or record["spec"]["clip_list"]
    return flat


def _differences(saved: dict[str, object], now: dict[str, object]) -> list[str]:
    """``'key: run has A, asked B'`` for every setting that differs."""
    return [f"{k.removeprefix('spec.')}: run has {saved.get(k)!r}, asked {now.get(k)!r}"
            for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]


def _changed_caches(saved: dict[str, object], now: dict[str, object]) -> list[str]:
    """The caches given under the run's own paths whose content is not the run's."""
    was, now_shas = dict(saved.get("caches_sha256") or {}), dict(now["caches_sha256"])
    return [c for c in now_shas if c in was and was[c] != now_shas[c]]


def resume_spec(out: str | Path) -> CVSpec:
    """The :class:`CVSpec` a run folder was started with (``mer-train cv --resume --out``)."""
    config = read_config(Path(out))  # a damaged one is named, with the reason
    try:
        spec = dict(config["spec"])
        spec["train"] = TrainOptions(**spec["train"])
        return CVSpec(**spec)
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"--resume: {out} holds no readable run configuration ({exc}); give "
                       "the run's options, or another --out") from None


def run_cv(spec: CVSpec, out: str | Path, resume: bool = False, device: str = "auto",
           progress: bool = True, echo: Callable[[str], None] = print,
           executor: Executor | None = None) -> pd.DataFrame:
    """Cross-validate every model x configuration x seed of ``spec`` into the run folder
    ``out`` (or, with ``resume``, finish the run there).

    Parameters
    ----------
    spec : CVSpec
        What to run (caches, models, configurations, protocol, seeds, loop settings).
    out : str or Path
        The run folder: created; an existing run is refused unless ``resume``.
    resume : bool
        Keep the finished units of the run in ``out`` and do the others; the settings
        and data must be the ones it was started with.
    device : str
        ``auto``, ``cpu`` or ``cuda[:N]``.
    progress : bool
        Progress bars (local executor).
    echo : callable
        Where the run's messages and summary go (``print``; the command: ``click.echo``).
    executor : Executor or None
        How the units run (default: :class:`LocalExecutor`, in this process).

    Returns
    -------
    summary : pandas.DataFrame
        One row per (model, configuration): accuracy, UF1 and UAR as mean and std over
        folds (fractions in [0, 1]) and pooled over folds (``summary.csv``).

    Raises
    ------
    MerError
        Any bad input, before any training (see :func:`mer_di.training.plan.plan_run`);
        another ``cv`` writing ``out`` (one writer at a time: :func:`run_lock`); a full
        disk or a failed write (the finished units are kept, the message says how much
        space the rest needs); a damaged ``config.json``.
    """
    out = check_writable(out, folder=True)
    plan = plan_run(spec)
    dev = resolve_device(device)
    record = _config_record(plan)
    created = not out.exists()
    make_folder(out)
    try:
        with run_writes(out, [u.name for u in plan.units]), run_lock(out):
            return _run_locked(spec, plan, out, record, dev, resume, progress, echo, executor)
    except BaseException:
        if created:  # a run stopped before it wrote anything leaves no folder behind
            for folder in (out / "units", out):
                try:
                    folder.rmdir()
                except OSError:
                    pass
        raise


def _run_locked(spec: CVSpec, plan: Plan, out: Path, record: dict[str, object], dev, resume,
                progress, echo, executor) -> pd.DataFrame:
    """:func:`run_cv` once it holds the run folder's lock."""
    config_path = out / "config.json"
    if config_path.exists():
        saved = read_config(out)
        if not resume:
            raise RunError(f"{out} already holds a run; add --resume to finish it, or choose "
                           "another --out")
        saved["spec"] = {**CVSpec([], []).as_dict(), **saved.get("spec", {})}  # older runs
        changed = _changed_caches(saved, record)
        if changed:
            raise RunError(f"--resume: {', '.join(changed)} changed since {out} was started "
                           "(rebuilt or replaced: its SHA-256 is not the one config.json "
                           "records); resume with the cache the run was made on, or start "
                           "a new run into another --out")
        saved["spec"]["train"] = {**TrainOptions().__dict__, **saved["spec"]["train"]}
        diff = _differences(_comparable(saved), _comparable(record))
        if diff:
            raise RunError(f"--resume: {out} was started with other settings or data: "
                           f"{'; '.join(diff)}; resume with the run's own settings "
                           f"(mer-train cv --resume --out {out}), or choose another --out")
    elif any(not is_leftover(p) for p in out.iterdir()):
        raise RunError(f"{out} exists and is not a run folder; choose another --out")
    units_dir = out / "units"
    make_folder(units_dir)
    for stale in units_dir.glob(".tmp-*"):
        shutil.rmtree(stale)  # a unit a killed run was writing
    remove_partials(out)  # a table or the config a killed run was writing
    determinism = apply_determinism(plan.spec.determinism, dev)
    if not config_path.exists():
        full = {**record, "notes": plan.notes,
                "setup": setup_tags(plan, dev, plan.weights),
                "data_setup": data_tag(plan),
                "determinism": determinism,
                "tool_version": __version__,
                "torch": torch.__version__,
                "device": str(dev),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        write_atomic(config_path, json.dumps(full, indent=1))
    for note in plan.skipped:
        echo(f"skipped {note}")
    for note in plan.notes:
        echo(f"note: {note}")
    random = [m for m in spec.models
              if not plan.cfgs[m].from_scratch and spec.weights_for(m) is None]
    if random:
        echo(f"no --pretrained weights for {', '.join(random)}: random initialisation")
    for unit in plan.units:  # a unit folder that does not check out is redone, and said so
        if (units_dir / unit.name).exists() and not unit_done(units_dir, unit):
            echo(f"redoing {unit.name}: its folder is damaged "
                 f"({unit_damage(units_dir, unit)})")
            shutil.rmtree(units_dir / unit.name)
    todo = [u for u in plan.units if not unit_done(units_dir, u)]
    if resume and len(todo) < len(plan.units):
        echo(f"resuming: {len(plan.units) - len(todo)} of {len(plan.units)} folds already done")
    if todo:
        ckpt = "with" if spec.checkpoints else "without"
        echo(check_space(out, run_bytes(plan, todo),
                         f"the run ({len(todo)} units, {ckpt} checkpoints)",
                         "give --no-checkpoints (a checkpoint is only needed for mer-train "
                         "predict)"))
    (executor or LocalExecutor(progress)).run(plan, todo, units_dir, dev)
    return write_tables(out, plan.clips.classes, echo)
