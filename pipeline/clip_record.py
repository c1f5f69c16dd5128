"""One clip's record for the cache: its decoded frames pooled into the three dynamic images,
the apex frame and (with ``--flow``) the optical flow, with the attributes the cache keeps
(the sheet's row, where the apex came from, the fingerprints that decide what a later build
redoes). :mod:`mer_di.pipeline.build` decodes the clips and writes the records."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from mer_di.data_manifest import ManifestRow
from mer_di.data_manifest.records import FIELDS
from mer_di.pipeline.apex import spot_apex
from mer_di.pipeline.build_flow import flow_allowed, flow_fingerprint
from mer_di.pipeline.dynamic_image import clip_dynamic_images
from mer_di.pipeline.flow import clip_flow
from mer_di.pipeline.frames import ClipFrames, finish_image
from mer_di.pipeline.store import APEX_FRAME, ClipRecord, usable_apex


def row_fingerprint(row: ManifestRow, params: dict[str, object]) -> str:
    """Changes when anything that shapes the clip's images changes."""
    fields = {k: getattr(row, k) for k in ("subject", "clip", "onset", "apex", "offset",
                                           "frame_dir", "frame_template", "onset_ok",
                                           "offset_ok")}
    return _digest({"row": fields, "params": params})


def row_attrs(row: ManifestRow) -> dict[str, object]:
    """Everything of the sheet's row that the cache stores (and training reads: the
    emotion, the label), with its own fingerprint: a row whose emotion or action units
    change is relabelled in the cache even when its images stay."""
    attrs = {k: getattr(row, k) for k in FIELDS}
    return {**attrs, "row_fingerprint": _digest(attrs)}


def _digest(value: object) -> str:
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def choose_apex(row: ManifestRow, frames: np.ndarray, mode: str
                ) -> tuple[int | None, str, int | None]:
    """``(index, source, spotted)``: the 0-based apex index in ``frames`` (the clip
    onset..offset) that the phase images use (None: no phase images), where it came from
    (a key of :data:`mer_di.pipeline.store.APEX_SOURCES`), and the spotted index when the
    frames were looked at (else None)."""
    sheet = usable_apex(row.onset, row.apex, row.offset, row.onset_ok, row.offset_ok)
    if mode == "sheet" or (mode == "auto" and sheet is not None):
        return sheet, "sheet" if sheet is not None else "none", None
    if mode == "middle" or len(frames) < 3:
        return len(frames) // 2, "middle", None
    spotted = spot_apex(frames)
    return spotted, "spotted", spotted


def make_record(row: ManifestRow, clip: ClipFrames, weights: str, size: int | None,
                fingerprint: str, apex_mode: str = "auto", flow: str | None = "none"
                ) -> tuple[ClipRecord, list[str]]:
    """Pool one clip's decoded frames into its record (with its optical flow under
    ``flow``, :mod:`mer_di.pipeline.flow`, for a clip with a usable apex); also the phase
    notes."""
    apex, source, spotted = choose_apex(row, clip.frames, apex_mode)
    images = clip_dynamic_images(clip.frames, apex, weights=weights)
    phases = {"full": images.full}
    notes = list(clip.notes)
    # the sheet's phases are as its row allows; a spotted or middle apex makes both (the
    # kernel leaves out a phase of one frame, and says so)
    allowed = ((row.onset_ok, row.offset_ok) if source == "sheet" else (True, True))
    for phase, ok in zip(("onset", "offset"), allowed, strict=True):
        img = getattr(images, phase)
        if img is not None and ok:
            phases[phase] = img
    apex_at = apex if apex is not None else len(clip.frames) // 2
    phases[APEX_FRAME] = clip.frames[apex_at].astype(np.float32)
    phases = {p: finish_image(img, size, clip.grey) for p, img in phases.items()}
    # a frame is uint8 by nature: stored so, it costs a quarter of a float32 image
    phases[APEX_FRAME] = np.clip(np.rint(phases[APEX_FRAME]), 0, 255).astype(np.uint8)
    flow = flow or "none"
    flows: dict[str, np.ndarray] = {}
    allowed = flow_allowed(source, row) if apex is not None else None
    if flow != "none" and allowed is not None:
        flows, flow_notes = clip_flow(clip.frames, (0, apex, len(clip.frames) - 1), size,
                                      flow, *allowed)
        notes += flow_notes
    why = next((p for p in row.problem_list if p.startswith("apex")), "no apex annotated")
    if apex is None:  # say why in the sheet's terms, not the kernel's
        notes.append(f"no onset or offset image ({why.split(':')[0]}); {APEX_FRAME} is the "
                      f"middle frame ({row.onset + apex_at})")
    else:
        if source == "spotted":
            sheet_says = (f"the sheet's is {row.apex}" if row.apex is not None
                          and usable_apex(row.onset, row.apex, row.offset, True, True)
                          is not None else why.split(":")[0])
            notes.append(f"apex spotted at frame {row.onset + apex} ({sheet_says})")
        elif source == "middle":
            notes.append(f"apex: the middle frame ({row.onset + apex})")
        notes += images.notes
    attrs = row_attrs(row)
    attrs.update(apex_source=source, apex_used=row.onset + apex_at,
                 spotted_apex="" if spotted is None else row.onset + spotted)
    attrs.update(flow_fingerprint=flow_fingerprint(fingerprint, flow),
                 flow_phases=list(flows))
    attrs.update(fingerprint=fingerprint, phases=list(phases), notes=notes,
                 crop_box=dataclasses.astuple(clip.box), jpeg_reduce=clip.reduce,
                 channels=int(clip.frames.shape[3]))
    return ClipRecord(row.subject, row.clip, {**phases, **flows}, attrs), notes
