"""Writing the look-alike datasets' annotation sheets: an .xlsx of given rows, reproducibly.

Written with openpyxl and then made byte-reproducible: openpyxl stamps the save time into
the workbook properties and the zip entries, which we replace by a fixed date.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import openpyxl

FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
FIXED_W3C_TIME = "2020-01-01T00:00:00Z"


def _write_rows(ws, rows: list[list[object]], first_row: int = 1) -> None:
    for r, values in enumerate(rows, start=first_row):
        for c, value in enumerate(values, start=1):
            if value is not None:
                ws.cell(row=r, column=c, value=value)


def write_workbook(path: Path, sheets: list[tuple[str, list[dict[int, object]] | None,
                                                  list[list[object]]]]) -> None:
    """Write ``[(sheet name, note rows or None, table rows incl. header)]`` reproducibly."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, notes, rows in sheets:
        ws = wb.create_sheet(name)
        start = 1
        for r, note in enumerate(notes or [], start=1):
            for c, text in note.items():
                ws.cell(row=r, column=c, value=text)
            start = r + 1
        _write_rows(ws, rows, first_row=start)
    tmp = path.with_name(path.name + ".tmp")
    wb.save(tmp)
    _make_reproducible(tmp, path)
    tmp.unlink()


def _make_reproducible(src: Path, dst: Path) -> None:
    """Copy the xlsx zip with fixed entry times and fixed created/modified properties."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:)",
                              rb"\g<1>" + FIXED_W3C_TIME.encode() + rb"\g<3>", data)
            out = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            out.compress_type = zipfile.ZIP_DEFLATED
            out.external_attr = 0o644 << 16
            zout.writestr(out, data)
