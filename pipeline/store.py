"""The dynamic-image cache: one HDF5 file, ``/<subject>/<clip>/<phase>``.

Each phase dataset is the raw float32 weighted sum, shape (H, W, C), C = 3 (RGB) or 1
(greyscale); ``apex_frame`` is the clip's apex frame (uint8, same crop, size and
channels, RGB; the middle frame when the apex is unusable, as the clip's notes say). A clip
group carries its manifest row as attributes; the root carries the provenance (:data:`ROOT_ATTRS`).
This module owns the key scheme and the schema version.

Crash safety. HDF5 is not journaled: a process killed while writing can leave a file
whose metadata is broken. So the cache file itself is only ever *replaced*, never edited:
a build writes each finished clip as a small part file (``<cache>.parts/``, each renamed
into place when whole) and, as it goes, into a temporary cache (clips kept from the old
file, then parts of an earlier run, then each new clip) that is renamed over the old one
once complete. A kill at any
moment leaves the old cache intact and the finished parts on disk; the next run reuses
them. One writer at a time: an advisory lock on ``<cache>.lock``, released by the OS when
the writer dies, so a killed build never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from mer_di.errors import CacheError

SCHEMA_VERSION = 2  # 2: each clip also holds its apex frame ("apex_frame")
PHASES = ("full", "onset", "offset")
# What a clip group may hold: the three dynamic images, and the apex frame itself (the
# still image a control model is trained on, to show what motion adds), same crop and size.
STILL = "apex_frame"
IMAGES = (*PHASES, STILL)
# Root attributes; those in BUILD_PARAMS must match for a build to reuse an existing file.
BUILD_PARAMS = ("schema_version", "dataset", "weights", "size", "crop")
ROOT_ATTRS = (*BUILD_PARAMS, "sheet", "sheet_sha256", "tool_version", "created", "skipped")


def clip_key(subject: str, clip: str) -> str:
    """The clip's group path in the cache: ``subject/clip``."""
    return f"{subject}/{clip}"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ClipRecord:
    """One built clip: its images by phase and its attributes (the manifest row and more)."""

    key: str
    images: dict[str, np.ndarray]
    attrs: dict[str, object]


@contextmanager
def writer_lock(cache: Path) -> Iterator[None]:
    """Hold the cache's writer lock, or raise :class:`CacheError` naming the holder."""
    lock_path = cache.with_name(cache.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise CacheError(f"{cache} is being written by another build (pid {holder}); "
                             "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _to_attr(value: object) -> object:
    """HDF5-friendly: numbers and numeric lists as such, None as '', other lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return np.asarray(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def _from_attr(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- parts: one finished clip each, written atomically ------------------------------------

class PartStore:
    """Finished clips of an unfinished build, in ``<cache>.parts/``.

    A part is a ``.part`` file: a sequence of ``.npy`` records (the attributes as JSON
    bytes, then one array per phase; plain ``.npy``, not ``.npz``, whose zip CRC cost a
    build 3% of its time); it is written to a temporary name and renamed, so a part file
    that exists is whole. The folder also records the build parameters; parts built under
    other parameters are discarded.
    """

    def __init__(self, cache: Path, params: dict[str, object]):
        self.dir = cache.with_name(cache.name + ".parts")
        self.params = params

    def open(self) -> None:
        meta = self.dir / "params.json"
        if self.dir.is_dir():
            try:
                same = json.loads(meta.read_text()) == self.params
            except (OSError, ValueError):
                same = False
            if not same:
                self.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not meta.exists():
            tmp = meta.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.params, sort_keys=True))
            os.replace(tmp, meta)
        for stale in self.dir.glob("*.tmp*"):
            stale.unlink()  # a part that a killed build was still writing

    def _path(self, key: str) -> Path:
        return self.dir / (key.replace("/", "__") + ".part")

    def save(self, record: ClipRecord) -> None:
        path = self._path(record.key)
        tmp = path.with_name(path.name + ".tmp")
        # No fsync: the rename makes a part whole against a killed process (the page cache
        # survives it); only the assembled cache is synced. After a power loss a part
        # that fails to load is simply built again.
        header = {"attrs": record.attrs, "phases": list(record.images)}
        with open(tmp, "wb") as fh:
            np.save(fh, np.frombuffer(json.dumps(header).encode(), np.uint8))
            for image in record.images.values():
                np.save(fh, image)
        os.replace(tmp, path)

    def load(self, key: str, images: bool = True) -> ClipRecord | None:
        """The part of ``key`` (None when there is none or it is unreadable, which is then
        deleted); ``images=False`` reads only its attributes (no images in the record)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with open(path, "rb") as fh:
                header = json.loads(np.load(fh).tobytes())
                attrs = header["attrs"]
                arrays = {phase: np.load(fh) for phase in header["phases"]} if images else {}
        except (OSError, ValueError, KeyError, EOFError):
            path.unlink(missing_ok=True)  # unreadable: build the clip again
            return None
        return ClipRecord(key, arrays, attrs)

    def clear(self) -> None:
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                p.unlink()
            self.dir.rmdir()


# -- the cache file -------------------------------------------------------------------------

def read_root_attrs(cache: Path) -> dict[str, object]:
    """The root attributes of an existing cache (raises CacheError when unreadable)."""
    try:
        with h5py.File(cache, "r") as f:
            return {k: _from_attr(v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise CacheError(f"{cache}: not a readable HDF5 cache ({exc})") from exc


def read_clip(f: h5py.File, key: str) -> ClipRecord:
    """One clip of an open cache: its images by phase and its attributes."""
    g = f[key]
    return ClipRecord(key, {p: g[p][()] for p in IMAGES if p in g},
                      {k: _from_attr(v) for k, v in g.attrs.items()})


def iter_clips(cache: Path) -> Iterator[ClipRecord]:
    """Every clip of ``cache`` in file order, images and attributes."""
    with h5py.File(cache, "r") as f:
        for subject in f:
            for clip in f[subject]:
                yield read_clip(f, clip_key(subject, clip))


def clip_fingerprints(cache: Path) -> dict[str, str]:
    """``{key: fingerprint}`` of the clips in ``cache`` (empty when it has none)."""
    out = {}
    with h5py.File(cache, "r") as f:
        for subject in f:
            for clip in f[subject]:
                out[clip_key(subject, clip)] = str(_from_attr(
                    f[subject][clip].attrs.get("fingerprint", "")))
    return out


class CacheWriter:
    """Writes a whole new cache into a temporary file, clip by clip, and renames it over
    ``cache`` only in :meth:`commit`; leaving the ``with`` block without a commit (an error,
    a kill) never touches ``cache`` and removes the temporary file.

    Clips can come in any order: groups iterate in name order, so a cache's layout does
    not depend on the order its clips were built in.
    """

    def __init__(self, cache: Path):
        self.cache = cache
        self.tmp = cache.with_name(cache.name + f".tmp-{os.getpid()}")
        self.count = 0
        self._file: h5py.File | None = None

    def __enter__(self) -> CacheWriter:
        self._file = h5py.File(self.tmp, "w")
        return self

    def add(self, record: ClipRecord) -> None:
        """Write one clip (its images and attributes)."""
        g = self._file.require_group(record.key)
        for k, v in record.attrs.items():
            g.attrs[k] = _to_attr(v)
        for phase in IMAGES:
            if phase in record.images:
                image = record.images[phase]
                g.create_dataset(phase, data=image if phase == STILL else image.astype(
                    np.float32, copy=False))
        self.count += 1

    def copy_from(self, source: h5py.File, key: str) -> None:
        """Copy one clip as it is from another open cache (no decoding into NumPy)."""
        subject = key.split("/", 1)[0]
        parent = self._file.require_group(subject)
        source.copy(source[key], parent, name=key.split("/", 1)[1])
        self.count += 1

    def commit(self, root_attrs: dict[str, object]) -> int:
        """Write the root attributes, sync, and rename into place; returns the clip count."""
        for k in ROOT_ATTRS:
            self._file.attrs[k] = _to_attr(root_attrs.get(k))
        self._file.close()
        self._file = None
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.cache)
        return self.count

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.tmp.unlink(missing_ok=True)
