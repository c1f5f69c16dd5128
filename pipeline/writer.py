"""Writing the dynamic-image cache: one writer at a time, and never a half-written file.

HDF5 is not journaled: a process killed while writing can leave a file whose metadata is
broken. So the cache file itself is only ever *replaced*, never edited: a build writes each
finished clip as a small part file (``<cache>.parts/``, each renamed into place when whole)
and, as it goes, into a temporary cache (clips kept from the old file, then parts of an
earlier run, then each new clip) that is renamed over the old one once complete. A kill at
any moment leaves the old cache intact and the finished parts on disk; the next run reuses
them. One writer at a time: an advisory lock on ``<cache>.lock``, released by the OS when
the writer dies, so a killed build never leaves a stale lock behind.

The layout written here is :mod:`mer_di.pipeline.store`'s.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from mer_di.errors import CacheError
from mer_di.pipeline.store import (
    APEX_FRAME,
    IMAGES,
    ROOT_ATTRS,
    ClipRecord,
    check_names,
    to_attr,
)


@contextmanager
def writer_lock(cache: Path) -> Iterator[None]:
    """Hold the cache's writer lock, or raise :class:`CacheError` naming the holder.

    The lock file exists only while a build holds it: the holder unlinks it before it lets
    go. A build that opened the file just before that unlink could lock the orphaned inode,
    so a lock only counts when the file at the path is still the one locked (else: again).
    """
    lock_path = cache.with_name(cache.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise CacheError(f"{cache} is being written by another build (pid {holder}); "
                             "wait for it to finish") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it as we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        try:
            os.unlink(lock_path)  # still held: nobody else can be relying on this file
        except FileNotFoundError:
            pass
        os.close(fd)  # closing the descriptor releases the lock


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

    def _path(self, subject: str, clip: str) -> Path:
        return self.dir / f"{subject}__{clip}.part"

    def save(self, record: ClipRecord) -> None:
        path = self._path(record.subject, record.clip)
        tmp = path.with_name(path.name + ".tmp")
        # No fsync: the rename makes a part whole against a killed process (the page cache
        # survives it); only the assembled cache is synced. After a power loss a part
        # that fails to load is simply built again.
        header = {"attrs": record.attrs, "phases": list(record.images)}
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, np.frombuffer(json.dumps(header).encode(), np.uint8))
                for image in record.images.values():
                    np.save(fh, image)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # disk full, a signal: no half part is left
            raise

    def load(self, subject: str, clip: str, images: bool = True) -> ClipRecord | None:
        """The part of clip ``subject``/``clip`` (None when there is none or it is
        unreadable, which is then deleted); ``images=False`` reads only its attributes (no
        images in the record)."""
        path = self._path(subject, clip)
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
        return ClipRecord(subject, clip, arrays, attrs)

    def clear(self) -> None:
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                p.unlink()
            self.dir.rmdir()




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
        check_names(record.subject, record.clip)
        g = self._file.require_group(record.key)
        for k, v in record.attrs.items():
            g.attrs[k] = to_attr(v)
        for phase in IMAGES:
            if phase in record.images:
                image = record.images[phase]
                # a Fletcher-32 checksum per chunk: damaged pixels are an error when read,
                # never numbers (a cache may live years on shared disks)
                g.create_dataset(phase, data=image if phase == APEX_FRAME else image.astype(
                    np.float32, copy=False), fletcher32=True)
        self.count += 1

    def copy_from(self, source: h5py.File, subject: str, clip: str,
                  attrs: dict[str, object] | None = None) -> None:
        """Copy one clip from another open cache (no decoding into NumPy), then set
        ``attrs`` over its attributes."""
        parent = self._file.require_group(subject)
        source.copy(source[subject][clip], parent, name=clip)
        for k, v in (attrs or {}).items():
            parent[clip].attrs[k] = to_attr(v)
        self.count += 1

    def commit(self, root_attrs: dict[str, object]) -> int:
        """Write the root attributes, sync, and rename into place; returns the clip count."""
        for k in ROOT_ATTRS:
            self._file.attrs[k] = to_attr(root_attrs.get(k))
        self._file.close()
        self._file = None
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.cache)
        return self.count

    def __exit__(self, *exc) -> None:
        try:
            if self._file is not None:
                self._file, file = None, self._file
                file.close()  # may fail again on a full disk: the file goes all the same
        except Exception:
            if exc[0] is None:
                raise
        finally:
            self.tmp.unlink(missing_ok=True)
