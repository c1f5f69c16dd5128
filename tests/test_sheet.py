"""Finding the annotation table by its column names."""

from __future__ import annotations

import openpyxl
import pytest

from mer_di.data_manifest.casme2 import Casme2Reader
from mer_di.data_manifest.sheet import read_table
from mer_di.errors import SheetError

REQUIRED = Casme2Reader.required_columns


def _workbook(path, sheets):
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets:
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
          "Action Units", "Estimated Emotion"]


def test_header_below_notes_in_a_later_sheet_with_extra_columns(tmp_path):
    path = _workbook(tmp_path / "s.xlsx", [
        ("Notes", [["just notes"], ["more"]]),
        ("Data", [["A title"], [], ["Symbol key"], [*HEADER, "My Column"],
                  ["01", "EP02_01f", None, 46, 59, 86, None, 12, "happiness", "x"]]),
    ])
    table = read_table(path, REQUIRED)
    assert table.sheet_name == "Data"
    assert table.header_row == 4
    assert table.rows == [(5, {"subject": "01", "clip": "EP02_01f", "onset": 46, "apex": 59,
                               "offset": 86, "emotion": "happiness"})]


def test_header_spelling_ignores_case_and_spaces(tmp_path):
    path = _workbook(tmp_path / "s.xlsx", [("S", [
        ["subject", "FILENAME", "Onset Frame", "apex_frame", "Offset Frame", "estimated emotion"],
        [1, "a", 1, 2, 3, "x"]])])
    assert read_table(path, REQUIRED).rows[0][1]["apex"] == 2


def test_missing_columns_are_named(tmp_path):
    path = _workbook(tmp_path / "s.xlsx", [("S", [
        ["Subject", "Filename", "OnsetFrame", "OffsetFrame", "Estimated Emotion"]])])
    # the missing column is named as the sheet spells it
    with pytest.raises(SheetError, match=r"sheet 'S' row 1, lacks ApexFrame") as err:
        read_table(path, REQUIRED)
    assert str(path) in str(err.value)


def test_csv_is_read_too(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Estimated Emotion\n"
                    "1,S01-01-001,1,15,31,happiness\n")
    (row_number, cells), = read_table(path, REQUIRED).rows
    assert row_number == 2 and cells["clip"] == "S01-01-001" and cells["onset"] == "1"


def test_not_a_workbook(tmp_path):
    path = tmp_path / "s.xlsx"
    path.write_text("not a zip")
    with pytest.raises(Exception, match="cannot read as an Excel workbook"):
        read_table(path, REQUIRED)


@pytest.mark.filterwarnings("error")
def test_a_sheet_with_data_validation_reads_without_openpyxls_warning(tmp_path):
    """A workbook Excel saved with data validation made openpyxl print 'UserWarning: Data
    Validation extension is not supported and will be removed' (a path into
    site-packages) on every manifest; the values are read all the same."""
    import zipfile

    plain = _workbook(tmp_path / "plain.xlsx", [("S", [
        ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Estimated Emotion"],
        [1, "a", 1, 2, 3, "x"]])])
    path = tmp_path / "validated.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</worksheet>", (
                    b'<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" xmlns:x14='
                    b'"http://schemas.microsoft.com/office/spreadsheetml/2009/9/main">'
                    b'<x14:dataValidations count="0"/></ext></extLst></worksheet>'))
            dst.writestr(item, data)
    assert read_table(path, REQUIRED).rows[0][1]["apex"] == 2
