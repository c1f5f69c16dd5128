"""A run's units and their folders: one place that names them and reads the names back.

A run is a list of independent units, one per (model, configuration, seed, fold), plus,
with ``--final``, one final unit per (model, configuration, seed) trained on every clip.
Each writes ``<run>/units/<unit name>/`` (:mod:`mer_di.training.trainer`); a unit whose
folder holds :data:`SCORES` is finished, and whole when every file is as its scores
record it (:func:`unit_damage`).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from mer_di._files import file_sha256

SCORES = "scores.json"  # written last: its presence marks a finished unit folder
CHECKPOINT = "model.pt"
FAILED = "failed"  # the key in a failed unit's scores: why it has no score
FAILURES = "failures.csv"  # a run's failed units, one row each (absent when none)
FINAL = "final"  # the fold part of a final unit's name
FILES = "files"  # the key in a unit's scores: each file's bytes and SHA-256, as written
_UNIT = re.compile(r"^(?P<model>.+)__(?P<config>.+)__seed(?P<seed>-?\d+)__"
                   rf"(?:fold(?P<fold>\d+)|{FINAL})$")


@dataclass(frozen=True)
class Unit:
    """One independent piece of a run: train (and test) one model under one configuration
    and seed on one fold; ``fold`` None is the final model, trained on every clip."""

    model: str
    config: str
    seed: int
    fold: int | None

    @property
    def name(self) -> str:
        """The unit's folder name; :meth:`parse` reads it back."""
        fold = FINAL if self.fold is None else f"fold{self.fold:02d}"
        return f"{self.model}__{self.config}__seed{self.seed}__{fold}"

    @classmethod
    def parse(cls, name: str) -> Unit | None:
        """The unit a folder name names, or None for any other name."""
        m = _UNIT.match(name)
        if m is None:
            return None
        fold = None if m["fold"] is None else int(m["fold"])
        return cls(m["model"], m["config"], int(m["seed"]), fold)

    @property
    def seed_value(self) -> int:
        """The seed of everything random in this unit, from (seed, fold) alone."""
        return self.seed * 1000 + (999 if self.fold is None else self.fold)


def unit_done(units_dir: Path, unit: Unit, checkpoint: bool = True) -> bool:
    """Whether ``unit``'s folder exists whole (see :func:`unit_damage`)."""
    return (units_dir / unit.name).is_dir() and not unit_damage(units_dir, unit, checkpoint)


def unit_damage(units_dir: Path, unit: Unit, checkpoint: bool = True,
                unrecorded: bool = True) -> str:
    """Why ``unit``'s folder can't be used, naming the file ('' when it is whole).

    :data:`SCORES` must be a readable JSON object; each file it records (:data:`FILES`:
    bytes and SHA-256, written by :func:`mer_di.training.trainer.write_unit`) must be there
    with that size and content (``checkpoint`` False skips :data:`CHECKPOINT`, the largest).
    A folder written before files were recorded (``unrecorded``: check it as before) must
    hold a readable ``history.csv`` and as many test predictions as its scores count."""
    folder = units_dir / unit.name
    try:
        raw = (folder / SCORES).read_bytes()
    except FileNotFoundError:
        return f"{SCORES} is missing"
    except OSError as exc:
        return f"{SCORES} is unreadable ({exc.strerror or exc})"
    try:
        scores = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{SCORES} is not text (not UTF-8)"
    except ValueError as exc:
        return f"{SCORES} is {'empty' if not raw.strip() else f'not valid JSON ({exc})'}"
    if not isinstance(scores, dict):
        return f"{SCORES} is not a unit's scores (a JSON {type(scores).__name__})"
    files = scores.get(FILES)
    if files is not None:
        return _recorded_damage(folder, files, checkpoint)
    if not unrecorded:
        return ""
    try:
        with (folder / "predictions.csv").open(newline="", encoding="utf-8") as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1
        (folder / "history.csv").stat()
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc.__class__.__name__}: {exc})"
    if FAILED not in scores and rows != scores.get("test_clips"):
        return f"predictions.csv has {rows} rows, its scores count {scores.get('test_clips')}"
    return ""


def _recorded_damage(folder: Path, files: object, checkpoint: bool) -> str:
    """Why the files of ``folder`` differ from what its scores record ('' when none do)."""
    if not isinstance(files, dict):
        return f"{SCORES} is not a unit's scores (its {FILES!r} is not a mapping)"
    for name, want in files.items():
        if name == CHECKPOINT and not checkpoint:
            continue
        try:
            size, sha = int(want["bytes"]), str(want["sha256"])
        except (KeyError, TypeError, ValueError):
            return f"{SCORES} is not a unit's scores (its record of {name} is not one)"
        path = folder / name
        try:
            have = path.stat().st_size
            if have != size:
                return (f"{name} has {have} bytes, the run wrote {size} "
                        f"({'emptied' if have == 0 else 'cut short or edited'})")
            if file_sha256(path) != sha:
                return f"{name} is not what the run wrote (same size, other content)"
        except FileNotFoundError:
            return f"{name} is missing"
        except OSError as exc:
            return f"{name} is unreadable ({exc.strerror or exc})"
    return ""
