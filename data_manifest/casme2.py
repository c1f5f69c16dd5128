"""CASME II: ``CASME2-coding-20140508.xlsx`` / ``-20190701.xlsx``, header on row 1.

Frames: ``Cropped/subXX/<Filename>/reg_imgN.jpg`` (face-cropped, preferred) or
``CASME2_RAW_selected/subXX/<Filename>/imgN.jpg`` (640x480), N the sheet's frame number.
"""

from __future__ import annotations

from mer_di.data_manifest.reader import DatasetReader, Layout

CROPPED = Layout("cropped", "Cropped", "face-cropped reg_imgN.jpg", "reg_img{n}.jpg")
RAW = Layout("raw", "CASME2_RAW_selected", "640x480 imgN.jpg", "img{n}.jpg")


class Casme2Reader(DatasetReader):
    name, title = "casme2", "CASME II"
    sheet_files = ("CASME2-coding-20140508.xlsx", "CASME2-coding-20190701.xlsx")
    layouts = (CROPPED, RAW)
    subject_format = "sub{:02d}"
