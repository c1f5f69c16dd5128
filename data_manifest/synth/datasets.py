"""What differs between the look-alike CASME II, SAMM and MMEW: names, numbering, sheets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer_di.data_manifest.synth.sheets import (
    CASME2_HEADER,
    MMEW_HEADER,
    SAMM_HEADER,
    SAMM_NOTES,
    write_workbook,
)


@dataclass
class PlannedClip:
    """One clip of a look-alike dataset: its sheet values and its true motion."""

    subject_number: int
    subject: str            # folder name
    clip: str
    emotion: str            # as the sheet writes it
    motion: str
    amplitude: float        # feature displacement at the apex, frame pixels
    onset: int
    apex: int               # the true motion peak
    offset: int
    first_frame: int        # frames on disk: first_frame..last_frame
    last_frame: int
    sheet_apex: object      # what the sheet says (a number, or '/')
    quirk: str = ""
    sheet_row: int = 0
    frame_dir: Path | None = None
    frame_template: str = ""


@dataclass(frozen=True)
class SynthSpec:
    """Dataset-specific rules of the generator."""

    name: str
    five: tuple[str, ...]              # the five classes, as the sheet spells them
    extra_emotion: str                 # one emotion outside the five, for a quirk row
    motions: dict[str, str]            # emotion -> motion
    frame_size: tuple[int, int]        # default (W, H)
    length: tuple[int, int]            # default onset..offset frames
    layouts: tuple[str, ...]
    grey: bool
    face_fills_frame: dict[str, bool]  # layout -> face box covers the frame
    pad_frames: bool                   # frames before onset and after offset on disk

    def subject_folder(self, number: int) -> str:
        return {"casme2": f"sub{number:02d}", "samm": f"{number:03d}",
                "mmew": f"S{number:02d}"}[self.name]

    def subject_number(self, index: int) -> int:
        return index + 6 if self.name == "samm" else index + 1  # SAMM subjects start at 006

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        """The k-th clip name of a subject (unique within the subject)."""
        if self.name == "casme2":
            return f"EP{rng.integers(1, 20):02d}_{k + 1:02d}" + ("f" if rng.random() < 0.5 else "")
        if self.name == "samm":
            return f"{subject}_{rng.integers(1, 8)}_{k + 1}"
        code = (*self.five, self.extra_emotion).index(emotion) + 1
        return f"{subject}-{code:02d}-{k + 1:03d}"

    def frame_numbers(self, n: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(first_frame, onset, offset, last_frame)`` for a clip of ``n`` frames."""
        if not self.pad_frames:
            return 1, 1, n, n
        pre, post = int(rng.integers(3, 11)), int(rng.integers(3, 11))
        first = 1 if self.name == "casme2" else int(rng.integers(1000, 6000))
        onset = first + pre
        return first, onset, onset + n - 1, onset + n - 1 + post

    def frame_location(self, root: Path, layout: str, clip: PlannedClip) -> tuple[Path, str]:
        """The clip folder and the frame file template in the official layout."""
        if self.name == "casme2":
            if layout == "cropped":
                return root / "Cropped" / clip.subject / clip.clip, "reg_img{n}.jpg"
            return root / "CASME2_RAW_selected" / clip.subject / clip.clip, "img{n}.jpg"
        if self.name == "samm":
            return root / "SAMM" / clip.subject / clip.clip, clip.subject + "_{n:05d}.jpg"
        base = root / "Micro_Expression" if layout == "emotion" else root / clip.subject
        return base / clip.emotion / clip.clip, "{n}.jpg"

    def write_sheet(self, root: Path, clips: list[PlannedClip]) -> Path:
        """Write the annotation sheet; sets each clip's ``sheet_row``."""
        if self.name == "casme2":
            rows: list[list[object]] = [CASME2_HEADER]
            for i, c in enumerate(clips):
                c.sheet_row = i + 2
                rows.append([f"{c.subject_number:02d}", c.clip, None, c.onset, c.sheet_apex,
                             c.offset, None, AU[c.motion], c.emotion, OBJECTIVE[c.motion]])
            rows.append([None, f"{len(clips)} clips", None, None, None, None, None, None, None,
                         None])  # a junk row without a subject, as some copies end
            path = root / "CASME2-coding-20190701.xlsx"
            write_workbook(path, [("Sheet1", None, rows), ("Sheet2", None, []),
                                  ("Sheet3", None, [])])
            return path
        if self.name == "samm":
            rows = [SAMM_HEADER]
            for i, c in enumerate(clips):
                c.sheet_row = len(SAMM_NOTES) + i + 2
                rows.append([c.subject, c.clip, int(c.clip.split("_")[1]), c.onset, c.sheet_apex,
                             c.offset, c.offset - c.onset + 1, "Micro - 1/2", AU[c.motion],
                             c.emotion, OBJECTIVE[c.motion], c.quirk or None])
            path = root / "SAMM_Micro_FACS_Codes_v2.xlsx"
            write_workbook(path, [("MICRO_ONLY", SAMM_NOTES, rows)])
            return path
        rows = [MMEW_HEADER]
        for i, c in enumerate(clips):
            c.sheet_row = i + 2
            rows.append([c.subject_number, c.clip, c.onset, c.sheet_apex, c.offset, AU[c.motion],
                         c.emotion, None])
        path = root / "MMEW_Micro_Exp.xlsx"
        write_workbook(path, [("Sheet1", None, rows)])
        return path


AU = {"brow_raise": "1+2", "brow_lower": "4", "lip_corner_pull": "12", "lip_press": "24",
      "eye_widen": "5", "nose_wrinkle": "9"}
OBJECTIVE = {"brow_raise": 2, "brow_lower": 1, "lip_corner_pull": 3, "lip_press": 4,
             "eye_widen": 5, "nose_wrinkle": 6}

SPECS: dict[str, SynthSpec] = {
    "casme2": SynthSpec(
        name="casme2",
        five=("happiness", "disgust", "surprise", "repression", "others"),
        extra_emotion="fear",
        motions={"happiness": "lip_corner_pull", "disgust": "nose_wrinkle",
                 "surprise": "brow_raise", "repression": "lip_press", "others": "eye_widen",
                 "fear": "brow_lower"},
        frame_size=(192, 224), length=(20, 40), layouts=("cropped", "raw"), grey=False,
        face_fills_frame={"cropped": True, "raw": False}, pad_frames=True,
    ),
    "samm": SynthSpec(
        name="samm",
        five=("Happiness", "Anger", "Surprise", "Contempt", "Other"),
        extra_emotion="Fear",
        motions={"Happiness": "lip_corner_pull", "Anger": "brow_lower", "Surprise": "brow_raise",
                 "Contempt": "lip_press", "Other": "eye_widen", "Fear": "nose_wrinkle"},
        frame_size=(680, 363), length=(20, 40), layouts=("samm",), grey=True,
        face_fills_frame={"samm": False}, pad_frames=True,
    ),
    "mmew": SynthSpec(
        name="mmew",
        five=("happiness", "surprise", "disgust", "fear", "others"),
        extra_emotion="sadness",
        motions={"happiness": "lip_corner_pull", "surprise": "brow_raise",
                 "disgust": "nose_wrinkle", "fear": "eye_widen", "others": "lip_press",
                 "sadness": "brow_lower"},
        frame_size=(224, 224), length=(14, 40), layouts=("emotion", "subject"), grey=False,
        face_fills_frame={"emotion": True, "subject": True}, pad_frames=False,
    ),
}
