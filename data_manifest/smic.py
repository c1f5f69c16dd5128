"""SMIC-HS: no annotation sheet; the clip folders carry everything.

Clips: ``<HS>/<s>/micro/<emotion>/<clip>/`` (``s1/micro/negative/s1_ne_01/``), ``<HS>`` being
``SMIC_all_cropped/HS`` (face-cropped, preferred), ``SMIC_all_raw/HS`` or ``HS`` under the
root, or the root itself; ``non_micro/`` and any other folder are ignored. Frames are BMP
files (JPEG and PNG accepted too) named after the camera's frame number
(``reg_image046623.bmp``, ``image046623.bmp``, ``reg_00001.bmp``): sorted by that number,
the first is the onset and the last the offset. No apex is annotated: rows have none, and
that is no problem of the row (the build finds an apex of its own).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from mer_di.data_manifest.classes import check_class_set, class_names, map_label
from mer_di.data_manifest.reader import (
    MAX_CLIP_FRAMES,
    DatasetReader,
    Layout,
    Manifest,
    missing_frames_problem,
)
from mer_di.data_manifest.records import ManifestRow
from mer_di.errors import ManifestError

CROPPED = Layout("cropped", "SMIC_all_cropped/HS",
                 "face-cropped <s>/micro/<emotion>/<clip>/reg_imageNNNNNN.bmp", "")
RAW = Layout("raw", "SMIC_all_raw/HS", "raw <s>/micro/<emotion>/<clip>/imageNNNNNN.bmp", "")
HS = Layout("hs", "HS", "<s>/micro/<emotion>/<clip>/", "")
ROOT = Layout("root", "", "the root is the HS folder: <s>/micro/<emotion>/<clip>/", "")

EMOTIONS = ("negative", "positive", "surprise")  # the emotion folders, the classes
IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png")
FOLDERS = "(folders)"  # Manifest.sheet_name of a manifest read from the folders
_SUBJECT = re.compile(r"s(\d+)", re.IGNORECASE)
_FRAME = re.compile(r"(.*?)(\d+)(\.[^.]+)")  # prefix, the last run of digits, suffix


def frame_pattern(names: list[str]) -> tuple[str, list[int], str]:
    """``(template, frame numbers, '')`` for the image file names of one clip folder, all
    following one pattern (a prefix, a number zero-padded to one width or unpadded, a
    suffix); ``('', [], why)`` when they do not, or when there are none."""
    images = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
    if not images:
        return "", [], (f"no frame files ({', '.join(IMAGE_SUFFIXES)}) in the clip folder: "
                        "no image possible")
    groups: dict[tuple[str, str], list[str]] = {}
    for name in images:
        m = _FRAME.fullmatch(name)
        key = (m.group(1), m.group(3)) if m else (name, "")
        groups.setdefault(key, []).append(m.group(2) if m else "")
    templates: Counter[str] = Counter()
    for (prefix, suffix), digits in groups.items():
        templates[_template(prefix, suffix, digits) if suffix else prefix] += len(digits)
    if len(groups) == 1:
        (prefix, suffix), digits = next(iter(groups.items()))
        template = _template(prefix, suffix, digits) if suffix else ""
        if template:
            return template, sorted(int(d) for d in digits), ""
        if suffix:
            widths = sorted({len(d) for d in digits})
            return "", [], (f"frame file numbers ({prefix}N{suffix}) are zero-padded to "
                            f"{len(widths)} widths ({', '.join(map(str, widths))}), not one "
                            "pattern: no image possible")
    spelled = ", ".join(f"{t}: {k} file{'s' * (k > 1)}" for t, k in templates.most_common(3))
    more = f" and {len(templates) - 3} more" if len(templates) > 3 else ""
    return "", [], (f"frame file names follow {len(templates)} patterns ({spelled}{more}), "
                    "not one: no image possible")


def _template(prefix: str, suffix: str, digits: list[str]) -> str:
    """The ``str.format`` template of one group's names; '' when its numbers are padded
    to different widths (or padded and unpadded at once)."""
    def esc(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    widths = {len(d) for d in digits}
    if any(len(d) > 1 and d.startswith("0") for d in digits):  # zero-padded
        return f"{esc(prefix)}{{n:0{widths.pop()}d}}{esc(suffix)}" if len(widths) == 1 else ""
    return f"{esc(prefix)}{{n}}{esc(suffix)}"


def _subfolder(parent: Path, name: str) -> Path | None:
    """``parent/name``, or the one folder of ``parent`` that is ``name`` in another case."""
    exact = parent / name
    if exact.is_dir():
        return exact
    matches = [p for p in parent.iterdir() if p.name.lower() == name and p.is_dir()]
    return matches[0] if len(matches) == 1 else None


class SmicReader(DatasetReader):
    name, title = "smic", "SMIC-HS"
    sheet_files = ()  # no annotation sheet
    layouts = (CROPPED, RAW, HS, ROOT)
    subject_format = "s{}"
    default_classes = "all"

    def _looks_like_frames_root(self, base: Path) -> bool:
        """The root is the HS folder itself: it holds ``s<N>/micro/``."""
        return base.is_dir() and any(_SUBJECT.fullmatch(p.name) and (p / "micro").is_dir()
                                     for p in base.iterdir())

    def find_sheet(self, root: Path) -> Path:
        raise ManifestError(f"{self.title} has no annotation sheet: its clips are read from "
                            "the folders")

    def read(self, root: str | Path, sheet: str | Path | None = None,
             classes: str | None = None) -> Manifest:
        """The manifest of the SMIC-HS folder at ``root``, read from its clip folders."""
        classes = classes or self.default_classes
        check_class_set(classes, self.name)
        root = Path(root)
        if not root.is_dir():
            raise ManifestError(f"{root}: dataset root is not a folder")
        if sheet is not None:
            raise ManifestError(f"{self.title} has no annotation sheet: its clips are read "
                                f"from the folders; give no sheet (got {sheet})")
        layout, found = self.detect_layout(root)
        hs = root / layout.base if layout.base else root
        rows = self.folder_rows(hs, classes) if found else []
        hint = ""
        if not found:  # a root one folder too high?
            below = [p for p in sorted(root.iterdir()) if p.is_dir()
                     and self.detect_layout(p)[1]]
            if below:
                hint = f"; {below[0]} holds SMIC-HS's folders: is that the --root?"
        return Manifest(
            dataset=self.name, title=self.title, rows=rows, sheet=hs, sheet_name=FOLDERS,
            header_row=0, class_set=classes, classes=class_names(self.name, classes),
            root=root, layout=layout, frames_found=found,
            layouts_tried=[f"{lay.base or '.'}/ ({lay.description})" for lay in self.layouts],
            from_folders=True, apex_annotated=False, hint=hint,
        )

    def clip_folders(self, hs: Path) -> list[tuple[int, str, str, str, Path]]:
        """``(subject number, subject, clip, emotion, folder)`` of every clip folder under
        ``hs``, in (subject number, clip) order."""
        found = []
        for subject in hs.iterdir():
            m = _SUBJECT.fullmatch(subject.name)
            micro = _subfolder(subject, "micro") if m and subject.is_dir() else None
            if micro is None:
                continue
            for emotion in micro.iterdir():
                if emotion.name.lower() not in EMOTIONS or not emotion.is_dir():
                    continue
                found += [(int(m.group(1)), subject.name, clip.name, emotion.name.lower(), clip)
                          for clip in emotion.iterdir() if clip.is_dir()]
        return sorted(found, key=lambda f: (f[0], f[1], f[2], f[3]))

    def folder_rows(self, hs: Path, classes: str) -> list[ManifestRow]:
        """One row per clip folder; ``sheet_row`` is its 1-based place in that order."""
        rows: list[ManifestRow] = []
        first_seen: dict[tuple[str, str], int] = {}
        for index, (_, subject, clip, emotion, folder) in enumerate(self.clip_folders(hs), 1):
            row = self._clip_row(index, subject, clip, emotion, folder, classes)
            key = (row.subject, row.clip)
            if key in first_seen:
                row.add_problem(f"duplicate clip (first as row {first_seen[key]}): not used")
                row.full_ok = False
            else:
                first_seen[key] = index
            rows.append(row)
        return rows

    def _clip_row(self, index: int, subject: str, clip: str, emotion: str, folder: Path,
                  classes: str) -> ManifestRow:
        problems: list[str] = []
        template, numbers, why = frame_pattern(os.listdir(folder))
        onset = offset = n_frames = None
        full_ok = not why
        if why:
            problems.append(why)
        else:
            onset, offset = numbers[0], numbers[-1]
            n_frames = offset - onset + 1
            if onset == offset:
                problems.append(f"one frame file ({template.format(n=onset)}): one frame has "
                                "no motion, no image possible")
                full_ok = False
            elif n_frames > MAX_CLIP_FRAMES:
                problems.append(f"frame numbers run from {onset} to {offset}, "
                                f"{n_frames} frames, more than the {MAX_CLIP_FRAMES} a clip "
                                "may have: frame numbers doubtful, no image possible")
                full_ok, n_frames = False, None
            elif len(numbers) < n_frames:
                present = set(numbers)
                missing = [n for n in range(onset, offset + 1) if n not in present]
                problems.append(missing_frames_problem(onset, offset, template, missing))
                full_ok = False
        label = map_label(self.name, classes, emotion)
        if label is None:
            problems.append(f"emotion {emotion!r} is not in class set {classes!r}")
        row = ManifestRow(
            dataset=self.name, subject=subject, clip=clip, sheet_row=index, onset=onset,
            apex=None, offset=offset, emotion=emotion, label=label or "", action_units="",
            frame_dir=str(folder), frame_template=template, n_frames=n_frames, full_ok=full_ok,
            onset_ok=False, offset_ok=False,
        )
        for text in problems:
            row.add_problem(text)
        return row
