"""Writing files that a reader never sees half-written, one writer per folder, and a full
disk said plainly.

- :func:`write_atomic` writes a file's bytes under a temporary name *beside* its final
  name (same folder, so the same filesystem: never a rename across filesystems) and
  renames it into place; on any failure (a full disk, an I/O error, an interrupt) the
  temporary file is removed and :class:`WriteError` names the file and the reason.
- :func:`exclusive_lock` is the advisory one-writer lock of a cache or a run folder,
  released by the OS when its holder dies (so a killed writer never leaves a stale lock);
  :func:`lock_holder` tells a reader whether someone holds it now.
- :func:`is_disk_full` recognises a full disk (or quota) in any library's OSError.

This module imports nothing of the project's heavy dependencies.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from mer_di.errors import OutputError

PARTIAL = ".partial-"  # in a temporary file's name: ``.<final name>.partial-<pid>``


class WriteError(OutputError):
    """A file could not be written; ``path`` is the file, ``disk_full`` says whether the
    disk (or quota) was full, ``reason`` the system's words; ``needed``, when the writer
    knows it, the bytes it needed."""

    needed: int | None = None

    def __init__(self, path: Path, exc: OSError):
        self.path = Path(path)
        self.disk_full = is_disk_full(exc)
        self.read_only = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        self.reason = exc.strerror or str(exc) or type(exc).__name__
        self.errno = exc.errno
        what = ("disk full" if self.disk_full else
                "read-only" if self.read_only else "cannot write")
        super().__init__(f"{what}: {self.path} ({self.reason})")

    def __reduce__(self):  # whole across processes (a Ray worker's unit write)
        return _write_error, (str(self.path), self.errno, self.reason, self.needed)


def _write_error(path: str, err: int | None, reason: str, needed: int | None) -> WriteError:
    exc = WriteError(Path(path), OSError(err, reason))
    exc.needed = needed
    return exc


def is_disk_full(exc: OSError) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full. h5py's errors carry the
    C library's errno only in their text."""
    text = str(exc)
    return (exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text
            or "Disk quota exceeded" in text or "errno = 28" in text)


def partial_name(path: Path) -> Path:
    """The temporary name beside ``path`` that this process writes it under."""
    return path.with_name(f".{path.name}{PARTIAL}{os.getpid()}")


def write_atomic(path: str | Path, data: bytes | str) -> int:
    """Write ``data`` (text as UTF-8) as the file ``path``: to a temporary name beside it,
    then renamed over it, so ``path`` is either its old self or whole. Returns the bytes
    written. Raises :class:`WriteError` (the temporary file removed) when it can't."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = partial_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise WriteError(path, exc) from None
        raise
    return len(payload)


def remove_partials(folder: Path, dead_only: bool = False) -> None:
    """Remove the temporary files (:func:`partial_name`) killed writers left in ``folder``:
    every one (call it holding the folder's lock), or ``dead_only`` those whose writer is
    no longer running (on this machine)."""
    for stale in folder.glob(f".*{PARTIAL}*"):
        if dead_only and _running(stale.name.rpartition(PARTIAL)[2]):
            continue
        try:
            stale.unlink()
        except OSError:
            pass


def _running(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except OSError:
        return True  # someone else's process: running
    return True


@contextmanager
def exclusive_lock(lock_path: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold an advisory lock on ``lock_path``, or raise ``busy(holder pid)``.

    The lock file exists only while a writer holds it: the holder unlinks it before it lets
    go. A writer that opened the file just before that unlink could lock the orphaned
    inode, so a lock only counts when the file at the path is still the one locked (else:
    again).
    """
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteError(lock_path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise busy(holder) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it as we opened it: take the new one
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)  # who holds it, for the message
        except OSError:
            pass  # a full disk: the lock holds all the same, without its pid
        yield
    finally:
        try:
            os.unlink(lock_path)  # still held: nobody else can be relying on this file
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the lock


def lock_holder(lock_path: Path) -> str | None:
    """The pid (as text, '?' when unknown) of whoever holds the lock on ``lock_path`` now,
    or None when nobody does. Takes nothing: a writer is never kept waiting by a reader."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                return None
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex. Remembered per (file, size, modification
    time): a run checks its caches for duplicates and records their hashes, and a cache
    can be gigabytes."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def human_bytes(n: float) -> str:
    """``12.3 MB``: a size as a person reads it (powers of 1000)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(folder: Path) -> int | None:
    """Free space where ``folder`` lives (None when that can't be told)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class EarlySync:
    """A file's written pages sent to disk in the background as it grows, so that the
    ``fsync`` that makes it durable at the end has little left to wait for (a 500 MB cache:
    the build's whole tail). :meth:`wrote` counts bytes written; every ``every`` bytes, when
    no sync is in flight, one thread syncs the file's data. :meth:`finish` waits for the one
    in flight and raises its error, if any: Linux reports a failed write-back once, so an
    error seen here must not be lost before the final ``fsync``."""

    def __init__(self, path: Path, every: int = 64 << 20):
        self.path, self.every = path, every
        self._pending = 0
        self._pool = None
        self._future = None

    def wrote(self, nbytes: int) -> None:
        self._pending += nbytes
        if self._pending < self.every or (self._future is not None
                                          and not self._future.done()):
            return
        self._pending = 0
        if self._future is not None:
            self._future.result()  # a failed write-back: raised now, in the writer
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mer-di-sync")
        self._future = self._pool.submit(self._sync)

    def _sync(self) -> None:
        with open(self.path, "rb") as fh:  # fdatasync needs no write access on Linux
            getattr(os, "fdatasync", os.fsync)(fh.fileno())

    def finish(self) -> None:
        """Wait for the sync in flight (raising its error); no thread is left behind."""
        try:
            if self._future is not None:
                self._future.result()
        finally:
            self._future = None
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
