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
from mer_di.pipeline.flow import FLOW_ONSET_APEX, clip_flow, grey_at_size, jitter_flow
from mer_di.pipeline.frames import ClipFrames, finish_image
from mer_di.pipeline.store import (
    APEX_FRAME,
    JITTER_FLOW,
    JITTER_PHASES,
    SPOTTED_PHASES,
    ClipRecord,
    usable_apex,
)

# parameters added after caches existed whose default leaves every image as it was: at
# that value they stay out of the fingerprint, so an older cache's clips are kept
NEUTRAL_PARAMS = {"apex_jitter": 0}


def row_fingerprint(row: ManifestRow, params: dict[str, object]) -> str:
    """Changes when anything that shapes the clip's images changes."""
    fields = {k: getattr(row, k) for k in ("subject", "clip", "onset", "apex", "offset",
                                           "frame_dir", "frame_template", "onset_ok",
                                           "offset_ok")}
    params = {k: v for k, v in params.items()
              if not (k in NEUTRAL_PARAMS and v == NEUTRAL_PARAMS[k])}
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


def phase_pair(frames: np.ndarray, apex: int, weights: str) -> tuple[np.ndarray, np.ndarray]:
    """The onset and offset dynamic images of ``frames`` (the clip onset..offset) at apex
    index ``1 <= apex <= T - 2``, pooled exactly as :func:`clip_dynamic_images` pools a
    clip's own (the same kernel call), in decoder order (not finished)."""
    images = clip_dynamic_images(frames, apex, weights=weights)
    return images.onset, images.offset


def apex_variants(frames: np.ndarray, apex: int, k: int, spotted: int, weights: str,
                  size: int | None, grey: bool, own: dict[str, np.ndarray]
                  ) -> tuple[dict[str, np.ndarray], list[int]]:
    """``--apex-jitter k``'s images of one clip (:data:`mer_di.pipeline.store.
    APEX_VARIANTS`, flow aside) and its valid shifts: ``jitter_onset``/``jitter_offset``
    [shape=(2k+1, H, W, C), float32], entry ``j`` the phase images at apex index
    ``apex + j - k``, all zeros where that is not strictly inside the clip; and
    ``spotted_onset``/``spotted_offset`` at the ``spotted`` index when it is strictly
    inside. ``own``: the clip's finished ``onset``/``offset`` (entry k, when valid, is
    those very bytes)."""
    t = len(frames)
    finished: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def at(a: int) -> tuple[np.ndarray, np.ndarray]:
        if a not in finished:
            if a == apex and "onset" in own and "offset" in own:
                finished[a] = (own["onset"], own["offset"])
            else:
                on, off = phase_pair(frames, a, weights)
                finished[a] = (finish_image(on, size, grey), finish_image(off, size, grey))
        return finished[a]

    shifts = [s for s in range(-k, k + 1) if 0 < apex + s < t - 1]
    out: dict[str, np.ndarray] = {}
    if shifts:
        shape = at(apex + shifts[0])[0].shape
        stacks = [np.zeros((2 * k + 1, *shape), np.float32) for _ in JITTER_PHASES]
        for s in shifts:
            for stack, image in zip(stacks, at(apex + s), strict=True):
                stack[s + k] = image
        out.update(zip(JITTER_PHASES, stacks, strict=True))
    if 0 < spotted < t - 1:
        out.update(zip(SPOTTED_PHASES, at(spotted), strict=True))
    return out, shifts


def make_record(row: ManifestRow, clip: ClipFrames, weights: str, size: int | None,
                fingerprint: str, apex_mode: str = "auto", flow: str | None = "none",
                apex_jitter: int = 0) -> tuple[ClipRecord, list[str]]:
    """Pool one clip's decoded frames into its record (with its optical flow under
    ``flow``, :mod:`mer_di.pipeline.flow`, for a clip with a usable apex); also the phase
    notes. ``apex_jitter`` K > 0: a clip with an apex also gets its phase images at the
    apex shifted by -K..K frames and at its spotted apex (:func:`apex_variants`)."""
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
    variants: dict[str, np.ndarray] = {}
    extra: dict[str, object] = {}
    if apex_jitter > 0 and apex is not None:  # nothing of this at K = 0
        if spotted is None:
            spotted = spot_apex(clip.frames)
        variants, shifts = apex_variants(clip.frames, apex, apex_jitter, spotted, weights,
                                         size, clip.grey, phases)
        extra["jitter_shifts"] = shifts
    flow = flow or "none"
    flows: dict[str, np.ndarray] = {}
    allowed = flow_allowed(source, row) if apex is not None else None
    if flow != "none" and allowed is not None:
        flows, flow_notes = clip_flow(clip.frames, (0, apex, len(clip.frames) - 1), size,
                                      flow, *allowed)
        notes += flow_notes
        if apex_jitter > 0 and FLOW_ONSET_APEX in flows and extra.get("jitter_shifts"):
            # the flow models' input at the shifted apexes, as the phase images'
            greys: dict[int, np.ndarray] = {}

            def grey_of(i: int) -> np.ndarray:
                if i not in greys:
                    greys[i] = grey_at_size(clip.frames[i], size)
                return greys[i]

            variants[JITTER_FLOW] = jitter_flow(grey_of, apex, extra["jitter_shifts"],
                                                apex_jitter, flow, flows[FLOW_ONSET_APEX])
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
                 channels=int(clip.frames.shape[3]), **extra)
    return ClipRecord(row.subject, row.clip, {**phases, **flows, **variants}, attrs), notes
