"""Reading a dynamic-image cache: :func:`open_cache` gives a :class:`Cache` of
:class:`mer_di.pipeline.store.CachedClip` records with the arrays on request, checking the
layout :mod:`mer_di.pipeline.store` defines (a damaged clip is an error naming the command
that rebuilds it, or skipped); also the root attributes and the clips' fingerprints that a
build compares (:func:`read_root_attrs`, :func:`clip_fingerprints`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from mer_di.errors import CacheError
from mer_di.pipeline.store import (
    APEX_VARIANTS,
    BUILD_PARAMS,
    FLOW_IMAGES,
    IMAGES,
    JITTER_FLOW,
    JITTER_IMAGES,
    PARAM_DEFAULTS,
    SPOTTED_PHASES,
    CachedClip,
    clip_key,
    from_attr,
)

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
