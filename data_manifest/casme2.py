"""CASME II: ``CASME2-coding-20140508.xlsx`` / ``-20190701.xlsx``, header on row 1.

Frames: ``Cropped/subXX/<Filename>/reg_imgN.jpg`` (face-cropped, preferred) or
``CASME2_RAW_selected/subXX/<Filename>/imgN.jpg`` (640x480), N the sheet's frame number.
"""

from __future__ import annotations

from mer_di.data_manifest.reader import DatasetReader, Layout

CROPPED = Layout("cropped", "Cropped", "face-cropped reg_imgN.jpg")
RAW = Layout("raw", "CASME2_RAW_selected", "640x480 imgN.jpg")


class Casme2Reader(DatasetReader):
    name = "casme2"
    title = "CASME II"
    sheet_files = ("CASME2-coding-20140508.xlsx", "CASME2-coding-20190701.xlsx")
    layouts = (CROPPED, RAW)

    def subject_folder(self, number: int) -> str:
        return f"sub{number:02d}"

    def frame_template(self, layout: Layout, subject: str, clip: str) -> str:
        return "reg_img{n}.jpg" if layout is CROPPED else "img{n}.jpg"
