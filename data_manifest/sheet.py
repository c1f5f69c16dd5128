"""Find the annotation table inside a workbook (or CSV) by its column names.

The official sheets differ in where the header sits (CASME II: row 1; SAMM: row 14 under
13 note rows), in which sheet of the workbook holds it, and in extra or blank columns. We
scan the first rows of every sheet for a row that contains every required column name,
comparing names with case, spaces and underscores ignored (``Onset Frame`` ==
``OnsetFrame``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from mer_di.errors import ManifestError, SheetError

HEADER_SCAN_ROWS = 60  # SAMM's header is on row 14; leave room for copies with more notes


def normalise_header(name: object) -> str:
    """``'Onset Frame'`` -> ``'onsetframe'``: case, spaces and underscores ignored."""
    return re.sub(r"[\s_]+", "", str(name)).lower() if name is not None else ""


@dataclass
class SheetTable:
    """The data rows under the header, as ``(excel_row, {column: cell value})`` pairs.

    ``excel_row`` is 1-based as a spreadsheet shows it (for a CSV: the line number).
    Only the requested columns are kept; cells are the raw values (int, float, str, None).
    """

    path: Path
    sheet_name: str
    header_row: int
    rows: list[tuple[int, dict[str, object]]]


def _iter_sheets(path: Path):
    """Yield ``(sheet_name, rows)`` for every sheet; rows are lists of cell values."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            yield path.name, [row for row in csv.reader(fh)]
        return
    if suffix in (".xlsx", ".xlsm"):
        import openpyxl

        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a bad file
            raise ManifestError(f"{path}: cannot read as an Excel workbook ({exc})") from exc
        try:
            for ws in wb.worksheets:
                yield ws.title, [list(r) for r in ws.iter_rows(values_only=True)]
        finally:
            wb.close()
        return
    raise ManifestError(f"{path}: unsupported sheet format {suffix!r} (use .xlsx or .csv)")


def read_table(path: str | Path, required: dict[str, tuple[str, ...]],
               optional: dict[str, tuple[str, ...]] | None = None) -> SheetTable:
    """Read the first table of ``path`` whose header holds every ``required`` column.

    Parameters
    ----------
    path : the workbook (.xlsx) or CSV file.
    required, optional : canonical column name -> accepted header spellings.

    Raises
    ------
    SheetError
        When no sheet has such a header; the message names the best candidate row and
        the columns it lacks.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: annotation sheet not found")
    optional = optional or {}
    accepted = {
        canon: {normalise_header(n) for n in names}
        for canon, names in {**required, **optional}.items()
    }
    best: tuple[int, str, int, list[str]] | None = None  # (n_found, sheet, row, missing)
    for sheet_name, rows in _iter_sheets(path):
        for r, cells in enumerate(rows[:HEADER_SCAN_ROWS]):
            names = [normalise_header(c) for c in cells]
            found = {}
            for canon, spellings in accepted.items():
                for i, name in enumerate(names):
                    if name in spellings:
                        found[canon] = i
                        break
            missing = [c for c in required if c not in found]
            if not missing:
                data = []
                for excel_row, row_cells in enumerate(rows[r + 1:], start=r + 2):
                    data.append((excel_row, {
                        canon: (row_cells[i] if i < len(row_cells) else None)
                        for canon, i in found.items()
                    }))
                return SheetTable(path, sheet_name, r + 1, data)
            n_found = len(required) - len(missing)
            if n_found and (best is None or n_found > best[0]):
                best = (n_found, sheet_name, r + 1, missing)
    wanted = ", ".join(required)
    if best is None:
        raise SheetError(f"{path}: no sheet has a header row with the columns {wanted}")
    _, sheet_name, row, missing = best
    raise SheetError(
        f"{path}: no sheet has a header row with the columns {wanted}; the closest, "
        f"sheet {sheet_name!r} row {row}, lacks {', '.join(missing)}"
    )
