"""The canonical manifest row and its CSV round trip.

One :class:`ManifestRow` per row of the annotation sheet (rows without a subject are
skipped). ``problems`` is empty for a fully usable row; otherwise it lists every reason,
separated by ``"; "``. ``full_ok``, ``onset_ok`` and ``offset_ok`` say which of the three
dynamic images can be built from the row's frames (the class set does not enter them: a
cache holds every clip and training chooses the classes).
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mer_di._paths import write_table

PROBLEM_SEPARATOR = "; "


@dataclass
class ManifestRow:
    """One clip as the annotation sheet describes it, resolved against the dataset folder.

    Frame numbers are the sheet's own (inclusive); ``n_frames = offset - onset + 1`` is the
    number of frames the ``full`` image pools. A frame's file is
    ``Path(frame_dir) / frame_template.format(n=frame_number)``.
    """

    dataset: str
    subject: str
    clip: str
    sheet_row: int
    onset: int | None
    apex: int | None
    offset: int | None
    emotion: str
    label: str
    action_units: str
    frame_dir: str
    frame_template: str
    n_frames: int | None
    full_ok: bool
    onset_ok: bool
    offset_ok: bool
    problems: str = ""

    @property
    def key(self) -> str:
        """``subject/clip``, the clip's key in the cache."""
        return f"{self.subject}/{self.clip}"

    @property
    def problem_list(self) -> list[str]:
        return [p for p in self.problems.split(PROBLEM_SEPARATOR) if p]

    def add_problem(self, text: str) -> None:
        self.problems = PROBLEM_SEPARATOR.join([*self.problem_list, text])

    def frame_path(self, n: int) -> Path:
        """Path of frame number ``n`` (the sheet's numbering)."""
        return Path(self.frame_dir) / self.frame_template.format(n=n)


FIELDS = [f.name for f in dataclasses.fields(ManifestRow)]
_INT_FIELDS = {"sheet_row", "onset", "apex", "offset", "n_frames"}
_BOOL_FIELDS = {"full_ok", "onset_ok", "offset_ok"}


def _to_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_manifest(rows: list[ManifestRow], path: str | Path) -> None:
    """Write ``rows`` as CSV with a header (columns in :data:`FIELDS` order).

    The file is written beside its final name and renamed into place, so a reader never
    sees half a manifest.
    """
    write_table(path, lambda fh: _write_rows(rows, fh))


def _write_rows(rows: list[ManifestRow], fh) -> None:
    writer = csv.writer(fh)
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([_to_text(getattr(row, name)) for name in FIELDS])


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a CSV written by :func:`write_manifest` back into rows."""
    rows = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(FIELDS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: not a manifest, missing columns {sorted(missing)}")
        for rec in reader:
            values: dict[str, object] = {}
            for name in FIELDS:
                text = rec[name]
                if name in _INT_FIELDS:
                    values[name] = int(text) if text != "" else None
                elif name in _BOOL_FIELDS:
                    values[name] = text == "true"
                else:
                    values[name] = text
            rows.append(ManifestRow(**values))
    return rows
