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

import json
import os
from pathlib import Path

import h5py
import numpy as np

from mer_di._files import EarlySync, exclusive_lock
from mer_di.errors import CacheError
from mer_di.pipeline.chunks import write_checksummed
from mer_di.pipeline.store import (
    APEX_FRAME,
    APEX_VARIANTS,
    FLOW_IMAGES,
    IMAGES,
    JITTER_FLOW,
    ROOT_ATTRS,
    ClipRecord,
    check_names,
    clip_key,
    to_attr,
)


def writer_lock(cache: Path):
    """Hold the cache's writer lock (``<cache>.lock``, see
    :func:`mer_di._files.exclusive_lock`), or raise :class:`CacheError` naming the holder."""
    lock_path = cache.with_name(cache.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    return exclusive_lock(lock_path, lambda holder: CacheError(
        f"{cache} is being written by another build (pid {holder}); wait for it to finish"))


# -- attributes: h5py's types, without its per-call overhead ------------------------------

_VLEN_STR = h5py.string_dtype()
_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)
_TYPES: dict[np.dtype, tuple[h5py.h5t.TypeID, h5py.h5t.TypeID]] = {}  # (file, memory)


def write_new_attrs(group: h5py.Group, attrs: dict[str, object]) -> None:
    """Write ``attrs`` (:func:`mer_di.pipeline.store.to_attr` values) on a ``group`` that
    has none of them yet, with exactly the types ``group.attrs[k] = v`` gives (str as
    variable-length UTF-8, int64, float64, h5py's bool enum, int64 arrays), by HDF5's own
    calls: ``attrs[k] = v`` guessed a type and checked for an existing attribute each time
    (about 0.1 ms an attribute, 27 a clip). Other values go through ``group.attrs``."""
    gid = group.id
    for name, value in attrs.items():
        value = to_attr(value)
        if isinstance(value, str):
            data = np.array(value, dtype=_VLEN_STR)
        elif isinstance(value, (bool, int, float, np.ndarray, np.generic)):
            data = np.asarray(value)
        else:
            data = None
        if data is None or (data.dtype.kind not in "biuf" and not isinstance(value, str)):
            group.attrs[name] = value
            continue
        types = _TYPES.get(data.dtype)
        if types is None:
            types = _TYPES[data.dtype] = (h5py.h5t.py_create(data.dtype, logical=True),
                                          h5py.h5t.py_create(data.dtype))
        space = _SCALAR if data.ndim == 0 else h5py.h5s.create_simple(data.shape)
        h5py.h5a.create(gid, name.encode(), types[0], space).write(data, mtype=types[1])


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

    def _path(self, subject: str, clip: str, kind: str = "") -> Path:
        return self.dir / f"{subject}__{clip}{'.' + kind if kind else ''}.part"

    def save(self, record: ClipRecord, kind: str = "") -> None:
        """Write ``record`` as a part; ``kind`` "flow": a clip's flow images alone (added
        to a clip whose dynamic images are kept), beside its whole part if any."""
        path = self._path(record.subject, record.clip, kind)
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

    def load(self, subject: str, clip: str, images: bool = True, kind: str = ""
             ) -> ClipRecord | None:
        """The part of clip ``subject``/``clip`` (None when there is none or it is
        unreadable, which is then deleted); ``images=False`` reads only its attributes (no
        images in the record); ``kind`` as for :meth:`save`."""
        path = self._path(subject, clip, kind)
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




def _put(group: h5py.Group, name: str, image: np.ndarray) -> None:
    """Write image ``name`` (float32, ``apex_frame`` uint8) into a clip's group."""
    if name != APEX_FRAME:
        image = image.astype(np.float32, copy=False)
    # a Fletcher-32 checksum per chunk: damaged pixels are an error when read, never
    # numbers (a cache may live years on shared disks). One chunk per image: h5py's guess
    # cut a 224x224x3 image into 48 chunks, each its own index entry, filter call and
    # checksum (the four images' writes took 2.8x the CPU: benchmarks/bench_build_steps.py);
    # written as stored, its checksum summed without the GIL (pipeline/chunks.py). An image
    # is at most 768 MiB (frames.MAX_FRAME_PIXELS x 3 channels x float32), under HDF5's
    # 4 GB chunk.
    write_checksummed(group, name, image)


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
        self._early = EarlySync(self.tmp)  # the images' pages on their way to disk

    def __enter__(self) -> CacheWriter:
        self._file = h5py.File(self.tmp, "w")
        return self

    def add(self, record: ClipRecord) -> None:
        """Write one clip (its images and attributes)."""
        check_names(record.subject, record.clip)
        g = self._file.require_group(record.key)
        write_new_attrs(g, record.attrs)
        for phase in (*IMAGES, *FLOW_IMAGES, *APEX_VARIANTS):
            if phase in record.images:
                _put(g, phase, record.images[phase])
        self.count += 1
        self._early.wrote(sum(image.nbytes for image in record.images.values()))

    def set_flow(self, subject: str, clip: str, images: dict[str, np.ndarray],
                 attrs: dict[str, object]) -> None:
        """Replace the flow images (:data:`FLOW_IMAGES`, and ``--apex-jitter``'s
        :data:`JITTER_FLOW`) of a clip already written (by :meth:`copy_from`) with
        ``images``, and set ``attrs``; its other images stay."""
        g = self._file[clip_key(subject, clip)]
        for name in (*FLOW_IMAGES, JITTER_FLOW):
            if name in g:
                del g[name]
        for name in (*FLOW_IMAGES, JITTER_FLOW):
            if name in images:
                _put(g, name, images[name])
        for k, v in attrs.items():
            g.attrs[k] = to_attr(v)

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
        self._early.finish()
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
            try:
                self._early.finish()
            except OSError:
                pass  # the file goes: its write-back no longer matters
            self.tmp.unlink(missing_ok=True)
