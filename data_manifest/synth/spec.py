"""The shared core of the look-alike generators: the planned clip, and :class:`SynthSpec`,
whose generic rules come from the dataset's reader (layouts, subject and frame folder names,
frame file names, the sheet's file name, the emotions of its default class set), so a
generated dataset is laid out exactly as its reader expects. A dataset module
(:mod:`.casme2`, :mod:`.samm`, :mod:`.mmew`, :mod:`.smic`, :mod:`.casme3`) subclasses it
with only what is that dataset's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_di.data_manifest.classes import CLASS_SETS, normalise_emotion
from mer_di.data_manifest.reader import DatasetReader, Layout
from mer_di.data_manifest.registry import get_reader
from mer_di.data_manifest.synth.sheets import write_workbook

# a motion's FACS action units and objective class, as the sheets write them
AU = {"brow_raise": "1+2", "brow_lower": "4", "lip_corner_pull": "12", "lip_press": "24",
      "eye_widen": "5", "nose_wrinkle": "9", "lip_stretch": "20"}
OBJECTIVE = {"brow_raise": 2, "brow_lower": 1, "lip_corner_pull": 3, "lip_press": 4,
             "eye_widen": 5, "nose_wrinkle": 6, "lip_stretch": 7}

# the sheet quirks planted in a look-alike CASME II, SAMM or MMEW, one each
QUIRKS = ("apex_slash", "apex_equals_onset", "apex_after_offset", "emotion_outside_five")


@dataclass
class PlannedClip:
    """One clip of a look-alike dataset: its sheet values and its true motion.

    Frame numbers are the numbers in the frame file names; ``amplitude`` is in frame pixels.
    """

    subject_number: int
    subject: str            # folder name
    clip: str
    emotion: str            # as the sheet writes it
    motion: str             # a key of faces.MOTIONS
    amplitude: float        # feature displacement at the apex, frame pixels
    onset: int
    apex: int               # the true motion peak
    offset: int
    first_frame: int        # frames on disk: first_frame..last_frame
    last_frame: int
    sheet_apex: object      # what the sheet says (a number, or '/')
    quirk: str = ""
    sheet_row: int = 0      # Excel row number, 1-based
    frame_dir: Path | None = None
    frame_template: str = ""
    video: str = ""         # the video's folder, where clips share one (CAS(ME)^3)
    missing_frames: tuple[int, ...] = ()  # frame numbers not written (a planted gap)
    # sheet cells that differ from the true values (a planted typo): column -> value
    sheet_cells: dict[str, object] = field(default_factory=dict)


class SynthSpec:
    """A look-alike dataset's rules: class attributes and overridable methods.

    The generic methods ask the reader of ``name``; a subclass sets the attributes below
    and writes :meth:`clip_name` and :meth:`sheet_row`.
    """

    name: str = ""                  # the reader's dataset name
    # one emotion outside the default class set (lowercase), a quirk row; '' for none
    extra_class: str = ""
    # lowercase emotion (those of the default class set and the extra one) -> the motion
    # its clips make
    motions: dict[str, str] = {}
    frame_size: tuple[int, int] = (224, 224)  # default (width, height), pixels
    length: tuple[int, int] = (20, 40)        # default (shortest, longest) onset..offset, frames
    grey: bool = False                        # greyscale frames (else BGR)
    cropped_layouts: tuple[str, ...] = ()     # layouts whose frames are cut to the face
    pad_frames: bool = True         # frames before onset and after offset on disk
    first_subject: int = 1          # number of the first subject
    # the sheet: its header, the note rows above it ({column: text}), sheet name, empty
    # sheets after it, and which of the reader's sheet file names it is saved as
    header: list[object | None] = []
    notes: list[dict[int, str]] | None = None
    sheet_name: str = "Sheet1"
    empty_sheets: tuple[str, ...] = ()
    sheet_file_index: int = 0
    quirks: tuple[str, ...] = QUIRKS  # the quirks a generated dataset plants
    annotated_apex: bool = True     # False: the dataset annotates no apex (SMIC)
    number_per_emotion: bool = False  # clip names count clips per emotion (s1_ne_01)
    frame_suffix: str = ".jpg"      # how frames are encoded (".jpg", ".bmp")
    has_sheet: bool = True          # False: the clips are read from the folders (SMIC)
    extra_gt_fields: tuple[str, ...] = ()  # ground-truth columns after the shared ones

    def __init__(self) -> None:
        self.reader: DatasetReader = get_reader(self.name)

    # -- from the reader -------------------------------------------------------------------
    @property
    def layouts(self) -> tuple[str, ...]:
        """The reader's layout names, its preferred first."""
        return tuple(layout.name for layout in self.reader.layouts)

    @property
    def emotions(self) -> tuple[str, ...]:
        """The emotions of the reader's default class set (the five classes of CASME II,
        SAMM and MMEW) as the sheet spells them, in class-index order."""
        return tuple(self.spell(e) for e in CLASS_SETS[self.name][self.reader.default_classes])

    @property
    def five(self) -> tuple[str, ...]:
        """The five classes of CASME II, SAMM and MMEW: :attr:`emotions`."""
        return self.emotions

    @property
    def extra_emotion(self) -> str:
        """The emotion outside the five, as the sheet spells it."""
        return self.spell(self.extra_class)

    def motion(self, emotion: str) -> str:
        """The motion of a clip of ``emotion`` (any spelling the reader accepts)."""
        return self.motions[normalise_emotion(emotion)]

    def subject_folder(self, number: int) -> str:
        return self.reader.subject_folder(number)

    def frame_location(self, root: Path, layout: str, clip: PlannedClip) -> tuple[Path, str]:
        """``(clip folder, frame file template)`` under ``root``, as the reader has them
        for ``layout``; the template formats a frame number ``n``."""
        lay: Layout = next(x for x in self.reader.layouts if x.name == layout)
        folder = self.reader.clip_dirs(root / lay.base, lay, clip.subject, clip.clip,
                                       clip.emotion)[0]
        return folder, self.reader.frame_template(lay, clip.subject, clip.clip)

    # -- the dataset's own ------------------------------------------------------------------
    def spell(self, emotion: str) -> str:
        """A class name (lowercase) as the sheet writes it."""
        return emotion

    def face_fills(self, layout: str) -> bool:
        """Whether the face box covers the frame in ``layout`` (frames cut to the face)."""
        return layout in self.cropped_layouts

    def subject_number(self, index: int) -> int:
        """The number of the ``index``-th subject (0-based)."""
        return index + self.first_subject

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        """The ``k``-th clip name of a subject (unique within the subject)."""
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
        """The clip's row of the annotation sheet, cell by cell (None: a blank cell)."""
        raise NotImplementedError

    def plan(self, subjects: int, clips_per_class: int, length: tuple[int, int],
             rng: np.random.Generator) -> list[PlannedClip]:
        """Every clip of a generated dataset, in sheet order, quirks planted."""
        from mer_di.data_manifest.synth.plan import plan_clips

        return plan_clips(self, subjects, clips_per_class, length, rng)

    def plant_quirks(self, clips: list[PlannedClip], rng: np.random.Generator) -> None:
        """The three sheet quirks on the first clips of subjects 1, 2, 3 (cycling if fewer)."""
        targets = [c for c in clips if not c.quirk]
        firsts = list(dict.fromkeys(c.subject for c in targets))
        used: set[int] = set()
        for i, quirk in enumerate(QUIRKS[:3]):
            subject = firsts[i % len(firsts)]
            clip = next(c for j, c in enumerate(targets) if c.subject == subject and j not in used)
            used.add(targets.index(clip))
            clip.quirk = quirk
            if quirk == "apex_slash":
                clip.sheet_apex = "/"
            elif quirk == "apex_equals_onset":
                clip.apex = clip.sheet_apex = clip.onset  # the motion really peaks at onset
            else:
                clip.sheet_apex = clip.offset + int(rng.integers(3, 10))  # a typo in the sheet

    def write_extras(self, root: Path, layout: str, frame_size: tuple[int, int], seed: int,
                     clips: list[PlannedClip]) -> int:
        """Folders beside the clips that the reader must ignore; the frames written."""
        return 0

    def trailing_rows(self, clips: list[PlannedClip]) -> list[list[object]]:
        """Rows after the clips' (junk rows some copies have)."""
        return []

    def write_sheet(self, root: Path, clips: list[PlannedClip]) -> Path:
        """Write the annotation sheet into ``root``; sets each clip's ``sheet_row``. A
        dataset without a sheet returns the folder its clips are read from."""
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
