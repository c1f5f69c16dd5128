"""The dynamic-image cache: one HDF5 file, ``/<subject>/<clip>/<image>``. This module owns
the layout: the key scheme, the names, the schema version, the attribute encoding, and the
one reader (:func:`open_cache`) that everything else uses.

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
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
        raw = self.attrs.get("jitter_shifts")
        if raw is None or isinstance(raw, str):
            raw = json.loads(raw) if raw else []
        return tuple(int(v) for v in np.atleast_1d(np.asarray(raw, np.int64)))

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


REBUILD_ALL = ("build it again: mer-prep build-cache --dataset D --root R --out {path} "
               "--rebuild")
REBUILD_CLIP = ("rebuild that clip: mer-prep build-cache --dataset D --root R --out {path} "
                "--redo {key}")


class _DamagedClip(Exception):
    """One clip group of a cache is not as the writer leaves it."""


def _why(exc: BaseException) -> str:
    """An h5py error as one short line (they can run to several, with HDF5 internals)."""
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


class Cache:
    """A dynamic-image cache opened for reading (use :func:`open_cache`).

    Iterating gives a :class:`CachedClip` per clip, in key order; :meth:`images` reads
    arrays on request. Close it (or use ``with``); never share one across a fork.
    """

    def __init__(self, path: str | Path, damaged: str = "raise"):
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheError(f"{self.path}: cache not found")
        # "raise": a damaged clip stops the reader (training on fewer clips than the cache
        # claims would be a silent wrong result); "skip": it is left out and listed in
        # :attr:`damaged` (a build rebuilds it)
        self._on_damage = damaged
        self.damaged: dict[str, str] = {}
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise CacheError(f"{self.path}: not a readable HDF5 cache ({_why(exc)}); "
                             f"{REBUILD_ALL.format(path=self.path)}") from None
        try:
            self.attrs = {k: from_attr(v) for k, v in self._file.attrs.items()}
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            self.close()
            raise CacheError(f"{self.path}: its metadata is damaged ({_why(exc)}); "
                             f"{REBUILD_ALL.format(path=self.path)}") from None
        if "schema_version" not in self.attrs or "dataset" not in self.attrs:
            self.close()
            raise CacheError(f"{self.path}: an HDF5 file, but not a dynamic-image cache "
                             "(build one with mer-prep build-cache)")
        self.dataset = str(self.attrs["dataset"])
        self._clips: dict[str, CachedClip] | None = None

    # -- provenance -----------------------------------------------------------------------
    @property
    def params(self) -> dict[str, str]:
        """The build parameters (:data:`BUILD_PARAMS`) as text."""
        return {k: str(self.attrs.get(k, PARAM_DEFAULTS.get(k))) for k in BUILD_PARAMS}

    @property
    def apex_jitter(self) -> int:
        """K of ``--apex-jitter`` (0: a cache built without it, or before it existed)."""
        return int(self.attrs.get("apex_jitter", PARAM_DEFAULTS["apex_jitter"]))

    @property
    def skipped(self) -> list[dict[str, object]]:
        """Clips the build skipped: ``{"key", "sheet_row", "reason"}`` each."""
        return json.loads(self.attrs.get("skipped") or "[]")

    # -- clips ----------------------------------------------------------------------------
    def _index(self) -> dict[str, CachedClip]:
        if self._clips is None:
            clips = {}
            try:
                for subject in self._file:
                    group = self._member(self._file, subject, h5py.Group, "subject group")
                    for clip in group:
                        key = clip_key(subject, clip)
                        try:
                            record = self._clip(group, subject, clip)
                        except _DamagedClip as exc:
                            if self._on_damage == "raise":
                                raise CacheError(
                                    f"{self.path}: clip {key} is damaged ({exc}); "
                                    f"{REBUILD_CLIP.format(key=key, path=self.path)}") from None
                            self.damaged[key] = str(exc)
                            continue
                        clips[record.key] = record
            except _DamagedClip as exc:
                raise CacheError(f"{self.path}: damaged ({exc}); "
                                 f"{REBUILD_ALL.format(path=self.path)}") from None
            except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
                raise CacheError(f"{self.path}: damaged, its clips cannot be listed "
                                 f"({_why(exc)}); {REBUILD_ALL.format(path=self.path)}"
                                 ) from None
            self._clips = clips
        return self._clips

    def _member(self, parent: h5py.Group, name: str, kind: type, what: str):
        """``parent[name]`` when it is a hard link to a ``kind``; a link elsewhere, external
        or virtual storage is refused (:class:`CacheError`: a cache holds its own bytes,
        and a hostile file could make us read another file); anything else is damage."""
        link = parent.get(name, getlink=True)
        where = f"{parent.name.rstrip('/')}/{name}"
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            kind_name = "a soft link" if isinstance(link, h5py.SoftLink) else "an external link"
            raise CacheError(f"{self.path}: {where} is {kind_name}; a cache never holds links, "
                             f"so this file was not written by mer-prep: refusing to read it")
        obj = parent[name]
        if not isinstance(obj, kind):
            raise _DamagedClip(f"{where} is not a {what}")
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                raise CacheError(f"{self.path}: {where} is a virtual dataset (its data lives "
                                 "in other files); a cache holds its own data: refusing to "
                                 "read it")
            if obj.external:
                files = ", ".join(str(f[0]) for f in obj.external)
                raise CacheError(f"{self.path}: {where} is stored in external file(s) "
                                 f"({files}); a cache holds its own data: refusing to read it")
        return obj

    def _clip(self, group: h5py.Group, subject: str, clip: str) -> CachedClip:
        g = self._member(group, clip, h5py.Group, "clip group")
        names = tuple(g)
        for name in names:
            ds = self._member(g, name, h5py.Dataset, "image")
            if name in IMAGES and (ds.ndim != 3 or ds.shape[2] not in (1, 3)):
                raise _DamagedClip(f"its {name} image has shape {ds.shape}, not (H, W, C)")
            if name in FLOW_IMAGES and (ds.ndim != 3 or ds.shape[2] != 3):
                raise _DamagedClip(f"its {name} flow has shape {ds.shape}, not (H, W, 3)")
            if name in SPOTTED_PHASES and (ds.ndim != 3 or ds.shape[2] not in (1, 3)):
                raise _DamagedClip(f"its {name} image has shape {ds.shape}, not (H, W, C)")
            if name in JITTER_IMAGES and (ds.ndim != 4 or ds.shape[3] not in (
                    (3,) if name == JITTER_FLOW else (1, 3))):
                raise _DamagedClip(f"its {name} images have shape {ds.shape}, not "
                                   "(2K+1, H, W, C)")
        if "full" not in names:
            raise _DamagedClip("it has no full image")
        try:
            return CachedClip.from_attrs(self.dataset, subject, clip, g.attrs, names)
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise _DamagedClip(f"its attributes cannot be read: {_why(exc)}") from None

    def __iter__(self) -> Iterator[CachedClip]:
        return iter(list(self._index().values()))

    def __len__(self) -> int:
        return len(self._index())

    def __contains__(self, key: object) -> bool:
        return key in self._index()

    def get(self, subject: str, clip: str) -> CachedClip:
        """The clip ``subject``/``clip``; :class:`CacheError` naming an example when absent."""
        key = clip_key(subject, clip)
        found = self._index().get(key)
        if found is None:
            example = next(iter(self._index()), "sub01/EP02_01f")
            raise CacheError(f"{self.path} has no clip {key!r} (give SUBJECT/CLIP, e.g. "
                             f"{example})")
        return found

    def images(self, clip: CachedClip, names: tuple[str, ...] = IMAGES
               ) -> dict[str, np.ndarray]:
        """The clip's images among ``names`` that it has: the dynamic images float32
        [shape=(H, W, C)], ``apex_frame`` uint8 [shape=(H, W, C)]; the flow images
        (:data:`FLOW_IMAGES`, asked by name) float32 [shape=(H, W, 3)]; the
        ``--apex-jitter`` images (:data:`APEX_VARIANTS`, asked by name) float32,
        ``jitter_*`` [shape=(2K+1, H, W, C)]."""
        g = self._file[clip.key]
        out = {}
        for name in names:
            if name in g:
                try:
                    out[name] = g[name][()]
                except (OSError, RuntimeError, ValueError) as exc:  # a checksum, a short file
                    raise CacheError(
                        f"{self.path}: the {name} image of clip {clip.key} is damaged "
                        f"({_why(exc)}); {REBUILD_CLIP.format(key=clip.key, path=self.path)}"
                    ) from None
        return out

    def shapes(self, clip: CachedClip) -> dict[str, tuple[int, ...]]:
        """The shape of each image the clip has, without reading it."""
        g = self._file[clip.key]
        return {name: g[name].shape for name in (*IMAGES, *FLOW_IMAGES, *APEX_VARIANTS)
                if name in g}

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_cache(path: str | Path, damaged: str = "raise") -> Cache:
    """Open the dynamic-image cache at ``path`` for reading.

    Parameters
    ----------
    path : str or Path
        An HDF5 file written by ``mer-prep build-cache`` (:func:`mer_di.build_cache`).

    Returns
    -------
    cache : Cache
        Iterate it for :class:`CachedClip` records; ``cache.images(clip)`` gives the
        arrays; ``cache.attrs`` the provenance. Use it in a ``with`` block.

    Raises
    ------
    CacheError
        When the file is missing, not HDF5, not a dynamic-image cache, damaged (a clip
        without its full image, unreadable metadata or pixels: the message says which and
        the command that rebuilds it), or holds links, external or virtual storage.
    """
    return Cache(path, damaged)


def read_root_attrs(cache: Path) -> dict[str, object]:
    """The root attributes of an existing cache (raises CacheError when unreadable)."""
    try:
        with h5py.File(cache, "r") as f:
            return {k: from_attr(v) for k, v in f.attrs.items()}
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        raise CacheError(f"{cache}: not a readable HDF5 cache ({_why(exc)}); rebuild it with "
                         "--rebuild, or give another --out") from None


def clip_fingerprints(cache: Path) -> dict[tuple[str, str], tuple[str, str, str]]:
    """``{(subject, clip): (fingerprint of the dynamic images, of the sheet row, of the
    flow images)}`` of the clips in ``cache`` (a cache built before rows had one, a clip
    without flow: '')."""
    with open_cache(cache, damaged="skip") as c:  # a damaged clip is built again
        return {(r.subject, r.clip): (str(r.attrs.get("fingerprint", "")),
                                      str(r.attrs.get("row_fingerprint", "")),
                                      str(r.attrs.get("flow_fingerprint", "")))
                for r in c}
