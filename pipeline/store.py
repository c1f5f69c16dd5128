"""The dynamic-image cache: one HDF5 file, ``/<subject>/<clip>/<image>``. This module owns
the layout: the key scheme, the names, the schema version, the attribute encoding, the
records (:class:`CachedClip`); the one reader that everything else uses
(:func:`open_cache`) is :mod:`mer_di.pipeline.cache_reader`'s.

A clip group holds the dynamic images ``full``, ``onset`` and ``offset`` (each the raw
float32 weighted sum, shape (H, W, C), C = 3 (RGB) or 1 (greyscale); a phase of one frame
is absent) and ``apex_frame``, the clip's apex frame (uint8, same crop, size and channels,
RGB; the middle frame when the sheet's apex is unusable, see :attr:`CachedClip.apex_source`).
A cache built with optical flow (``--flow``, root attribute ``flow``) also holds, for clips
with a usable apex, ``flow_onset_apex`` and ``flow_apex_offset`` [shape=(H, W, 3), float32:
u, v in pixels per frame pair at the stored size (+ right, + down), optical strain]
(:mod:`mer_di.pipeline.flow`), with the clip attributes ``flow_fingerprint`` and
``flow_phases``.
A cache built with ``--apex-jitter K`` (root attribute ``apex_jitter``; 0 for a cache
without it) also holds, for every clip with phase images, ``jitter_onset`` and
``jitter_offset`` [shape=(2K+1, H, W, C), float32]: entry ``j`` the onset and offset
images at the apex shifted by ``j - K`` frames (entry K is ``onset``/``offset`` byte for
byte; a shift whose apex is not strictly inside the clip is all zeros), with the clip
attribute ``jitter_shifts`` (the valid shifts, int64), and ``spotted_onset`` and
``spotted_offset`` [shape=(H, W, C)], the phase images at the spotted apex
(``spotted_apex``; absent when that is not strictly inside the clip): see
:data:`APEX_VARIANTS`.
Each image is stored as one HDF5 chunk with a Fletcher-32 checksum (caches written before
issue 22 have h5py's smaller chunks, also checksummed: readers see no difference), so
damaged pixels are an error when read, by h5py or the HDF5 tools too. The group's
attributes are its manifest row (:data:`mer_di.data_manifest.records.FIELDS`) plus
``row_fingerprint``, ``fingerprint``, ``phases``, ``notes``, ``crop_box``,
``jpeg_reduce``, ``channels``, ``apex_source``, ``apex_used``, ``spotted_apex`` (and,
under ``--apex-jitter``, ``jitter_shifts``); the
root's are the provenance (:data:`ROOT_ATTRS`).

Writing (crash-safe, one writer at a time) is :mod:`mer_di.pipeline.writer`'s business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_di._files import file_sha256 as file_sha256  # where it lived first
from mer_di.data_manifest.reader import name_problem
from mer_di.errors import CacheError

SCHEMA_VERSION = 2  # 2: each clip also holds its apex frame (APEX_FRAME)
PHASES = ("full", "onset", "offset")
# The apex frame itself: the still image a control model is trained on, to show what the
# motion adds. Same crop and size as the dynamic images.
APEX_FRAME = "apex_frame"
IMAGES = (*PHASES, APEX_FRAME)
# Optical flow (issue 19.1; computed by mer_di.pipeline.flow): u, v, strain per pixel.
FLOW_IMAGES = ("flow_onset_apex", "flow_apex_offset")
# --apex-jitter K (issue 19.4a; made by mer_di.pipeline.clip_record): the phase images at
# the apex shifted by -K..K frames, [shape=(2K+1, H, W, C), float32], entry K the
# annotated apex's; and (with --flow) the onset->shifted apex flow [shape=(2K+1, H, W, 3)]
JITTER_PHASES = ("jitter_onset", "jitter_offset")
JITTER_FLOW = "jitter_flow_onset_apex"
JITTER_IMAGES = (*JITTER_PHASES, JITTER_FLOW)
# the phase images at the spotted apex (--apex-jitter K > 0), [shape=(H, W, C), float32]
SPOTTED_PHASES = ("spotted_onset", "spotted_offset")
# images that only a cache built with --apex-jitter K > 0 holds (the robustness
# evaluation's, and --apex-jitter training's); the readers never load them unasked
APEX_VARIANTS = (*SPOTTED_PHASES, *JITTER_IMAGES)
MAX_APEX_JITTER = 10  # --apex-jitter: 0..10 frames
# Where a clip's apex (and so its phase images and apex frame) came from.
APEX_SOURCES = {"sheet": "the annotation sheet's apex frame",
                "spotted": "spotted from the frames (mer_di.pipeline.apex)",
                "middle": "the clip's middle frame",
                "none": "no usable apex (--apex sheet): no phase images, the middle frame "
                        "as apex frame"}
# Root attributes; those in BUILD_PARAMS must match for a build to reuse an existing file.
BUILD_PARAMS = ("schema_version", "dataset", "weights", "size", "crop", "apex", "flow",
                "apex_jitter")
# what a parameter was before the cache recorded it (a cache built before --apex: 'sheet',
# before --flow: 'none', before --apex-jitter: 0)
PARAM_DEFAULTS = {"apex": "sheet", "flow": "none", "apex_jitter": 0}
# parameters that shape images of their own, not the dynamic images: a build under another
# value adds (or replaces) those images and keeps the dynamic images as they are
ADDITIVE_PARAMS = ("flow",)
ROOT_ATTRS = (*BUILD_PARAMS, "sheet", "sheet_sha256", "tool_version", "created", "skipped")


def clip_key(subject: str, clip: str) -> str:
    """The clip's group path in the cache: ``subject/clip`` (the only key format)."""
    return f"{subject}/{clip}"


def check_names(subject: str, clip: str) -> None:
    """Raise :class:`CacheError` unless ``subject`` and ``clip`` are plain names: an HDF5
    key is only ever built from validated names (a ``..`` or ``a/full`` would be a path)."""
    for what, name in (("subject", subject), ("clip", clip)):
        why = name_problem(what, name) if name else f"empty {what} name"
        if why:
            raise CacheError(f"{subject}/{clip}: {why}")


def parse_key(key: str, cache: str | Path = "the cache") -> tuple[str, str]:
    """``(subject, clip)`` of a key ``subject/clip`` (as a user types it)."""
    subject, sep, clip = str(key).partition("/")
    if not sep or not subject or not clip or "/" in clip:
        raise CacheError(f"{key!r}: name a clip of {cache} as SUBJECT/CLIP, e.g. sub01/EP02_01f")
    return subject, clip


def usable_apex(onset: int | None, apex: int | None, offset: int | None, onset_ok: bool,
                offset_ok: bool) -> int | None:
    """The apex's 0-based index inside onset..offset, or None when the sheet's apex can't
    make a phase image (missing, outside the clip, or no phase allowed)."""
    if apex is None or onset is None or offset is None or not (onset_ok or offset_ok):
        return None
    if not onset <= apex <= offset:
        return None
    return apex - onset


def to_attr(value: object) -> object:
    """HDF5-friendly: numbers and numeric lists as such, None as '', other lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return np.asarray(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def from_attr(value: object) -> object:
    """An attribute as Python: bytes decoded, NumPy scalars as numbers."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def parse_shifts(raw: object) -> tuple[int, ...]:
    """A clip's ``jitter_shifts`` attribute as stored (an int64 array; JSON text, str or
    bytes, for an empty list; None when absent) -> its shifts."""
    if isinstance(raw, bytes):
        raw = raw.decode()
    if raw is None or isinstance(raw, str):
        raw = json.loads(raw) if raw else []
    return tuple(int(v) for v in np.atleast_1d(np.asarray(raw, np.int64)))


@dataclass
class ClipRecord:
    """One built clip on its way into the cache: its images by name (:data:`IMAGES`) and
    its attributes (the manifest row and more)."""

    subject: str
    clip: str
    images: dict[str, np.ndarray]
    attrs: dict[str, object]

    @property
    def key(self) -> str:
        return clip_key(self.subject, self.clip)


@dataclass(frozen=True)
class CachedClip:
    """One clip of a cache as the reader hands it out, without its arrays.

    ``phases`` are the dynamic images present, in :data:`PHASES` order (``full`` always);
    ``flow_phases`` the optical-flow images present, in :data:`FLOW_IMAGES` order;
    ``apex_source`` is a key of :data:`APEX_SOURCES`; ``attrs`` the group's attributes
    (onset, apex, offset, sheet_row, notes, ...). Arrays: :meth:`Cache.images`.
    """

    dataset: str
    subject: str
    clip: str
    emotion: str
    label: str
    phases: tuple[str, ...]
    has_apex_frame: bool
    apex_source: str
    attrs: Mapping[str, object] = field(repr=False, compare=False)
    flow_phases: tuple[str, ...] = ()
    # the --apex-jitter images present (:data:`APEX_VARIANTS` order)
    variants: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return clip_key(self.subject, self.clip)

    @property
    def jitter_shifts(self) -> tuple[int, ...]:
        """The valid apex shifts of the clip's ``jitter_*`` images (entry ``shift + K``);
        () for a clip without them (or with no valid shift)."""
        return parse_shifts(self.attrs.get("jitter_shifts"))

    @property
    def notes(self) -> list[str]:
        raw = self.attrs.get("notes") or "[]"
        return json.loads(raw) if isinstance(raw, str) else list(raw)

    @classmethod
    def from_attrs(cls, dataset: str, subject: str, clip: str, attrs: Mapping[str, object],
                   present: tuple[str, ...]) -> CachedClip:
        """The record of clip ``subject``/``clip`` whose group has ``attrs`` and holds the
        images ``present``."""
        a = {k: from_attr(v) for k, v in attrs.items()}

        def number(name: str) -> int | None:
            v = a.get(name)
            return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        source = str(a.get("apex_source") or "")
        if source not in APEX_SOURCES:  # a clip built before the cache recorded it
            index = usable_apex(number("onset"), number("apex"), number("offset"),
                                bool(a.get("onset_ok")), bool(a.get("offset_ok")))
            source = "sheet" if index is not None else "none"
        return cls(dataset=str(a.get("dataset") or dataset), subject=subject, clip=clip,
                   emotion=str(a.get("emotion", "")),
                   label=str(a.get("label", "")),
                   phases=tuple(p for p in PHASES if p in present),
                   has_apex_frame=APEX_FRAME in present,
                   apex_source=source,
                   flow_phases=tuple(p for p in FLOW_IMAGES if p in present),
                   variants=tuple(p for p in APEX_VARIANTS if p in present), attrs=a)


_READER = ("Cache", "open_cache", "read_root_attrs", "clip_fingerprints", "REBUILD_ALL",
           "REBUILD_CLIP")


def __getattr__(name: str):
    """The reader's names, where they were first (``from mer_di.pipeline.store import
    open_cache`` keeps working): :mod:`mer_di.pipeline.cache_reader`."""
    if name in _READER:
        from mer_di.pipeline import cache_reader

        return getattr(cache_reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
