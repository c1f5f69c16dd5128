"""Annotation sheets of the look-alike datasets, in each official sheet's layout.

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

# The real SAMM sheet's 13 note rows (column A unless a column is given).
SAMM_NOTES: list[dict[int, str]] = [
    {1: "SAMM Dataset - Master FACS Codes",
     5: "(Note to the users: If you're using SAMM, please cite: Davison, A. K., Lansley, C., "
        "Costen, N., Tan, K., & Yap, M. H. (2016). SAMM: A spontaneous micro-facial movement "
        "dataset. IEEE Transactions on Affective Computing.)"},
    {},
    {1: "9/9/17 - New updates with Emotional and Objective Classes. For details please "
        "refer to: ", 9: "arXiv preprint arXiv:1708.07549."},
    {5: "(Note to the users: if you're using the emotional or objective classes, please "
        "cite: Davison, A. K., Merghani, W., & Yap, M. H. (2017). Objective Classes for "
        "Micro-Facial Expression Recognition. arXiv preprint arXiv:1708.07549.)"},
    {},
    {1: "Symbol Key:"},
    {1: '"/" = or'},
    {1: '"?" = some AU\'s continue for a while and have unclear offset'},
    {},
    {1: "AU Help:"},
    {1: '"L2 or R2" = Unilateral AU 2 on left side of face / right side of face'},
    {1: '"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side'},
    {},
]

CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion", "Objective Classes"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
MMEW_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
               "Estimated Emotion", "remarks"]


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
