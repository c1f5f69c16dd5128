"""Optical flow added to clips whose dynamic images a build keeps (``--flow`` over a cache
built without it, or with another method): only the onset, apex and offset frames are
decoded, and the flow images (:mod:`mer_di.pipeline.flow`) are written beside the kept
dynamic images, which are copied as they are (their bytes unchanged).

Crash safety as for the whole clips: each clip's flow is first saved as a part
(``<cache>.parts/<subject>__<clip>.flow.part``), so a killed build resumes without
computing it again; the cache itself is only ever replaced (:mod:`mer_di.pipeline.writer`).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mer_di.data_manifest import ManifestRow
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.flow import (
    FLOW_ONSET_APEX,
    FLOW_VERSION,
    clip_flow,
    grey_at_size,
    jitter_flow,
)
from mer_di.pipeline.frames import FrameError, load_clip
from mer_di.pipeline.store import JITTER_FLOW, ClipRecord, parse_shifts, usable_apex
from mer_di.pipeline.writer import CacheWriter, PartStore


def flow_fingerprint(fingerprint: str, method: str) -> str:
    """The fingerprint of a clip's flow images: its dynamic images' ``fingerprint`` (the
    frames, the apex, size and crop) with the flow ``method`` and :data:`FLOW_VERSION`;
    '' for method ``none`` (no flow images)."""
    if method == "none":
        return ""
    blob = json.dumps({"images": fingerprint, "flow": method, "version": FLOW_VERSION})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flow_allowed(source: str, row: ManifestRow) -> tuple[bool, bool] | None:
    """``(onset->apex allowed, apex->offset allowed)`` for a clip whose apex came from
    ``source`` (:data:`mer_di.pipeline.store.APEX_SOURCES`), or None when it has no usable
    apex ('none'): as its phase dynamic images are allowed (the sheet's row decides for
    the sheet's apex, :func:`mer_di.pipeline.clip_record.make_record`)."""
    if source == "none":
        return None
    if source == "sheet":
        return bool(row.onset_ok), bool(row.offset_ok)
    return True, True


@dataclass
class FlowTodo:
    """A kept clip that needs flow: its sheet ``row``, the flow fingerprint wanted
    (``flow_fp``; '' drops its flow), and its stored attributes (``apex_used``,
    ``apex_source`` are read)."""

    row: ManifestRow
    flow_fp: str
    attrs: dict[str, object]


def kept_apexes(todo: list[FlowTodo], cache: Path) -> None:
    """Fill each ``todo``'s ``attrs`` that is empty (a clip kept from the old ``cache``, not
    from a part) with its attributes there: the apex its dynamic images used."""
    if any(not t.attrs for t in todo):
        with open_cache(cache, damaged="skip") as old:
            for t in todo:
                if not t.attrs:
                    t.attrs = dict(old.get(t.row.subject, t.row.clip).attrs)
    for t in todo:
        if "apex_used" not in t.attrs:  # a clip built before the cache recorded its apex
            sheet = usable_apex(t.row.onset, t.row.apex, t.row.offset, t.row.onset_ok,
                                t.row.offset_ok)
            t.attrs.update(apex_source="none" if sheet is None else "sheet",
                           apex_used=t.row.apex)


def compute_flow(todo: FlowTodo, method: str, size: int | None, crop: str, decoders,
                 apex_jitter: int = 0) -> tuple[dict[str, object], dict]:
    """``(images, attrs)`` of one kept clip's flow, from its onset, apex and offset frames
    alone, and with ``apex_jitter`` K > 0 the frames at its valid shifted apexes for
    ``jitter_flow_onset_apex`` (raises :class:`FrameError` for a frame that can't be
    decoded)."""
    attrs = {"flow_fingerprint": todo.flow_fp, "flow_phases": []}
    allowed = flow_allowed(str(todo.attrs.get("apex_source") or "none"), todo.row)
    if method == "none" or allowed is None:
        return {}, attrs
    row = todo.row
    apex = int(todo.attrs["apex_used"])
    shifts = parse_shifts(todo.attrs.get("jitter_shifts")) if apex_jitter > 0 else ()
    numbers = sorted({row.onset, apex, row.offset, *(apex + s for s in shifts)})
    # the crop box comes from the first frame given, the onset, as in the whole build
    clip = load_clip([(n, row.frame_path(n)) for n in numbers], size, crop, decoders)
    at = tuple(numbers.index(n) for n in (row.onset, apex, row.offset))
    images, _ = clip_flow(clip.frames, at, size, method, *allowed)
    attrs["flow_phases"] = list(images)
    if shifts and FLOW_ONSET_APEX in images:
        def grey_of(i: int):  # clip frame i (0 = the onset) among those decoded
            return grey_at_size(clip.frames[numbers.index(row.onset + i)], size)

        images[JITTER_FLOW] = jitter_flow(grey_of, apex - row.onset, shifts, apex_jitter,
                                          method, images[FLOW_ONSET_APEX])
    return images, attrs


def add_flow(todo: list[FlowTodo], method: str, size: int | None, crop: str,
             workers: int | None, parts: PartStore, writer: CacheWriter,
             progress: bool = False, apex_jitter: int = 0
             ) -> tuple[int, list[tuple[ManifestRow, str]]]:
    """Give every clip of ``todo`` (already copied into ``writer``) its flow images under
    ``method`` (or none), saving each as a flow part first. Returns ``(clips that got
    flow images, [(row, why)] of those whose frames failed)``: a failed clip keeps its
    dynamic images, without flow."""
    bar = None
    if progress and todo:
        from mer_di._progress import progress_bar

        bar = progress_bar(len(todo), "optical flow", "clip")
    flowed, failed = 0, []
    try:
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as decoders:
            for item in todo:
                row = item.row
                part = parts.load(row.subject, row.clip, kind="flow")
                if part is not None and part.attrs.get("flow_fingerprint") == item.flow_fp:
                    images, attrs = part.images, part.attrs
                else:
                    try:
                        images, attrs = compute_flow(item, method, size, crop, decoders,
                                                     apex_jitter)
                    except FrameError as exc:
                        failed.append((row, str(exc)))
                        images, attrs = {}, {"flow_fingerprint": "", "flow_phases": []}
                    else:
                        parts.save(ClipRecord(row.subject, row.clip, images, attrs),
                                   kind="flow")
                writer.set_flow(row.subject, row.clip, images, attrs)
                flowed += bool(images)
                if bar:
                    bar.update()
    finally:
        if bar:
            bar.close()
    return flowed, failed
