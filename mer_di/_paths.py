"""Output paths checked before anything is written: a command that can't write its
output says so at once, naming the path, instead of failing (with a traceback) after its
work, or leaving folders behind."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mer_di._files import write_atomic
from mer_di.errors import OutputError


def check_writable(path: str | Path, option: str = "--out", folder: bool = False) -> Path:
    """``path`` as a Path, once it is known that it can be created or replaced: its nearest
    existing ancestor is a writable folder; when ``path`` exists, it is a folder
    (``folder``) or a file (otherwise). Raises :class:`OutputError` naming the path."""
    if str(path) == "-":
        raise OutputError(f"{option} -: standard output takes tables only (a manifest, "
                          "predictions, spotted apexes); this output is "
                          f"{'a folder' if folder else 'a file'}: give a path")
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise OutputError(f"{option} {path}: {probe} is a file, not a folder")
    if probe == path and folder and not path.is_dir():
        raise OutputError(f"{option} {path} is a file; give a folder")
    if probe == path and not folder and path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name")
    target = probe if probe.is_dir() else probe.parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: {target} is not writable")
    return path


def write_table(out: str | Path, write: Callable[[IO[str]], None], option: str = "--out"
                ) -> None:
    """Run ``write(fh)`` into ``out``: standard output for ``-``; otherwise a file written
    beside its final name and renamed into place, so a reader never sees half of it."""
    if str(out) == "-":
        write(sys.stdout)
        return
    path = check_writable(out, option)
    make_folder(path.parent, option)
    buffer = io.StringIO(newline="")
    write(buffer)
    write_atomic(path, buffer.getvalue())


def make_folder(path: Path, option: str = "--out") -> None:
    """``mkdir -p`` that raises :class:`OutputError` (not OSError) naming the path."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot create the folder ({exc.strerror})") from None
