"""A run's units and their folders: one place that names them and reads the names back.

A run is a list of independent units, one per (model, configuration, seed, fold), plus,
with ``--final``, one final unit per (model, configuration, seed) trained on every clip.
Each writes ``<run>/units/<unit name>/`` (:mod:`mer_di.training.trainer`); a unit whose
folder holds :data:`SCORES` is finished.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

SCORES = "scores.json"  # written last: its presence marks a finished unit folder
CHECKPOINT = "model.pt"
FAILED = "failed"  # the key in a failed unit's scores: why it has no score
FAILURES = "failures.csv"  # a run's failed units, one row each (absent when none)
FINAL = "final"  # the fold part of a final unit's name
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


def unit_done(units_dir: Path, unit: Unit) -> bool:
    """Whether ``unit``'s folder exists whole (see :func:`unit_damage`)."""
    return (units_dir / unit.name).is_dir() and not unit_damage(units_dir, unit)


def unit_damage(units_dir: Path, unit: Unit) -> str:
    """Why ``unit``'s folder can't be used ('' when it is whole): a record missing or
    unreadable, or fewer test predictions than its scores counted (a file cut short)."""
    folder = units_dir / unit.name
    try:
        scores = json.loads((folder / SCORES).read_text())
        with (folder / "predictions.csv").open(newline="") as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1
        (folder / "history.csv").stat()
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc.__class__.__name__}: {exc})"
    if FAILED not in scores and rows != scores.get("test_clips"):
        return f"predictions.csv has {rows} rows, its scores count {scores.get('test_clips')}"
    return ""
