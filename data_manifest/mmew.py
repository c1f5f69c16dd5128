"""MMEW: the micro-expression sheet (``MMEW_Micro_Exp.xlsx``), header on row 1.

Frames are numbered ``1..N`` inside each clip folder (onset is 1 on every row), in one of
two layouts: ``Micro_Expression/<emotion>/<Filename>/<n>.jpg`` or
``<Subject>/<emotion>/<Filename>/<n>.jpg`` (``S03/happiness/S03-01-002/1.jpg``). The
``others`` folder is named ``repression`` in some copies; both are accepted.
"""

from __future__ import annotations

from pathlib import Path

from mer_di.data_manifest.classes import normalise_emotion
from mer_di.data_manifest.reader import DatasetReader, Layout

BY_EMOTION = Layout("emotion", "Micro_Expression", "Micro_Expression/<emotion>/<clip>/<n>.jpg",
                    "{n}.jpg")
BY_SUBJECT = Layout("subject", "", "<subject>/<emotion>/<clip>/<n>.jpg", "{n}.jpg")

# folder names an emotion may have on disk, preferred first
FOLDER_ALIASES = {"others": ("others", "repression"), "repression": ("repression", "others")}


class MmewReader(DatasetReader):
    name, title = "mmew", "MMEW"
    sheet_files = ("MMEW_Micro_Exp.xlsx", "MMEW_Micro_Exp.csv")
    layouts = (BY_EMOTION, BY_SUBJECT)
    subject_format = "S{:02d}"

    def clip_dirs(self, frames_root: Path, layout: Layout, subject: str, clip: str,
                  emotion: str) -> list[Path]:
        emotion = normalise_emotion(emotion)
        base = frames_root if layout is BY_EMOTION else frames_root / subject
        return [base / name / clip for name in FOLDER_ALIASES.get(emotion, (emotion,))]
