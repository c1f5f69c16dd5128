"""What a look-alike dataset is made of, shared by the three generators: the planned clip,
and :class:`SynthSpec`, whose generic rules come from the dataset's reader (subject and
frame folder names, layouts, sheet file name, the five classes), so a generated dataset is
laid out exactly as its reader expects. A dataset module (:mod:`.casme2`, :mod:`.samm`,
:mod:`.mmew`) adds only what is its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer_di.data_manifest.classes import CLASS_SETS
from mer_di.data_manifest.reader import DatasetReader, Layout
from mer_di.data_manifest.registry import get_reader
from mer_di.data_manifest.synth.sheets import write_workbook

# a motion's FACS action units and objective class, as the sheets write them
AU = {"brow_raise": "1+2", "brow_lower": "4", "lip_corner_pull": "12", "lip_press": "24",
      "eye_widen": "5", "nose_wrinkle": "9"}
OBJECTIVE = {"brow_raise": 2, "brow_lower": 1, "lip_corner_pull": 3, "lip_press": 4,
             "eye_widen": 5, "nose_wrinkle": 6}


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


class SynthSpec:
    """A look-alike dataset's rules. Subclasses set the class attributes and write rows."""

    name: str = ""                       # the reader's dataset name
    extra_emotion: str = ""              # one emotion outside the five, for a quirk row
    # the motion of each of the five classes, in class order, then the extra emotion's
    motion_order: tuple[str, ...] = ()
    frame_size: tuple[int, int] = (224, 224)  # default (W, H)
    length: tuple[int, int] = (20, 40)   # default onset..offset frames
    grey: bool = False
    face_fills: dict[str, bool] = {}     # layout name -> the face box covers the frame
    pad_frames: bool = True              # frames before onset and after offset on disk
    first_subject: int = 1               # number of the first subject
    # the sheet: its header, note rows above it, sheet name, empty sheets after it
    header: list[object | None] = []
    notes: list[dict[int, str]] | None = None
    sheet_name: str = "Sheet1"
    empty_sheets: tuple[str, ...] = ()
    sheet_file_index: int = 0            # which of the reader's sheet file names

    def __init__(self) -> None:
        self.reader: DatasetReader = get_reader(self.name)

    # -- from the reader -------------------------------------------------------------------
    @property
    def layouts(self) -> tuple[str, ...]:
        return tuple(layout.name for layout in self.reader.layouts)

    @property
    def five(self) -> tuple[str, ...]:
        """The five classes as the sheet spells them, in class order."""
        return tuple(self.spell(e) for e in CLASS_SETS[self.name]["five"])

    @property
    def motions(self) -> dict[str, str]:
        """Sheet emotion -> the motion its clips make."""
        return dict(zip((*self.five, self.extra_emotion), self.motion_order, strict=True))

    def subject_folder(self, number: int) -> str:
        return self.reader.subject_folder(number)

    def frame_location(self, root: Path, layout: str, clip: PlannedClip) -> tuple[Path, str]:
        """The clip folder and the frame file template under ``root``, as the reader has
        them for ``layout``."""
        lay: Layout = next(x for x in self.reader.layouts if x.name == layout)
        frames_root = root / lay.base if lay.base else root
        folder = self.reader.clip_dirs(frames_root, lay, clip.subject, clip.clip, clip.emotion)[0]
        return folder, self.reader.frame_template(lay, clip.subject, clip.clip)

    # -- the dataset's own ------------------------------------------------------------------
    def spell(self, emotion: str) -> str:
        """A class name (lowercase) as the sheet writes it."""
        return emotion

    def subject_number(self, index: int) -> int:
        return index + self.first_subject

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        """The k-th clip name of a subject (unique within the subject)."""
        raise NotImplementedError

    def first_frame(self, rng: np.random.Generator) -> int:
        """The number of a padded clip's first frame on disk."""
        return 1

    def frame_numbers(self, n: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """``(first_frame, onset, offset, last_frame)`` for a clip of ``n`` frames."""
        if not self.pad_frames:
            return 1, 1, n, n
        pre, post = int(rng.integers(3, 11)), int(rng.integers(3, 11))
        first = self.first_frame(rng)
        onset = first + pre
        return first, onset, onset + n - 1, onset + n - 1 + post

    def sheet_row(self, clip: PlannedClip) -> list[object]:
        """The clip's row of the annotation sheet, cell by cell."""
        raise NotImplementedError

    def trailing_rows(self, clips: list[PlannedClip]) -> list[list[object]]:
        """Rows after the clips' (junk rows some copies have)."""
        return []

    def write_sheet(self, root: Path, clips: list[PlannedClip]) -> Path:
        """Write the annotation sheet into ``root``; sets each clip's ``sheet_row``."""
        first_row = len(self.notes or []) + 2  # notes, the header, then the clips
        rows: list[list[object]] = [list(self.header)]
        for i, clip in enumerate(clips):
            clip.sheet_row = first_row + i
            rows.append(self.sheet_row(clip))
        rows += self.trailing_rows(clips)
        path = root / self.reader.sheet_files[self.sheet_file_index]
        write_workbook(path, [(self.sheet_name, self.notes, rows),
                              *((name, None, []) for name in self.empty_sheets)])
        return path
