"""A run folder as files: one writer at a time, its configuration read or refused by name,
what a killed writer leaves behind, and a failed write said as the run's (disk full: how
much space the rest of the run needs, and the command that finishes it).

Besides the layout of :mod:`mer_di.training.runner`, a run folder holds, while a
``mer-train cv`` writes it, ``.lock`` (an advisory lock, released by the OS when the writer
dies; :func:`mer_di._files.exclusive_lock`), and after the tables ``tables.json``: the
bytes and SHA-256 of each table, so a report finds a table edited or damaged since.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mer_di._files import (
    PARTIAL,
    WriteError,
    exclusive_lock,
    free_bytes,
    human_bytes,
    lock_holder,
)
from mer_di.errors import MerError, RunError
from mer_di.training.units import SCORES

CONFIG = "config.json"
LOCK = ".lock"
TABLES = "tables.json"  # the tables' bytes and SHA-256, written after them


def resume_command(out: Path) -> str:
    return f"mer-train cv --resume --out {out}"


def read_config(out: Path, error: type[MerError] = RunError) -> dict:
    """The run's ``config.json`` as a dict; ``error`` naming the file and the reason when
    it is missing, unreadable, not UTF-8, not JSON or not a run's configuration."""
    path = out / CONFIG
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path} is missing: {out} is not a run folder (give a folder made by "
                    "mer-train cv)") from None
    except OSError as exc:
        raise error(f"{path} is unreadable ({exc.strerror or exc})") from None
    why = ""
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        why = "not text (not UTF-8)"
    except ValueError as exc:
        why = "empty" if not raw.strip() else f"not valid JSON ({exc})"
    else:
        if not isinstance(config, dict) or not isinstance(config.get("spec"), dict):
            why = "not a run configuration (no spec)"
        elif not isinstance(config.get("units"), list) or "classes" not in config:
            why = "not a run configuration (no units or classes)"
    if why:
        raise error(f"{path} is damaged: {why}. The run's settings can't be read, so its "
                    "units can't be checked: put back the run's config.json, or start the "
                    "run again into another --out") from None
    return config


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s writer lock for the whole of a ``cv``, or raise :class:`RunError`
    naming the process that holds it."""
    with exclusive_lock(out / LOCK, lambda holder: RunError(
            f"{out} is being written by another mer-train cv (pid {holder}); wait for it to "
            f"finish (then `{resume_command(out)}` finishes the run if it stopped), or give "
            "another --out")):
        yield


def writer_of(out: Path) -> str | None:
    """The pid of the ``cv`` writing ``out`` now, or None."""
    return lock_holder(out / LOCK)


def is_leftover(path: Path) -> bool:
    """Whether ``path`` (in a folder about to become a run folder) is only what a writer
    of ours left behind: its lock, a temporary file, an empty ``units`` folder."""
    if path.name == LOCK or PARTIAL in path.name:
        return True
    return (path.name == "units" and path.is_dir()
            and all(p.name.startswith(".tmp-") for p in path.iterdir()))


def finished_units(units_dir: Path, names: list[str]) -> list[Path]:
    """The folders of ``names`` that hold their scores (finished, damaged or not)."""
    return [units_dir / n for n in names if (units_dir / n / SCORES).is_file()]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@contextmanager
def run_writes(out: Path, names: list[str]) -> Iterator[None]:
    """Turn a failed write during a ``cv`` into the run's message: what failed and why,
    which units are kept, how much space the rest needs, and the command that finishes
    the run (:class:`RunError`)."""
    try:
        yield
    except WriteError as exc:
        units_dir = out / "units"
        done = finished_units(units_dir, names) if units_dir.is_dir() else []
        left = len(names) - len(done)
        per_unit = getattr(exc, "needed", None) or (
            sum(folder_bytes(d) for d in done) / len(done) if done else 0)
        # the run's tables gather the units' records: about their size again
        tables = sum(f.stat().st_size for d in done for f in d.glob("*.csv"))
        kept = (f"{len(done)} of {len(names)} units are finished and kept in {units_dir}"
                if done else "no unit is finished yet")
        then = (f"finish the run with `{resume_command(out)}` (under mer-train table1: run "
                "the same command again)")
        if exc.disk_full:
            rest = per_unit * left + tables
            need = f"; the rest of the run needs about {human_bytes(rest)}" if rest else ""
            free = free_bytes(out)
            free = f" ({human_bytes(free)} free now)" if free is not None else ""
            raise RunError(f"disk full while writing {exc.path} ({exc.reason}): {kept}"
                           f"{need}{free}. Free some space, then {then}") from None
        raise RunError(f"cannot write {exc.path} ({exc.reason}): {kept}. When {out} can "
                       f"be written again, {then}") from None
