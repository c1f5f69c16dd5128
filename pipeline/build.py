"""``mer-prep build-cache``: every clip's three dynamic images into one HDF5 cache.

Flow: manifest (all classes; training picks its class set) -> for each usable clip not
already in the cache: decode its frames and pool them into its record
(:mod:`mer_di.pipeline.clip_pool`: a thread pool, the next clips' frames decoding while the
kernel pools the current one) -> a part file and the new cache's temporary file -> at the
end the new cache is renamed into place (see :mod:`mer_di.pipeline.writer`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py

from mer_di import __version__
from mer_di._files import is_disk_full
from mer_di._paths import check_writable
from mer_di.data_manifest import ManifestRow, build_manifest
from mer_di.errors import BuildError, CacheError
from mer_di.options import APEX_MODES, check
from mer_di.pipeline.build_flow import (
    FlowTodo,
    add_flow,
    flow_fingerprint,
    kept_apexes,
)
from mer_di.pipeline.cache_reader import clip_fingerprints, read_root_attrs
from mer_di.pipeline.clip_pool import PooledClip, pool_clips  # noqa: F401  (re-exported)
from mer_di.pipeline.clip_record import (  # noqa: F401  (row_fingerprint: the benchmarks')
    row_attrs,
    row_fingerprint,
)
from mer_di.pipeline.dynamic_image import WEIGHTS
from mer_di.pipeline.flow import check_flow_method
from mer_di.pipeline.frames import CROPS
from mer_di.pipeline.store import (
    ADDITIVE_PARAMS,
    BUILD_PARAMS,
    MAX_APEX_JITTER,
    PARAM_DEFAULTS,
    SCHEMA_VERSION,
    file_sha256,
)
from mer_di.pipeline.writer import CacheWriter, PartStore, writer_lock


@dataclass
class BuildOptions:
    """How a cache's images are made: ``size`` (pixels of the square side; None keeps
    the native frame size), ``crop`` and ``weights`` (:data:`mer_di.options.CROPS`,
    :data:`mer_di.options.WEIGHTS`), ``workers`` (decoding threads; None: all cores),
    ``strict`` (stop at the first bad clip), ``rebuild`` (replace a cache built with
    other parameters), ``redo`` (keys ``subject/clip`` to build again even when the
    cache has them: a clip whose pixels were damaged) and ``apex`` (where each clip's apex
    comes from, :data:`mer_di.options.APEX_MODES`) and ``flow`` (the optical-flow method,
    :data:`mer_di.pipeline.flow.FLOW_METHODS`; None: as the existing cache has it, 'none'
    for a new one; flow is additive: another method over an existing cache computes only
    the flow images, from the onset, apex and offset frames, and keeps the dynamic images)
    and ``apex_jitter`` (K, 0..10: every clip with phase images also gets them at the apex
    shifted by -K..K frames and at its spotted apex, :data:`mer_di.pipeline.store.
    APEX_VARIANTS`; 0, the default, makes none of them)."""

    size: int | None = 224
    crop: str = "none"
    weights: str = "linear"
    workers: int | None = None  # frame-decoding threads; None = all cores
    strict: bool = False
    rebuild: bool = False
    redo: tuple[str, ...] = ()
    apex: str = "auto"
    flow: str | None = None
    apex_jitter: int = 0

    def params(self, dataset: str) -> dict[str, object]:
        """The parameters a cache's dynamic images are built under (they must match to
        reuse a cache); the flow method (additive) is not among them. Raises
        :class:`CacheError` for an ``apex_jitter`` outside 0..10."""
        k = self.apex_jitter
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_APEX_JITTER:
            raise CacheError(f"--apex-jitter {k!r}: give a whole number of frames in "
                             f"0..{MAX_APEX_JITTER}")
        return {"schema_version": SCHEMA_VERSION, "dataset": dataset, "weights": self.weights,
                "size": "native" if self.size is None else str(self.size), "crop": self.crop,
                "apex": self.apex, "apex_jitter": k}


@dataclass
class BuildReport:
    cache: Path
    built: int = 0
    reused: int = 0
    relabelled: int = 0  # of the reused: their sheet row changed (emotion, AUs), not images
    skipped: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0
    total: int = 0
    flow: str = "none"
    flowed: int = 0  # clips that got flow images in this build
    flow_added: int = 0  # of them, clips whose dynamic images were kept

    def describe(self) -> str:
        rate = self.built / self.seconds if self.seconds else 0.0
        fps = self.frames / self.seconds if self.seconds else 0.0
        relabelled = (f", {self.relabelled} of them relabelled from the sheet"
                      if self.relabelled else "")
        lines = [f"cache {self.cache}: {self.total} clips ({self.built} built, {self.reused} "
                 f"kept from before{relabelled}), {len(self.skipped)} skipped",
                 f"built {self.built} clips ({self.frames} frames) in {self.seconds:.1f} s: "
                 f"{rate:.1f} clips/s, {fps:.0f} frames/s"]
        if self.flow != "none":
            lines.append(f"optical flow ({self.flow}): {self.flowed} clips got flow images "
                         f"({self.flow_added} of them added to clips kept from before, their "
                         "dynamic images untouched)")
        if self.notes:
            lines.append(f"notes ({len(self.notes)}):")
            lines += [f"  {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"skipped clips ({len(self.skipped)}):")
            lines += [f"  row {s['sheet_row']}  {s['key']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines)


def build_cache(dataset: str, root: str | Path, out: str | Path, sheet: str | Path | None = None,
                options: BuildOptions | None = None, progress: bool = False) -> BuildReport:
    """Build (or complete) the dynamic-image cache ``out`` for the dataset at ``root``.

    Parameters
    ----------
    dataset : str
        ``casme2``, ``samm`` or ``mmew``.
    root : str or Path
        The dataset folder in its official layout.
    out : str or Path
        The HDF5 cache to write; an existing one built with the same parameters is
        completed (only new or changed clips are computed), one with other parameters is
        refused unless ``options.rebuild``.
    sheet : str or Path, optional
        The annotation sheet (default: the official file name in ``root``).
    options : BuildOptions, optional
        Size (pixels, square; None keeps the native size), crop, weights, decoding
        threads, strict, rebuild.
    progress : bool
        A progress bar over clips.

    Returns
    -------
    report : BuildReport
        Clips built, kept and skipped (with reasons), notes, frames and seconds.

    Raises
    ------
    CacheError
        Another build holds the cache, or it was built with other parameters.
    BuildError
        ``options.strict`` and a bad clip (the clips built so far are kept).
    ManifestError
        The sheet can't be read.
    """
    options = options or BuildOptions()
    check("crop", options.crop, CROPS, CacheError)
    check("weights", options.weights, WEIGHTS, CacheError)
    check("apex source", options.apex, APEX_MODES, CacheError)
    if options.flow is not None:
        check_flow_method(options.flow)
    out = check_writable(out)
    manifest = build_manifest(dataset, root, sheet=sheet, classes="all")
    params = options.params(dataset)
    report = BuildReport(out)
    start = time.perf_counter()
    if manifest.why_no_clip():  # never an empty cache as a success
        raise BuildError(manifest.why_no_clip())
    redo = set(options.redo)
    unknown = sorted(redo - {row.key for row in manifest.rows if row.full_ok})
    if unknown:
        raise BuildError(f"--redo {unknown[0]}: not a usable clip of {manifest.sheet} (give "
                         "SUBJECT/CLIP as the cache names it, e.g. "
                         f"{next(r.key for r in manifest.rows if r.full_ok)})")
    with writer_lock(out):
        # a temporary cache left by a killed writer (we hold the lock: no one else's)
        for stale in out.parent.glob(out.name + ".tmp-*"):
            stale.unlink()
        existing: dict[tuple[str, str], tuple[str, str, str]] = {}
        flow = options.flow or "none"
        if options.rebuild and options.flow is None and out.exists():
            try:  # --rebuild without --flow keeps the flow method, as a plain build does
                flow = str(read_root_attrs(out).get("flow") or "none")
            except CacheError:
                pass  # an unreadable cache: rebuilt without flow
        if out.exists() and not options.rebuild:
            attrs = read_root_attrs(out)
            had = {k: attrs.get(k, PARAM_DEFAULTS.get(k)) for k in BUILD_PARAMS}
            flow = options.flow or str(had["flow"])  # not asked: the cache's own
            diff = [f"{k}: cache has {had[k]!r}, asked {params[k]!r}" for k in BUILD_PARAMS
                    if k not in ADDITIVE_PARAMS and str(had[k]) != str(params[k])]
            if diff:
                raise CacheError(f"{out} was built with other parameters ({'; '.join(diff)}); "
                                 "use --rebuild to replace it, or another --out")
            existing = clip_fingerprints(out)
        check_flow_method(flow)  # the cache's own may be tvl1, where this OpenCV lacks it
        options = dataclasses.replace(options, flow=flow)
        report.flow = flow
        parts = PartStore(out, params)
        if options.rebuild:
            parts.clear()
        parts.open()

        todo: list[tuple[ManifestRow, str]] = []
        # clips whose images are done: of the old cache, or an interrupted build's parts;
        # each with its row's attributes now (the sheet may have relabelled it)
        keep_old: dict[tuple[str, str], dict[str, object]] = {}
        keep_parts: dict[tuple[str, str], dict[str, object]] = {}
        # kept clips whose flow images are not those of this build's method
        flow_todo: list[FlowTodo] = []
        for row in manifest.rows:
            if not row.full_ok:
                skip = {"key": row.key, "sheet_row": row.sheet_row, "reason": row.problems}
                if options.strict:
                    raise BuildError(_strict_stop(skip, 0, parts))
                report.skipped.append(skip)
                continue
            fp = row_fingerprint(row, params)
            ffp = flow_fingerprint(fp, flow)
            name = (row.subject, row.clip)
            labels = row_attrs(row)
            if row.key in redo:
                todo.append((row, fp))
                continue
            if existing.get(name, ("", "", ""))[0] == fp:
                keep_old[name] = labels
                report.relabelled += existing[name][1] != labels["row_fingerprint"]
                if existing[name][2] != ffp:
                    flow_todo.append(FlowTodo(row, ffp, {}))
                continue
            part = parts.load(*name, images=False)
            if part is not None and part.attrs.get("fingerprint") == fp:
                keep_parts[name] = labels
                report.relabelled += part.attrs.get("row_fingerprint") != labels[
                    "row_fingerprint"]
                if part.attrs.get("flow_fingerprint", "") != ffp:
                    flow_todo.append(FlowTodo(row, ffp, part.attrs))
                continue
            todo.append((row, fp))
        report.reused = len(keep_old) + len(keep_parts)

        root_attrs = {**params, "sheet": str(manifest.sheet.resolve()),
                      "sheet_sha256": _source_sha256(manifest),
                      "tool_version": __version__, "flow": flow}
        try:
            # The new cache is written as clips finish (no read-back of the parts at the end);
            # the parts stay the crash-safe record until the new cache is renamed into place.
            with CacheWriter(out) as writer:
                if keep_old:
                    with h5py.File(out, "r") as old:
                        for name in sorted(keep_old):
                            writer.copy_from(old, *name, attrs=keep_old[name])
                for name in sorted(keep_parts):
                    record = parts.load(*name)
                    record.attrs.update(keep_parts[name])
                    writer.add(record)
                if flow_todo:
                    _add_flow(flow_todo, out, options, parts, writer, report, progress)
                failed = _build_clips(todo, options, parts, writer, report, progress)
                if failed and options.strict:
                    raise BuildError(_strict_stop(failed, report.built, parts))
                created = datetime.now(timezone.utc).isoformat(timespec="seconds")
                root_attrs.update(created=created, skipped=report.skipped)
                report.total = writer.commit(root_attrs)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            kept = len(list(parts.dir.glob("*.part")))
            raise BuildError(f"disk full while writing {out} or its parts ({exc}); {kept} "
                             f"finished clips are kept in {parts.dir} and the previous cache, "
                             "if any, is untouched: free some space and run the same command "
                             "again") from None
        parts.clear()
    report.seconds = time.perf_counter() - start
    return report


def _add_flow(todo: list[FlowTodo], out: Path, options: BuildOptions, parts: PartStore,
              writer: CacheWriter, report: BuildReport, progress: bool) -> None:
    """The flow images of the kept clips ``todo`` (:mod:`mer_di.pipeline.build_flow`)."""
    kept_apexes(todo, out)
    flowed, failed = add_flow(todo, options.flow, options.size, options.crop,
                              options.workers, parts, writer, progress, options.apex_jitter)
    report.flowed += flowed
    report.flow_added += flowed
    for row, why in failed:
        skip = {"key": row.key, "sheet_row": row.sheet_row, "reason": why}
        if options.strict:
            raise BuildError(_strict_stop(skip, report.built, parts))
        report.notes.append(f"{row.key}: no optical flow, its dynamic images kept ({why})")


def _source_sha256(manifest) -> str:
    """The sheet's SHA-256; for a dataset read from its folders (SMIC), of what the folders
    said: every clip's names, label and frame range."""
    if manifest.sheet.is_file():
        return file_sha256(manifest.sheet)
    listing = [(r.subject, r.clip, r.emotion, r.onset, r.offset, r.frame_template)
               for r in manifest.rows]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _strict_stop(skip: dict[str, object], built: int, parts: PartStore) -> str:
    return (f"--strict: {skip['key']} (sheet row {skip['sheet_row']}): {skip['reason']}; the "
            f"{built} clips built so far are kept in {parts.dir} for the next run")


def _build_clips(todo, options: BuildOptions, parts: PartStore, writer: CacheWriter,
                 report: BuildReport, progress: bool) -> dict[str, object] | None:
    """Build every clip in ``todo`` into the parts and the new cache; returns the first
    failure under --strict."""
    bar = None
    if progress and todo:
        from mer_di._progress import progress_bar

        bar = progress_bar(len(todo), "dynamic images", "clip")
    try:
        # (a writer thread for the part files and cache writes was measured in issue 22: no
        # difference in CPU or time; h5py holds the GIL while it writes)
        with closing(pool_clips(todo, options)) as pooled:
            for done in pooled:
                if bar:
                    bar.update()
                row = done.row
                if done.record is None:
                    skip = {"key": row.key, "sheet_row": row.sheet_row, "reason": done.error}
                    report.skipped.append(skip)
                    if options.strict:
                        return skip
                    continue
                report.notes += [f"{row.key}: {n}" for n in done.notes]
                parts.save(done.record)
                writer.add(done.record)
                report.built += 1
                report.frames += done.frames
                report.flowed += bool(done.record.attrs.get("flow_phases"))
    finally:
        if bar:
            bar.close()
    return None
