"""Apex robustness (issue 19.4b): each fold's trained model tested again on its own test
clips with the apex moved, ``mer-train cv ... --apex-robustness``.

Which models: those whose *test* input is made at the apex: DIANet (a clip's ``onset`` and
``offset`` dynamic images, onset->apex and apex->offset) and the flow models (the
onset->apex optical flow). A single-image model is tested on the ``full`` dynamic image,
which spans the clip from onset to offset whatever the apex (the dual-phase
configurations add phase images to training only), so it is not apex-dependent: the run
says so and writes no robustness predictions for it. The apex-frame control (``--input
apex``) depends on the apex, but the cache holds no frames at shifted apexes: said, and
not measured.

What is measured: after a unit's model is trained (the very model its test predictions
come from: nothing is chosen by these numbers), its test clips are predicted again with
the phase inputs replaced by those the build made with the apex shifted by ``s`` frames,
``s`` in ``-K..+K`` (the cache's ``apex_jitter`` K), and by those made at the spotted apex
(:mod:`mer_di.pipeline.apex`). A clip counts for a shift only where the build marked that
shift valid (its ``jitter_shifts``), and only clips whose apex is the annotation's
(``apex_source`` ``sheet``) count at all: a clip whose apex was spotted or is the middle
frame has no annotated apex to err from. The cache layout read (written by ``mer-prep
build-cache --apex-jitter K``): root attribute ``apex_jitter``; per clip
``jitter_onset``/``jitter_offset`` [shape=(2K+1, H, W, C), float32] (entry ``j``: the
apex shifted by ``j - K``; entry K equals ``onset``/``offset``; an invalid entry is zero),
``jitter_flow_onset_apex`` [shape=(2K+1, H, W, 3)] with flow, the attribute
``jitter_shifts``, and ``spotted_onset``/``spotted_offset`` [shape=(H, W, C)] with the
attributes ``spotted_apex`` and ``apex_used`` (absolute frame numbers).

As the ordinary test path does (:func:`mer_di.training.samples.unit_samples`), a phase
image that is missing (here: an all-zero entry, the build's "no image") is replaced by the
clip's ``full`` image; so at shift 0 the input is exactly the ordinary one and the
predictions equal the run's own (tested).

A unit writes its rows to ``units/<unit>/robustness_predictions.csv`` (recorded in its
``scores.json`` like every file; :data:`COLUMNS`) and what it measured under
``scores.json``'s ``apex_robustness``; the run gathers them into
``robustness_predictions.csv`` beside ``predictions.csv``; ``mer-train report`` makes
``robustness.md``, ``robustness.csv`` and ``robustness.png`` of them
(:mod:`mer_di.training.report_robustness`).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from mer_di.errors import RunError
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.store import (
    JITTER_FLOW,
    JITTER_PHASES,
    SPOTTED_PHASES,
    clip_key,
    parse_shifts,
)

JITTER_ATTR = "apex_jitter"  # root attribute: K (absent: 0)
JITTER = dict(zip(("onset", "offset"), JITTER_PHASES, strict=True))
SHIFTS_ATTR = "jitter_shifts"
SPOTTED = dict(zip(("onset", "offset"), SPOTTED_PHASES, strict=True))
PREDICTIONS = "robustness_predictions.csv"  # a unit's and the run's
KEY = "apex_robustness"  # in a unit's scores.json: what it measured, or why not
SHIFTED, SPOTTED_INPUT = "shifted", "spotted"
COLUMNS = ("model", "config", "seed", "fold", "dataset", "subject", "clip", "label",
           "label_name", "input", "apex_error", "apex_annotated", "apex", "pred", "pred_name")

FULL_IMAGE = ("tested on the full dynamic image (onset to offset), which does not depend on "
              "the apex")
APEX_FRAME_INPUT = ("the apex-frame control (--input apex): the cache holds no frames at "
                    "shifted apexes")


def apex_dependence(cfg, spec_input: str = "di") -> str:
    """Why model ``cfg`` (a ModelCfg) is not measured ('' when its test input depends on
    the apex and the cache's jitter can remake it: DIANet, the flow models)."""
    if spec_input == "apex":
        return APEX_FRAME_INPUT
    if getattr(cfg, "input_kind", "di") == "flow" or cfg.pair:
        return ""
    return FULL_IMAGE


def cache_jitter(path: str | Path) -> int:
    """The cache's ``apex_jitter`` K (0 when it has none)."""
    with open_cache(path) as cache:
        value = cache.attrs.get(JITTER_ATTR, 0)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _has_dataset(path: str | Path, name: str) -> bool:
    """Whether some clip of the cache holds the dataset ``name``."""
    with h5py.File(path, "r") as f:
        return any(isinstance(f[s], h5py.Group) and any(
            isinstance(f[s][c], h5py.Group) and name in f[s][c] for c in f[s]) for s in f)


def check_robustness(spec, cfgs: dict) -> list[str]:
    """Check that ``--apex-robustness`` can be measured on the run's caches, before any
    training; the notes the run prints (a model not measured, and why). Raises
    :class:`RunError` for a cache without ``--apex-jitter`` or, with a flow model, without
    jittered flow."""
    ks = {str(c): cache_jitter(c) for c in spec.caches}
    none = [c for c, k in ks.items() if k < 1]
    if none:
        raise RunError(f"--apex-robustness needs caches built with shifted apexes "
                       f"(mer-prep build-cache ... --apex-jitter K, K >= 1): "
                       f"{', '.join(none)} {'has' if len(none) == 1 else 'have'} none "
                       f"(apex_jitter 0); build {'it' if len(none) == 1 else 'them'} "
                       "with --apex-jitter, or leave out --apex-robustness")
    notes = []
    flow = [m for m, c in cfgs.items() if not apex_dependence(c, spec.input)
            and getattr(c, "input_kind", "di") == "flow"]
    if flow:
        lacking = [c for c in ks if not _has_dataset(c, JITTER_FLOW)]
        if lacking:
            raise RunError(f"--apex-robustness with the flow model(s) {', '.join(flow)}: "
                           f"{', '.join(lacking)} hold(s) no optical flow at shifted apexes "
                           f"({JITTER_FLOW}; the build makes it with --flow and "
                           "--apex-jitter together); build it so, or leave out "
                           f"{', '.join(flow)} or --apex-robustness")
        notes.append(f"--apex-robustness: {', '.join(flow)} are measured at shifted apexes "
                     "only; the cache holds no flow at the spotted apex")
    for model, cfg in cfgs.items():
        why = apex_dependence(cfg, spec.input)
        if why:
            notes.append(f"--apex-robustness: {model} is not apex-dependent ({why}); no "
                         "robustness predictions for it")
    if len(set(ks.values())) > 1:
        notes.append("--apex-robustness: the caches' apex jitter differs ("
                     + ", ".join(f"{c}: {k}" for c, k in ks.items())
                     + "); a shift beyond a cache's K has none of its clips")
    return notes


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Greyscale repeated to three channels where the clip set is colour (as
    :func:`mer_di.training.data.assemble` does)."""
    return np.repeat(image, channels, axis=2) if image.shape[2] == 1 < channels else image


def _read(plan, idx: np.ndarray, flow: bool) -> dict[int, dict]:
    """The jitter of clips ``idx`` of the plan's clip set (index -> record): ``shifts``
    (valid apex shifts), ``annotated`` (the annotated apex frame), ``spotted`` (the spotted
    apex frame, or None), the jittered phase arrays and, for DIANet, the spotted phase
    images. Clips without an annotated apex or without jitter are absent; ``left`` counts
    them (``no_annotated_apex``, ``no_jitter``)."""
    clips = plan.clips
    want: dict[str, list[int]] = {}
    for i in idx:
        want.setdefault(clip_key(clips.subjects[i], clips.clips[i]), []).append(int(i))
    out: dict[int, dict] = {}
    left = {"no_annotated_apex": 0, "no_jitter": 0}
    found: set[int] = set()
    names = (JITTER_FLOW,) if flow else tuple(JITTER.values())
    for path in plan.spec.caches:
        with open_cache(path) as cache:
            k = int(cache.attrs.get(JITTER_ATTR, 0) or 0)
            for record in cache:
                for i in want.get(record.key, ()):
                    if i in found or clips.datasets[i] != record.dataset:
                        continue
                    found.add(i)
                    a = record.attrs
                    if record.apex_source != "sheet":
                        left["no_annotated_apex"] += 1
                        continue
                    images = cache.images(record, names if flow else (*names,
                                                                      *SPOTTED.values()))
                    shifts = a.get(SHIFTS_ATTR)
                    if k < 1 or any(n not in images for n in names) or shifts is None:
                        left["no_jitter"] += 1
                        continue
                    shifts = [s for s in parse_shifts(shifts) if -k <= s <= k]
                    spotted = a.get("spotted_apex")
                    spotted = (int(spotted) if isinstance(spotted, (int, float))
                               and not isinstance(spotted, bool) else None)
                    out[i] = {"k": k, "shifts": shifts, "annotated": int(a["apex_used"]),
                              "spotted": spotted, **images}
    missing = len(set(map(int, idx)) - found)
    if missing:  # the plan read these clips from its caches: a cache changed under the run
        raise RunError(f"--apex-robustness: {missing} test clips are in none of "
                       f"{', '.join(map(str, plan.spec.caches))} any more (the cache changed "
                       "while the run read it)")
    out["left"] = left
    return out


def _pair_inputs(plan, cfg, items: list[tuple[int, np.ndarray | None, np.ndarray | None]],
                 device) -> tuple[torch.Tensor, torch.Tensor]:
    """DIANet's input for ``(clip, onset image, offset image)`` items: the images and the
    (onset row, offset row) pairs; a missing or all-zero phase image is the clip's
    ``full`` image, as in the ordinary test path."""
    from mer_di.training.augment import prepare_images

    clips = plan.clips
    channels = clips.full.shape[3]
    images = []
    for i, on, off in items:
        for img in (on, off):
            ok = img is not None and np.any(img)
            images.append(_channels(img, channels) if ok else clips.full[i])
    tensor = prepare_images(np.stack(images).astype(np.float32, copy=False), cfg.input_size,
                            cfg.mean, cfg.std, device)
    rows = torch.arange(2 * len(items), dtype=torch.int64).view(-1, 2)
    return tensor, rows


def unit_robustness(plan, unit, model: torch.nn.Module, device, test: np.ndarray
                    ) -> tuple[pd.DataFrame | None, dict]:
    """The unit's robustness predictions (:data:`COLUMNS`; None for a model that is not
    apex-dependent) and what was measured (``scores.json``'s ``apex_robustness``: the
    jitter K, the clips per column, the test clips left out and why)."""
    from mer_di.training.flow_input import prepare_flow
    from mer_di.training.loop import Samples, predict

    spec, clips = plan.spec, plan.clips
    cfg = plan.cfgs[unit.model]
    why = apex_dependence(cfg, spec.input)
    if why:
        return None, {"measured": False, "why": why}
    flow = getattr(cfg, "input_kind", "di") == "flow"
    jitter = _read(plan, test, flow)
    left = jitter.pop("left")
    k = max((r["k"] for r in jitter.values()), default=0)
    columns: list[tuple[str, int | None]] = [(SHIFTED, s) for s in range(-k, k + 1)]
    if not flow:
        columns.append((SPOTTED_INPUT, None))
    rows, counts = [], {}
    for kind, shift in columns:
        items, errors, apexes = [], [], []
        for i, r in jitter.items():
            if kind == SHIFTED:
                if shift not in r["shifts"]:
                    continue
                j = r["k"] + shift
                errors.append(shift)
                apexes.append(r["annotated"] + shift)
                if flow:
                    items.append((i, r[JITTER_FLOW][j], None))
                else:
                    items.append((i, r[JITTER["onset"]][j], r[JITTER["offset"]][j]))
            else:
                on, off = (r.get(SPOTTED[p]) for p in ("onset", "offset"))
                if r["spotted"] is None or (on is None and off is None):
                    continue
                errors.append(r["spotted"] - r["annotated"])
                apexes.append(r["spotted"])
                items.append((i, on, off))
        counts["spotted" if kind == SPOTTED_INPUT else str(shift)] = len(items)
        if not items:
            continue
        idx = np.array([i for i, _, _ in items], np.int64)
        if flow:
            tensor = prepare_flow(np.stack([f for _, f, _ in items]), cfg.input_size, device)
            index = torch.arange(len(items), dtype=torch.int64)
        else:
            tensor, index = _pair_inputs(plan, cfg, items, device)
        samples = Samples(index, torch.from_numpy(clips.labels[idx]))
        pred = predict(model, tensor, samples, amp=spec.train.amp).argmax(1)
        label = clips.labels[idx]
        rows.append(pd.DataFrame({
            "model": unit.model, "config": unit.config, "seed": unit.seed, "fold": unit.fold,
            "dataset": clips.datasets[idx], "subject": clips.subjects[idx],
            "clip": clips.clips[idx], "label": label,
            "label_name": [clips.classes[c] for c in label], "input": kind,
            "apex_error": np.array(errors, np.int64),
            "apex_annotated": [jitter[i]["annotated"] for i in idx],
            "apex": np.array(apexes, np.int64), "pred": pred,
            "pred_name": [clips.classes[c] for c in pred]}))
    table = (pd.concat(rows, ignore_index=True) if rows
             else pd.DataFrame(columns=list(COLUMNS)))
    info = {"measured": True, "jitter": k, "input": "optical flow" if flow else "phase images",
            "test_clips": int(len(test)), "clips": counts, "left_out": left}
    return table[list(COLUMNS)], info


def gather(unit_dirs: list[Path], failed: set[tuple[str, str]]) -> pd.DataFrame | None:
    """The run's ``robustness_predictions.csv``: every unit's rows (none of a failed
    (model, config)); None when no unit wrote any."""
    parts = [pd.read_csv(d / PREDICTIONS, keep_default_na=False,
                         dtype={"subject": str, "clip": str})
             for d in unit_dirs if (d / PREDICTIONS).is_file()]
    if not parts:
        return None
    table = pd.concat(parts, ignore_index=True)
    keep = [(m, c) not in failed for m, c in zip(table["model"], table["config"], strict=True)]
    return table.loc[np.array(keep, bool)][list(COLUMNS)]
