"""CAS(ME)^3 part A: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, sheet ``label``, header
on row 1 (``Subject, Filename, Onset, Apex, Offset, AU, Objective class, emotion``, every
cell text).

Frames: ``<Subject>/<Filename>/color/<n>.jpg`` (``spNO.1/e/color/62.jpg``), under the root,
``part_A/`` or ``data/part_A/``; ``depth/`` beside ``color/`` is not used. One video holds
several micro-expressions, so a clip is (Subject, Filename, Onset): its name is
``<Filename>_<Onset>`` (``e_62``; ``<Filename>_row<sheet row>`` without a usable onset), and
its frame folder is the video's ``color/`` folder. The sheet's known quirks are row
problems: offsets of 0 (not annotated), an onset after the offset, an apex outside the clip,
a Filename in another case than its folder (the folder on disk is used), and clips longer
than a micro-expression can be (30 fps: more than 30 frames, 1 s, is doubtful; their
images are still made).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mer_di.data_manifest.reader import DatasetReader, Layout, cell_text, parse_frame_number
from mer_di.data_manifest.records import ManifestRow

FRAME = "{n}.jpg"
AT_ROOT = Layout("root", "", "<Subject>/<Filename>/color/<n>.jpg", FRAME)
PART_A = Layout("part_A", "part_A", "<Subject>/<Filename>/color/<n>.jpg", FRAME)
DATA_PART_A = Layout("data_part_A", "data/part_A", "<Subject>/<Filename>/color/<n>.jpg", FRAME)

FPS = 30
# a micro-expression lasts under half a second; a clip over 1 s is a doubtful annotation
LONGEST_PLAUSIBLE = FPS
_SUBJECT = re.compile(r"sp\s*no\.?\s*\d+", re.IGNORECASE)


class Casme3Reader(DatasetReader):
    name, title = "casme3", "CAS(ME)^3 part A"
    sheet_files = ("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",)
    required_columns = {
        "subject": ("Subject",),
        "clip": ("Filename",),
        "onset": ("Onset", "OnsetFrame"),
        "apex": ("Apex", "ApexFrame"),
        "offset": ("Offset", "OffsetFrame"),
        "emotion": ("emotion", "Estimated Emotion"),
    }
    optional_columns = {"action_units": ("AU", "Action Units")}
    layouts = (AT_ROOT, PART_A, DATA_PART_A)
    subject_format = "spNO.{}"
    default_classes = "four"

    def subject_name(self, value: object) -> str | None:
        """``spNO.1`` as written (the folder's name); a bare number ``1`` -> ``spNO.1``."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return super().subject_name(value)
        return cell_text(value) or None

    def _looks_like_frames_root(self, base: Path) -> bool:
        return base.is_dir() and any(_SUBJECT.fullmatch(p.name) and p.is_dir()
                                     for p in base.iterdir())

    def parse_frame(self, column: str, value: object) -> tuple[int | None, str]:
        """An offset of 0 is not a frame: the sheet leaves it unannotated so."""
        number, why = parse_frame_number(value)
        if column == "offset" and number == 0:
            return None, "is 0 (not annotated)"
        return number, why

    def clip_dirs(self, frames_root: Path, layout: Layout, subject: str, clip: str,
                  emotion: str) -> list[Path]:
        """The video's ``color/`` folder; a Filename in another case than its folder finds
        the folder (the row says so)."""
        video = frames_root / subject
        exact = video / clip / "color"
        try:
            names = os.listdir(video)
        except OSError:
            return [exact]
        if clip in names:
            return [exact]
        other = sorted(n for n in names if n.lower() == clip.lower())
        return [exact, *(video / n / "color" for n in other)]

    def _row(self, excel_row: int, cells: dict[str, object], frames_root: Path,
             layout: Layout, classes: str) -> ManifestRow:
        row = super()._row(excel_row, cells, frames_root, layout, classes)
        filename = row.clip
        video = Path(row.frame_dir).parent.name if row.frame_template else ""
        if video and video != filename and video.lower() == filename.lower():
            filename = video  # spelled as on disk
        if filename:
            row.clip = (f"{filename}_{row.onset}" if row.onset is not None
                        else f"{filename}_row{excel_row}")
        return row

    def row_checks(self, row: ManifestRow, cells: dict[str, object]) -> list[str]:
        problems = []
        folder = Path(row.frame_dir)
        video = folder.parent.name if row.frame_template else ""
        if video and video != row.clip and folder.is_dir():
            problems.append(f"Filename {row.clip!r} is spelled {video!r} on disk: frames read "
                            f"from {video}/")
        if row.n_frames is not None and row.n_frames > LONGEST_PLAUSIBLE:
            problems.append(f"onset {row.onset} to offset {row.offset} is {row.n_frames} "
                            f"frames ({row.n_frames / FPS:.1f} s at {FPS} fps), longer than a "
                            f"micro-expression lasts (under 0.5 s: more than {LONGEST_PLAUSIBLE} "
                            "frames is doubtful): frame numbers doubtful, the images are still "
                            "made")
        return problems
