"""The shared sheet reader: rows -> validated, resolved :class:`ManifestRow` records.

A dataset module subclasses :class:`DatasetReader` with what it alone knows: the official
sheet file names, its column spellings, how a subject is spelled on disk, and its frame
folder layouts. Everything else (number parsing, the checks, duplicate detection, class
mapping, frame look-ups) happens here once for all datasets.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mer_di.data_manifest.classes import check_class_set, class_names, map_label, normalise_emotion
from mer_di.data_manifest.records import ManifestRow
from mer_di.data_manifest.sheet import Formula, SheetTable, read_table
from mer_di.errors import ManifestError


@dataclass(frozen=True)
class Layout:
    """One way a dataset's frames are laid out under ``root/base``."""

    name: str
    base: str  # folder under the dataset root ('' = the root itself)
    description: str
    # file name of frame n in a clip folder, a str.format template of n ('{subject}' is
    # replaced by the subject's folder name first)
    template: str


@dataclass
class Manifest:
    """A built manifest and where it came from."""

    dataset: str
    title: str
    rows: list[ManifestRow]
    sheet: Path
    sheet_name: str
    header_row: int
    class_set: str
    classes: list[str]
    root: Path
    layout: Layout
    frames_found: bool  # False when no layout's folder exists under root
    layouts_tried: list[str] = field(default_factory=list)
    # True for a dataset without a sheet (SMIC): ``sheet`` is then the folder its clips
    # were read from, and ``sheet_row`` a running index
    from_folders: bool = False
    apex_annotated: bool = True  # False: the dataset has no apex (SMIC); rows say None
    hint: str = ""  # where the frames were found instead (a --root one folder too high)

    @property
    def problem_rows(self) -> list[ManifestRow]:
        return [r for r in self.rows if r.problems]

    @property
    def source(self) -> str:
        """Where the rows came from, for messages: the sheet, or the clip folders."""
        if self.from_folders:
            if not self.frames_found:
                return f"no clip folders under {self.root} (no annotation sheet)"
            return f"clips read from the folders under {self.sheet} (no annotation sheet)"
        return (f"sheet {self.sheet} (sheet {self.sheet_name!r}, header on row "
                f"{self.header_row})")

    def why_no_clip(self) -> str:
        """'' when some row can make a dynamic image; otherwise why none can, with where
        the sheet and the frames were looked for and, when the sheet sits below the root,
        the root that would fit."""
        if any(r.full_ok for r in self.rows):
            return ""
        if self.from_folders:
            return self._why_no_clip_in_folders()
        frames = (f"frames looked for under {self.frames_root}" if self.frames_found else
                  f"no frame folder under {self.root} (looked for "
                  f"{'; '.join(self.layouts_tried)})")
        why = (f"none of its {len(self.rows)} rows can make an image (first: row "
               f"{self.rows[0].sheet_row} {self.rows[0].key}: {self.rows[0].problems})"
               if self.rows else "it has a header but no rows")
        hint = ""
        if self.sheet.parent.resolve() != self.root.resolve():
            hint = f"; the sheet is in {self.sheet.parent}: is that the --root?"
        return (f"{self.title}: no usable clip: sheet {self.sheet} (sheet {self.sheet_name!r}, "
                f"header on row {self.header_row}): {why}; {frames}{hint}")

    def _why_no_clip_in_folders(self) -> str:
        if not self.frames_found:
            return (f"{self.title}: no usable clip: no clip folder under {self.root} (looked "
                    f"for {'; '.join(self.layouts_tried)}){self.hint}")
        if not self.rows:
            return (f"{self.title}: no usable clip: no clip folder "
                    f"(<subject>/micro/<emotion>/<clip>/) in {self.sheet}")
        first = self.rows[0]
        return (f"{self.title}: no usable clip: {self.source}: none of its {len(self.rows)} "
                f"clips can make an image (first: {first.key}: {first.problems})")

    @property
    def frames_root(self) -> Path:
        return self.root / self.layout.base if self.layout.base else self.root


def parse_frame_number(value: object) -> tuple[int | None, str]:
    """``(number, '')`` for 46, 46.0 or ``'46'``; ``(None, reason)`` otherwise."""
    if isinstance(value, Formula):
        return None, _formula_why(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "missing"
    if isinstance(value, bool):
        return None, f"{value!r} is not a frame number"
    if isinstance(value, int):
        return value, ""
    if isinstance(value, float):
        if value.is_integer():
            return int(value), ""
        return None, f"{value!r} is not a whole frame number"
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.0+)?", text):
        return int(float(text)), ""
    return None, f"{text!r} is not a frame number"


def parse_subject_number(value: object) -> int | None:
    """1, 1.0, ``'01'``, ``'sub01'``, ``'S01'`` -> 1; None when no number is there."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    m = re.fullmatch(r"(?:sub|s)?\s*0*(\d+)(?:\.0+)?", str(value).strip(), flags=re.IGNORECASE)
    return int(m.group(1)) if m else None


# A clip longer than this is a row problem (its frame numbers are wrong), found without
# looking at its frames: 10^5 frames is over eight minutes at 200 fps, far longer than any
# micro-expression (under half a second) or any annotated video of the field.
MAX_CLIP_FRAMES = 100_000
_NAME_BYTES = 255  # a file name's limit on every common file system


def name_problem(what: str, name: str) -> str:
    """Why ``name`` (a subject, clip or emotion from a sheet) can't be a folder name under
    the dataset root ('' when it can): names from a sheet are data, never paths, so a name
    with a separator, ``.``, ``..``, a control character or too many bytes is refused and
    nothing outside the root is ever looked at."""
    if name in (".", ".."):
        return f"{what} {name!r} is not a folder name"
    if "/" in name or "\\" in name:
        return f"{what} {name!r} holds a path separator: a sheet cell is a name, not a path"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{what} {name!r} holds a control character"
    if len(name.encode("utf-8", "surrogatepass")) > _NAME_BYTES:
        return f"{what} of {len(name)} characters is longer than a folder name can be"
    return ""


def missing_frames_problem(onset: int, offset: int, template: str, missing: list[int]) -> str:
    """The row problem of frame files ``missing`` (sorted) in ``[onset, offset]``."""
    return (f"frame files missing in [{onset}, {offset}]: {len(missing)} of "
            f"{offset - onset + 1} (first: {template.format(n=missing[0])}): "
            "no image possible")


def _formula_why(formula: str) -> str:
    return (f"is a formula without a stored value ({formula}): open the sheet in Excel or "
            "LibreOffice and save it, so its values are stored")


def cell_text(value: object) -> str:
    """A cell as text: ``12`` -> ``'12'``, ``12.0`` -> ``'12'``, None -> ``''``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class DatasetReader:
    """Base reader; subclasses set the class attributes and the folder rules."""

    name: str = ""
    title: str = ""
    sheet_files: tuple[str, ...] = ()
    # canonical column -> accepted header spellings (case, spaces and underscores are
    # ignored, so 'Onset Frame' is 'OnsetFrame'): the official sheets of CASME II, SAMM
    # and MMEW all use these names
    required_columns: dict[str, tuple[str, ...]] = {
        "subject": ("Subject",),
        "clip": ("Filename",),
        "onset": ("OnsetFrame",),
        "apex": ("ApexFrame",),
        "offset": ("OffsetFrame",),
        "emotion": ("Estimated Emotion",),
    }
    optional_columns: dict[str, tuple[str, ...]] = {"action_units": ("Action Units",)}
    layouts: tuple[Layout, ...] = ()
    subject_format: str = "{}"  # a subject's folder name from its number ("sub{:02d}")
    default_classes: str = "five"  # the class set a manifest takes unless told otherwise

    # -- what a dataset module provides -------------------------------------------
    def subject_folder(self, number: int) -> str:
        """The subject's folder name on disk for subject number ``number``."""
        return self.subject_format.format(number)

    def subject_name(self, value: object) -> str | None:
        """The subject's folder name for a sheet's ``Subject`` cell; None when the cell
        names no subject (default: its number, spelled by :meth:`subject_folder`)."""
        number = parse_subject_number(value)
        return None if number is None else self.subject_folder(number)

    def parse_frame(self, column: str, value: object) -> tuple[int | None, str]:
        """A frame-number cell of ``column`` (onset, apex, offset): ``(number, '')`` or
        ``(None, why)`` (default: :func:`parse_frame_number`)."""
        return parse_frame_number(value)

    def clip_dirs(self, frames_root: Path, layout: Layout, subject: str, clip: str,
                  emotion: str) -> list[Path]:
        """Candidate clip folders, the preferred one first (usually just one)."""
        return [frames_root / subject / clip]

    def frame_template(self, layout: Layout, subject: str, clip: str) -> str:
        """File name of frame ``n`` inside a clip folder, as a ``str.format`` template."""
        return layout.template.replace("{subject}", subject)

    def row_checks(self, row: ManifestRow, cells: dict[str, object]) -> list[str]:
        """Extra, dataset-specific problems of a row (default: none)."""
        return []

    # -- shared machinery -------------------------------------------------------------
    def find_sheet(self, root: Path) -> Path:
        """The official annotation sheet in ``root`` or one folder below it."""
        for name in self.sheet_files:
            for candidate in [root / name, *sorted(root.glob(f"*/{name}"))]:
                if candidate.is_file():
                    return candidate
        raise ManifestError(
            f"no {self.title} annotation sheet in {root}: looked for "
            f"{', '.join(self.sheet_files)} there and one folder below; give it with --sheet"
        )

    def detect_layout(self, root: Path) -> tuple[Layout, bool]:
        """The first layout whose base folder exists, and whether one did."""
        for layout in self.layouts:
            base = root / layout.base if layout.base else root
            if layout.base and base.is_dir():
                return layout, True
            if not layout.base and self._looks_like_frames_root(base):
                return layout, True
        return self.layouts[0], False

    def _looks_like_frames_root(self, base: Path) -> bool:
        """For a layout whose base is the root itself: does it hold subject folders?"""
        if not base.is_dir():
            return False
        return any(p.is_dir() and self.subject_name(p.name) == p.name for p in base.iterdir())

    def read(self, root: str | Path, sheet: str | Path | None = None,
             classes: str | None = None) -> Manifest:
        """Build the manifest of the dataset at ``root`` from its annotation sheet
        (``classes`` None: the dataset's :attr:`default_classes`)."""
        classes = classes or self.default_classes
        check_class_set(classes, self.name)
        root = Path(root)
        if not root.is_dir():
            raise ManifestError(f"{root}: dataset root is not a folder")
        sheet_path = Path(sheet) if sheet is not None else self.find_sheet(root)
        table = self.read_sheet(sheet_path)
        layout, found = self.detect_layout(root)
        frames_root = root / layout.base if layout.base else root
        rows = self.sheet_rows(table, frames_root, layout, classes)
        emotions = [r.emotion for r in rows]
        return Manifest(
            dataset=self.name, title=self.title, rows=rows, sheet=sheet_path,
            sheet_name=table.sheet_name, header_row=table.header_row, class_set=classes,
            classes=class_names(self.name, classes, emotions), root=root, layout=layout,
            frames_found=found,
            layouts_tried=[f"{lay.base or '.'}/ ({lay.description})" for lay in self.layouts],
        )

    def read_sheet(self, path: Path) -> SheetTable:
        """The annotation table of the sheet at ``path`` (found by its column names)."""
        return read_table(path, self.required_columns, self.optional_columns)

    def sheet_rows(self, table: SheetTable, frames_root: Path, layout: Layout,
                   classes: str) -> list[ManifestRow]:
        """One checked row per table row with a subject, resolved under ``frames_root`` in
        ``layout``; a second row of the same clip is a duplicate, not used."""
        check_class_set(classes, self.name)
        rows: list[ManifestRow] = []
        first_seen: dict[tuple[str, str], int] = {}
        for excel_row, cells in table.rows:
            if cell_text(cells.get("subject")) == "":
                continue  # junk and blank rows at the end of some copies
            row = self._row(excel_row, cells, frames_root, layout, classes)
            key = (row.subject, row.clip)
            if key in first_seen:
                row.add_problem(f"duplicate clip (first on sheet row {first_seen[key]}): not used")
                row.full_ok = row.onset_ok = row.offset_ok = False
            else:
                first_seen[key] = excel_row
            rows.append(row)
        return rows

    def _row(self, excel_row: int, cells: dict[str, object], frames_root: Path,
             layout: Layout, classes: str) -> ManifestRow:
        problems: list[str] = []
        for column in ("subject", "clip", "emotion"):  # names: a formula is no name
            if isinstance(cells.get(column), Formula):
                spelled = self.required_columns.get(column, (column,))[0]
                problems.append(f"{spelled} {_formula_why(cells[column])}")
                cells = {**cells, column: None}
        raw_subject = cells.get("subject")
        named = self.subject_name(raw_subject)
        if named is None:
            subject = cell_text(raw_subject)
            problems.append(f"subject {subject!r} is not a subject number: no image possible")
        else:
            subject = named
        clip = cell_text(cells.get("clip"))
        if not clip:
            problems.append("filename missing: no image possible")
        emotion = cell_text(cells.get("emotion"))
        # names that reach a path: never looked up when not a plain folder name
        bad_names = [why for why in (name_problem("subject", subject) if named else "",
                                     name_problem("filename", clip) if clip else "",
                                     name_problem("emotion", emotion) if emotion else "")
                     if why]
        problems += [f"{why}: not used" for why in bad_names]

        onset, onset_why = self.parse_frame("onset", cells.get("onset"))
        apex, apex_why = self.parse_frame("apex", cells.get("apex"))
        offset, offset_why = self.parse_frame("offset", cells.get("offset"))
        full_ok = named is not None and bool(clip) and not bad_names
        if onset is None:
            problems.append(f"onset {onset_why}: no image possible")
            full_ok = False
        if offset is None:
            problems.append(f"offset {offset_why}: no image possible")
            full_ok = False
        n_frames = None
        if onset is not None and offset is not None:
            if onset > offset:
                problems.append(f"onset {onset} > offset {offset}: no image possible")
                full_ok = False
            elif onset == offset:
                problems.append(f"onset == offset ({onset}): one frame has no motion, "
                                "no image possible")
                full_ok = False
                n_frames = 1
            elif offset - onset + 1 > MAX_CLIP_FRAMES:
                problems.append(f"onset {onset} to offset {offset} is {offset - onset + 1} "
                                f"frames, more than the {MAX_CLIP_FRAMES} a clip may have: "
                                "frame numbers doubtful, no image possible")
                full_ok = False
            else:
                n_frames = offset - onset + 1

        if bad_names:
            frame_dir, template = Path(), ""  # a bad name is never joined to a path
        else:
            candidates = self.clip_dirs(frames_root, layout, subject, clip, emotion)
            frame_dir = next((d for d in candidates if d.is_dir()), candidates[0])
            template = self.frame_template(layout, subject, clip)
        if named is not None and clip and not bad_names:
            if not frame_dir.is_dir():
                problems.append(f"clip folder missing: {frame_dir}")
                full_ok = False
            elif n_frames:
                present = set(os.listdir(frame_dir))
                missing = [n for n in range(onset, offset + 1)
                           if template.format(n=n) not in present]
                if missing:
                    problems.append(missing_frames_problem(onset, offset, template, missing))
                    full_ok = False

        onset_ok = offset_ok = full_ok
        if apex is None:
            problems.append(f"apex {apex_why}: no onset or offset image"
                            + (" (full image possible)" if full_ok else ""))
            onset_ok = offset_ok = False
        elif onset is not None and offset is not None and onset <= offset:
            if not onset <= apex <= offset:
                side = "before onset" if apex < onset else "after offset"
                problems.append(f"apex {apex} {side} (outside [{onset}, {offset}]): "
                                "no onset or offset image"
                                + (" (full image possible)" if full_ok else ""))
                onset_ok = offset_ok = False
            elif onset < offset:
                if apex == onset:
                    problems.append(f"apex == onset ({apex}): the onset phase is one frame, "
                                    "no onset image"
                                    + (" (full and offset images possible)" if full_ok else ""))
                    onset_ok = False
                if apex == offset:
                    problems.append(f"apex == offset ({apex}): the offset phase is one frame, "
                                    "no offset image"
                                    + (" (full and onset images possible)" if full_ok else ""))
                    offset_ok = False

        label = map_label(self.name, classes, emotion) if emotion else None
        if not emotion:
            problems.append("emotion missing")
        elif label is None:
            problems.append(f"emotion {normalise_emotion(emotion)!r} is not in class set "
                            f"{classes!r}")

        row = ManifestRow(
            dataset=self.name, subject=subject, clip=clip, sheet_row=excel_row,
            onset=onset, apex=apex, offset=offset, emotion=emotion, label=label or "",
            action_units=cell_text(cells.get("action_units")), frame_dir=str(frame_dir),
            frame_template=template, n_frames=n_frames, full_ok=full_ok, onset_ok=onset_ok,
            offset_ok=offset_ok,
        )
        for text in [*problems, *self.row_checks(row, cells)]:
            row.add_problem(text)
        return row
