"""``mer-prep build-cache``: every clip's three dynamic images into one HDF5 cache.

Flow: manifest (all classes; training picks its class set) -> for each usable clip not
already in the cache: decode its frames (thread pool, the next clips' frames decoding
while the kernel pools the current one) -> the fused kernel -> a part file and the new
cache's temporary file -> at the end the new cache is renamed into place (see
:mod:`mer_di.pipeline.store`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numba
import numpy as np
from mer_di.data_manifest import ManifestRow, build_manifest
from mer_di.data_manifest.records import FIELDS
from mer_di.pipeline.dynamic_image import WEIGHTS, clip_dynamic_images
from mer_di.pipeline.frames import CROPS, ClipFrames, FrameError, finish_image, load_clip
from mer_di.pipeline.store import (
    BUILD_PARAMS,
    SCHEMA_VERSION,
    CacheError,
    CacheWriter,
    ClipRecord,
    PartStore,
    clip_fingerprints,
    file_sha256,
    read_root_attrs,
    writer_lock,
)

from mer_di import __version__
from mer_di.errors import BuildError

SWITCH_INTERVAL_S = 0.0002  # the GIL switch interval while decoding (Python's default 5 ms)


@dataclass
class BuildOptions:
    """How images are made. ``size`` None keeps the native frame size."""

    size: int | None = 224
    crop: str = "none"
    weights: str = "linear"
    workers: int | None = None  # frame-decoding threads; None = all cores
    strict: bool = False
    rebuild: bool = False

    def params(self, dataset: str) -> dict[str, object]:
        """The parameters a cache is built under (they must match to reuse a cache)."""
        return {"schema_version": SCHEMA_VERSION, "dataset": dataset, "weights": self.weights,
                "size": "native" if self.size is None else str(self.size), "crop": self.crop}


@dataclass
class BuildReport:
    cache: Path
    built: int = 0
    reused: int = 0
    skipped: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    total: int = 0

    def describe(self) -> str:
        rate = self.built / self.seconds if self.seconds else 0.0
        fps = self.frames / self.seconds if self.seconds else 0.0
        lines = [f"cache {self.cache}: {self.total} clips ({self.built} built, {self.reused} "
                 f"kept from before), {len(self.skipped)} skipped",
                 f"built {self.built} clips ({self.frames} frames) in {self.seconds:.1f} s: "
                 f"{rate:.1f} clips/s, {fps:.0f} frames/s"]
        if self.notes:
            lines.append(f"notes ({len(self.notes)}):")
            lines += [f"  {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"skipped clips ({len(self.skipped)}):")
            lines += [f"  row {s['sheet_row']}  {s['key']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines)


def row_fingerprint(row: ManifestRow, params: dict[str, object]) -> str:
    """Changes when anything that shapes the clip's images changes."""
    fields = {k: getattr(row, k) for k in ("subject", "clip", "onset", "apex", "offset",
                                           "frame_dir", "frame_template", "onset_ok",
                                           "offset_ok")}
    blob = json.dumps({"row": fields, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _apex_index(row: ManifestRow) -> int | None:
    """The apex's index inside onset..offset, or None when the phases can't be made."""
    if row.apex is None or not (row.onset_ok or row.offset_ok):
        return None
    if not row.onset <= row.apex <= row.offset:
        return None
    return row.apex - row.onset


def make_record(row: ManifestRow, clip: ClipFrames, weights: str, size: int | None,
                fingerprint: str) -> tuple[ClipRecord, list[str]]:
    """Pool one clip's decoded frames into its record; also the phase notes."""
    apex = _apex_index(row)
    images = clip_dynamic_images(clip.frames, apex, weights=weights)
    phases = {"full": images.full}
    notes = list(clip.notes)
    for phase, ok in (("onset", row.onset_ok), ("offset", row.offset_ok)):
        img = getattr(images, phase)
        if img is not None and ok:
            phases[phase] = img
    still = apex if apex is not None else len(clip.frames) // 2
    phases["apex_frame"] = clip.frames[still].astype(np.float32)
    phases = {p: finish_image(img, size, clip.grey) for p, img in phases.items()}
    # a frame is uint8 by nature: stored so, it costs a quarter of a float32 image
    phases["apex_frame"] = np.clip(np.rint(phases["apex_frame"]), 0, 255).astype(np.uint8)
    if apex is None:  # say why in the sheet's terms, not the kernel's
        why = next((p for p in row.problem_list if p.startswith("apex")), "apex unusable")
        notes.append(f"no onset or offset image ({why.split(':')[0]}); apex_frame is the "
                      f"middle frame ({row.onset + still})")
    else:
        notes += images.notes
    attrs = {k: getattr(row, k) for k in FIELDS}
    attrs.update(fingerprint=fingerprint, phases=list(phases), notes=notes,
                 crop_box=dataclasses.astuple(clip.box), jpeg_reduce=clip.reduce,
                 channels=int(clip.frames.shape[3]))
    return ClipRecord(row.key, phases, attrs), notes


def build_cache(dataset: str, root: str | Path, out: str | Path, sheet: str | Path | None = None,
                options: BuildOptions | None = None, progress: bool = False) -> BuildReport:
    """Build (or complete) the cache ``out`` for the dataset at ``root``."""
    options = options or BuildOptions()
    if options.crop not in CROPS:
        raise CacheError(f"unknown crop {options.crop!r}; choose one of {', '.join(CROPS)}")
    if options.weights not in WEIGHTS:
        raise CacheError(f"unknown weights {options.weights!r}; choose {', '.join(WEIGHTS)}")
    out = Path(out)
    manifest = build_manifest(dataset, root, sheet=sheet, classes="all")
    params = options.params(dataset)
    report = BuildReport(out)
    start = time.perf_counter()
    with writer_lock(out):
        # a temporary cache left by a killed writer (we hold the lock: no one else's)
        for stale in out.parent.glob(out.name + ".tmp-*"):
            stale.unlink()
        existing: dict[str, str] = {}
        if out.exists() and not options.rebuild:
            attrs = read_root_attrs(out)
            diff = [f"{k}: cache has {attrs.get(k)!r}, asked {params[k]!r}" for k in BUILD_PARAMS
                    if str(attrs.get(k)) != str(params[k])]
            if diff:
                raise CacheError(f"{out} was built with other parameters ({'; '.join(diff)}); "
                                 "use --rebuild to replace it, or another --out")
            existing = clip_fingerprints(out)
        parts = PartStore(out, params)
        if options.rebuild:
            parts.clear()
        parts.open()

        todo: list[tuple[ManifestRow, str]] = []
        keep_old: list[str] = []  # clips of the old cache, unchanged
        keep_parts: list[str] = []  # clips an interrupted build finished
        for row in manifest.rows:
            if not row.full_ok:
                report.skipped.append({"key": row.key, "sheet_row": row.sheet_row,
                                       "reason": row.problems})
                continue
            fp = row_fingerprint(row, params)
            if existing.get(row.key) == fp:
                keep_old.append(row.key)
                continue
            part = parts.load(row.key, images=False)
            if part is not None and part.attrs.get("fingerprint") == fp:
                keep_parts.append(row.key)
                continue
            todo.append((row, fp))
        report.reused = len(keep_old) + len(keep_parts)

        root_attrs = {**params, "sheet": str(manifest.sheet.resolve()),
                      "sheet_sha256": file_sha256(manifest.sheet),
                      "tool_version": __version__}
        # The new cache is written as clips finish (no read-back of the parts at the end);
        # the parts stay the crash-safe record until the new cache is renamed into place.
        with CacheWriter(out) as writer:
            if keep_old:
                with h5py.File(out, "r") as old:
                    for key in sorted(keep_old):
                        writer.copy_from(old, key)
            for key in sorted(keep_parts):
                writer.add(parts.load(key))
            failed = _build_clips(todo, options, parts, writer, report, progress)
            if failed and options.strict:
                raise BuildError(f"--strict: {failed['key']} (sheet row "
                                 f"{failed['sheet_row']}): {failed['reason']}; the "
                                 f"{report.built} clips built so far are kept in {parts.dir} "
                                 "for the next run")
            root_attrs.update(created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              skipped=report.skipped)
            report.total = writer.commit(root_attrs)
        parts.clear()
    report.seconds = time.perf_counter() - start
    return report


def _build_clips(todo, options: BuildOptions, parts: PartStore, writer: CacheWriter,
                 report: BuildReport, progress: bool) -> dict[str, object] | None:
    """Decode and pool every clip in ``todo``; returns the first failure under --strict."""
    workers = options.workers or os.cpu_count() or 1
    # The kernel runs between decodes; with every core decoding, Numba's parallel threads
    # only steal CPU from the decoders (measured: 55-67% -> 75-93% of the decode floor).
    kernel_threads = max(1, min(numba.config.NUMBA_NUM_THREADS,
                                (os.cpu_count() or 1) - workers))
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(kernel_threads)
    # A decoder thread needs the GIL for a moment between two frames; while the main
    # thread runs Python (HDF5 attributes, bookkeeping) it would wait up to the switch
    # interval (5 ms, several frames' decoding) for it. A short interval keeps the
    # decoders fed (measured: the 1-worker build went from 74 % to ...% of the floor).
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        return _build_loop(todo, options, parts, writer, report, progress, workers)
    finally:
        numba.set_num_threads(previous_threads)
        sys.setswitchinterval(previous_interval)


def _build_loop(todo, options: BuildOptions, parts: PartStore, writer: CacheWriter,
                report: BuildReport, progress: bool, workers: int) -> dict[str, object] | None:
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="dynamic images", unit="clip")
    # Two clips load at once (each submits its frames to the shared decoders), so the
    # decoders never wait at a clip boundary: while one clip's last frames decode, the next
    # clip's are already queued. The main thread pools clip i meanwhile.
    ahead = 2
    with ThreadPoolExecutor(workers) as decoders, ThreadPoolExecutor(ahead) as prefetch:
        def load(row: ManifestRow):
            paths = [(n, row.frame_path(n)) for n in range(row.onset, row.offset + 1)]
            return load_clip(paths, options.size, options.crop, decoders)

        pending = deque(prefetch.submit(load, row) for row, _ in todo[:ahead])
        for i, (row, fp) in enumerate(todo):
            current = pending.popleft()
            if i + ahead < len(todo):
                pending.append(prefetch.submit(load, todo[i + ahead][0]))
            try:
                clip = current.result()
            except FrameError as exc:
                skip = {"key": row.key, "sheet_row": row.sheet_row, "reason": str(exc)}
                report.skipped.append(skip)
                if options.strict:
                    for later in pending:
                        later.cancel()
                    return skip
                if bar:
                    bar.update()
                continue
            record, notes = make_record(row, clip, options.weights, options.size, fp)
            report.notes += [f"{row.key}: {n}" for n in notes]
            parts.save(record)
            writer.add(record)
            report.built += 1
            report.frames += clip.frames.shape[0]
            if bar:
                bar.update()
    if bar:
        bar.close()
    return None
