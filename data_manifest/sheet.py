"""Find the annotation table inside a workbook (or CSV) by its column names.

The official sheets differ in where the header sits (CASME II: row 1; SAMM: row 14 under
13 note rows), in which sheet of the workbook holds it, and in extra or blank columns. We
scan the first rows of every sheet for a row that contains every required column name,
comparing names with case, spaces and underscores ignored (``Onset Frame`` ==
``OnsetFrame``).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mer_di.errors import ManifestError, SheetError

HEADER_SCAN_ROWS = 60  # SAMM's header is on row 14; leave room for copies with more notes
MAX_HEADER_COLUMNS = 1000  # a header is a few dozen columns; a sparse sheet may declare 16384


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


MAX_CSV_BYTES = 64 * 1024 * 1024  # an annotation sheet is kilobytes; refuse what isn't one
CSV_SEPARATORS = ",;\t"  # Excel writes ';' where the decimal mark is a comma


class Formula(str):
    """A formula cell whose value the workbook does not store (a file written by a program
    that does not compute formulas): the formula's text, never taken as the value."""


def _csv_text(path: Path) -> str:
    """A CSV sheet's text, UTF-8 (with or without BOM); a clear error with a hint when it
    is in another encoding."""
    if path.stat().st_size > MAX_CSV_BYTES:
        raise ManifestError(f"{path}: {path.stat().st_size} bytes, too large for an annotation "
                            f"sheet (at most {MAX_CSV_BYTES})")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        guess = ""
        try:
            raw.decode("cp1252")
            guess = " It decodes as Latin-1/Windows-1252 (Excel's 'CSV' on Windows)."
        except UnicodeDecodeError:
            pass
        raise SheetError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})."
                         f"{guess} Save it as UTF-8 (Excel: 'CSV UTF-8'; LibreOffice: "
                         "character set Unicode (UTF-8)), or give the .xlsx workbook") from None


def _csv_rows(path: Path) -> Iterator[list[object]]:
    text = _csv_text(path)
    try:
        dialect = csv.Sniffer().sniff(text[:1 << 16], delimiters=CSV_SEPARATORS)
        separator = dialect.delimiter
    except csv.Error:
        separator = ","
    yield from csv.reader(io.StringIO(text, newline=""), delimiter=separator)


def _openpyxl():
    """openpyxl, without its warnings about the workbook features it drops on reading (data
    validation, conditional formatting, a missing default style: ``UserWarning: Data
    Validation extension is not supported and will be removed``, with a path into
    site-packages). Only cell values are read here and no workbook is written back, so
    they concern nothing the user does."""
    import openpyxl

    warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl\.")
    return openpyxl


def _iter_sheets(path: Path):
    """Yield ``(sheet_name, rows, formulas)`` for every sheet: ``rows`` an iterator of
    lists of cell values, read lazily (a workbook that declares a huge grid, or a cell at
    ``XFD1048576``, costs what its real cells cost); ``formulas()`` the formula cells of
    that sheet as ``{(excel_row, column_index): text}`` (read only when asked)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield path.name, _csv_rows(path), dict
        return
    if suffix in (".xlsx", ".xlsm"):
        openpyxl = _openpyxl()

        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a bad file
            raise ManifestError(f"{path}: cannot read as an Excel workbook ({exc})") from exc
        try:
            for ws in wb.worksheets:
                # the declared dimensions are not trusted: rows are as long as their cells
                ws.reset_dimensions()
                yield (ws.title, (list(r) for r in ws.iter_rows(values_only=True)),
                       lambda title=ws.title: _formulas(path, title))
        except ManifestError:
            raise
        except Exception as exc:  # a damaged sheet inside a readable workbook
            raise ManifestError(f"{path}: cannot read as an Excel workbook ({exc})") from exc
        finally:
            wb.close()
        return
    raise ManifestError(f"{path}: unsupported sheet format {suffix!r} (use .xlsx or .csv)")


def _formulas(path: Path, title: str) -> dict[tuple[int, int], str]:
    """The formula cells of sheet ``title``: ``{(excel_row, column_index): '=...'}``."""
    wb = _openpyxl().load_workbook(path, read_only=True, data_only=False)
    try:
        ws = wb[title]
        ws.reset_dimensions()
        return {(r, i): v for r, row in enumerate(ws.iter_rows(values_only=True), start=1)
                for i, v in enumerate(row) if isinstance(v, str) and v.startswith("=")}
    finally:
        wb.close()


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
    for sheet_name, rows, formulas in _iter_sheets(path):
        for r, cells in enumerate(itertools.islice(rows, HEADER_SCAN_ROWS)):
            names = [normalise_header(c) for c in cells[:MAX_HEADER_COLUMNS]]
            found = {}
            for canon, spellings in accepted.items():
                for i, name in enumerate(names):
                    if name in spellings:
                        found[canon] = i
                        break
            missing = [c for c in required if c not in found]
            if not missing:
                data = []
                for excel_row, row_cells in enumerate(rows, start=r + 2):
                    if not any(c is not None and str(c).strip() for c in row_cells):
                        continue  # blank rows (and the gaps of a sparse sheet) hold nothing
                    data.append((excel_row, {
                        canon: (row_cells[i] if i < len(row_cells) else None)
                        for canon, i in found.items()
                    }))
                _mark_formulas(data, found, formulas)
                return SheetTable(path, sheet_name, r + 1, data)
            n_found = len(required) - len(missing)
            if n_found and (best is None or n_found > best[0]):
                best = (n_found, sheet_name, r + 1, missing)
    spelled = {canon: names[0] for canon, names in required.items()}
    wanted = ", ".join(spelled.values())
    if best is None:
        raise SheetError(f"{path}: no sheet has a header row with the columns {wanted}"
                         + _separator_hint(path))
    _, sheet_name, row, missing = best
    raise SheetError(
        f"{path}: no sheet has a header row with the columns {wanted}; the closest, "
        f"sheet {sheet_name!r} row {row}, lacks {', '.join(spelled[m] for m in missing)}"
    )


def _mark_formulas(data: list[tuple[int, dict[str, object]]], found: dict[str, int],
                   formulas) -> None:
    """Empty cells of ``data`` that hold a formula without a stored value become
    :class:`Formula` (their text), so a row problem can say so instead of 'missing'."""
    if not any(v is None for _, cells in data for v in cells.values()):
        return  # the usual case: no second pass over the workbook
    text = formulas()
    if not text:
        return
    for excel_row, cells in data:
        for canon, i in found.items():
            if cells[canon] is None and (excel_row, i) in text:
                cells[canon] = Formula(text[excel_row, i])


def _separator_hint(path: Path) -> str:
    """For a CSV whose header was not found: what its first line looks like."""
    if path.suffix.lower() != ".csv":
        return ""
    first = _csv_text(path).lstrip("\ufeff").split("\n", 1)[0]
    seps = [name for sep, name in ((",", "commas"), (";", "semicolons"), ("\t", "tabs"),
                                   ("|", "bars")) if sep in first]
    return (f" (its first line, {first[:80]!r}, is separated by {' and '.join(seps)})"
            if seps else f" (its first line is {first[:80]!r})")
