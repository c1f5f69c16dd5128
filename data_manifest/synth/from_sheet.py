"""``mer-prep synth --from-sheet``: draw frames for every row of a real annotation sheet.

The generated dataset is named exactly as the real one: the sheet's subjects, clips, frame
numbers and labels, read by the dataset's own reader (so folders and file names are the
reader's), frames drawn for each row (a few frames around onset..offset where the real
folders have them), and the sheet copied into the root under its official file name, so
``mer-prep manifest`` reads it back. A row the generator cannot draw (a missing or
non-numeric frame number, onset > offset, more than :data:`MAX_DRAWN` frames, a name that
is no folder name, a duplicate) is reported by row and left without frames, so the reader
reports it too.

SMIC has no sheet: its rows come from MEGC2019's ``combined_3class_gt.csv`` (no header;
``dataset,subject,filename,class``; 0 negative, 1 positive, 2 surprise), whose zero-padded
names become the folders' (``s01`` -> ``s1``, ``s01_ne_01`` -> ``s1_ne_01``); the frame
numbers, which it does not give, are drawn as in :mod:`.smic`.
"""

from __future__ import annotations

import csv
import re
import shutil
import zlib
from pathlib import Path

import numpy as np

from mer_di.data_manifest.classes import MEGC_CLASSES, normalise_emotion
from mer_di.data_manifest.reader import cell_text
from mer_di.data_manifest.records import ManifestRow
from mer_di.data_manifest.sheet import _csv_text
from mer_di.data_manifest.synth.faces import MOTIONS, random_look
from mer_di.data_manifest.synth.generate import (
    GROUND_TRUTH,
    GT_FIELDS,
    SynthResult,
    _write_frames,
    check_arguments,
    write_atomically,
)
from mer_di.data_manifest.synth.registry import get_spec
from mer_di.data_manifest.synth.render import render_clip
from mer_di.data_manifest.synth.spec import PlannedClip, SynthSpec
from mer_di.errors import ManifestError, SynthError

MAX_DRAWN = 400  # frames: the longest real clip of CASME II is 141, of SAMM 101
PAD = (1, 4)     # frames drawn before onset and after offset, where real folders have them


def generate_from_sheet(dataset: str, out: str | Path, sheet: str | Path,
                        frame_size: tuple[int, int] | None = None,
                        length: tuple[int, int] | None = None, layout: str | None = None,
                        seed: int = 0, progress: bool = False) -> SynthResult:
    """Write a look-alike ``dataset`` with the rows of a real ``sheet`` into ``out``.

    Parameters
    ----------
    dataset : str
        ``casme2``, ``samm``, ``mmew``, ``casme3`` (their official sheet), or ``smic``
        (MEGC2019's ``combined_3class_gt.csv``: its ``smic`` rows).
    out : str or Path
        A folder to create (absent or empty); written under a temporary name and renamed
        when whole.
    sheet : str or Path
        The real sheet (.xlsx or .csv), copied into ``out`` under the dataset's official
        file name.
    frame_size : (int, int), optional
        Frame width and height (default: the dataset's; small frames keep it quick).
    length : (int, int), optional
        SMIC only (its rows give no frame numbers): shortest and longest clip, frames.
    layout : str, optional
        One of the reader's frame layouts (default: its first).
    seed : int
        The same seed gives the same bytes.
    progress : bool
        A progress bar over clips.

    Returns
    -------
    result : SynthResult
        The clips drawn (``clips``), the rows left without frames (``not_drawn``), the
        copied sheet; ``out/synth_ground_truth.csv`` lists every row, drawn or not.

    Raises
    ------
    SynthError
        An unknown dataset or layout, a sheet that is not there or not one of the dataset,
        ``length`` for a dataset whose sheet gives frame numbers, an ``out`` not empty.
    """
    spec = get_spec(dataset)
    layout, frame_size, out = check_arguments(spec, out, layout, frame_size)
    sheet = Path(sheet)
    if not sheet.is_file():
        raise SynthError(f"{sheet}: no such sheet")
    rng = np.random.default_rng([seed, 0])
    if spec.has_sheet:
        if length is not None:
            raise SynthError(f"--length does not apply with --from-sheet for {dataset}: the "
                             "sheet gives every clip's frame numbers")
        copied_name = _official_name(spec, sheet)

        def plan(tmp: Path) -> tuple[list[PlannedClip], list[tuple[int, str, str]]]:
            shutil.copyfile(sheet, tmp / copied_name)
            return _sheet_plan(spec, tmp / copied_name, tmp, layout, rng)
    else:
        length = length or spec.length
        if length[0] < 5:
            raise SynthError("clips need at least 5 frames from onset to offset")

        def plan(tmp: Path) -> tuple[list[PlannedClip], list[tuple[int, str, str]]]:
            return _smic_plan(spec, sheet, tmp, layout, length, rng)

    result: dict[str, object] = {}

    def write(tmp: Path) -> tuple[Path, int]:
        clips, not_drawn = plan(tmp)
        result.update(clips=clips, not_drawn=not_drawn)
        drawn = [c for c in clips if not c.quirk]
        subjects = list(dict.fromkeys(c.subject for c in clips))
        looks = {s: random_look(np.random.default_rng([seed, 1, i]))
                 for i, s in enumerate(subjects)}
        n_written = _render(spec, layout, looks, drawn, frame_size, seed, progress, tmp, out)
        _write_truth(tmp / GROUND_TRUTH, clips)
        if spec.has_sheet:
            return tmp / copied_name, n_written
        found, _ = spec.reader.detect_layout(tmp)
        return (tmp / found.base if found.base else tmp), n_written

    copied, n_written = write_atomically(out, write)
    clips = result["clips"]
    return SynthResult(out, copied, [c for c in clips if not c.quirk], n_written,
                       has_sheet=spec.has_sheet, source=sheet, not_drawn=result["not_drawn"])


def _official_name(spec: SynthSpec, sheet: Path) -> str:
    """The reader's official file name the sheet is copied under: its own when it is one,
    else the first with its suffix."""
    names = spec.reader.sheet_files
    if sheet.name in names:
        return sheet.name
    same_kind = [n for n in names if Path(n).suffix.lower() == sheet.suffix.lower()]
    if not same_kind:
        raise SynthError(f"{sheet}: a {sheet.suffix or 'suffixless'} file cannot stand for "
                         f"{spec.reader.title}'s sheet ({', '.join(names)}); save it as "
                         f"{Path(names[0]).suffix}")
    return same_kind[0]


def _why_not_drawn(row: ManifestRow) -> str:
    """'' when the reader's ``row`` can be drawn; otherwise why not (in the reader's words
    where it has them)."""
    for problem in row.problem_list:  # names that are no folder names, duplicates
        if problem.endswith(": not used") or problem.startswith(("subject ",
                                                                  "filename missing")):
            return problem
    if row.onset is None or row.offset is None or row.onset > row.offset:
        return next((p for p in row.problem_list if p.startswith(("onset", "offset"))),
                    "no frame numbers")
    if row.offset - row.onset + 1 > MAX_DRAWN:
        return (f"onset {row.onset} to offset {row.offset} is {row.offset - row.onset + 1} "
                f"frames, more than the {MAX_DRAWN} the generator draws")
    return ""


def _motion(spec: SynthSpec, emotion: str) -> str:
    """The spec's motion of ``emotion``; one chosen by the name for any other emotion."""
    norm = normalise_emotion(emotion)
    if norm in spec.motions:
        return spec.motions[norm]
    names = sorted(MOTIONS)
    return names[zlib.crc32(norm.encode()) % len(names)]


def _sheet_plan(spec: SynthSpec, sheet: Path, tmp: Path, layout: str,
                rng: np.random.Generator) -> tuple[list[PlannedClip], list[tuple[int, str, str]]]:
    """Every row the reader reads from ``sheet``, resolved under ``tmp`` (where the frames
    will be), as a planned clip; rows that cannot be drawn carry their reason as ``quirk``
    and are listed ``(row, subject/clip, why)``."""
    reader = spec.reader
    lay = next(x for x in reader.layouts if x.name == layout)
    try:
        table = reader.read_sheet(sheet)
    except ManifestError as exc:
        raise SynthError(f"--from-sheet: {exc}") from None
    rows = reader.sheet_rows(table, tmp / lay.base if lay.base else tmp, lay, "all")
    clips: list[PlannedClip] = []
    not_drawn: list[tuple[int, str, str]] = []
    for row in rows:
        why = _why_not_drawn(row)
        onset, offset = row.onset or 0, row.offset or 0
        pre = post = 0
        if not why and spec.pad_frames:
            pre = min(int(rng.integers(*PAD)), onset)
            post = int(rng.integers(*PAD))
        apex = row.apex if row.apex is not None and onset <= row.apex <= offset \
            else (onset + offset) // 2
        clip = PlannedClip(
            subject_number=0, subject=row.subject, clip=row.clip, emotion=row.emotion,
            motion=_motion(spec, row.emotion), amplitude=float(rng.uniform(1.0, 2.0)),
            onset=onset, apex=apex, offset=offset, first_frame=onset - pre,
            last_frame=offset + post, sheet_apex=row.apex, quirk=f"not drawn: {why}" if why
            else "", sheet_row=row.sheet_row, frame_dir=Path(row.frame_dir),
            frame_template=row.frame_template)
        clips.append(clip)
        if why:
            not_drawn.append((row.sheet_row, row.key, why))
    return clips, not_drawn


def _smic_plan(spec: SynthSpec, sheet: Path, tmp: Path, layout: str, length: tuple[int, int],
               rng: np.random.Generator) -> tuple[list[PlannedClip], list[tuple[int, str, str]]]:
    """The ``smic`` rows of MEGC2019's composite ground truth as planned clips."""
    try:
        text = _csv_text(sheet) if sheet.suffix.lower() == ".csv" else None
    except ManifestError as exc:
        raise SynthError(f"--from-sheet: {exc}") from None
    if text is None:
        raise SynthError(f"{sheet}: SMIC has no annotation sheet; --from-sheet takes MEGC2019's "
                         "combined_3class_gt.csv (dataset,subject,filename,class)")
    lines = [(i, [cell.strip() for cell in rec])
             for i, rec in enumerate(csv.reader(text.splitlines()), 1) if rec]
    smic = [(i, rec) for i, rec in lines if rec[0].lower() == "smic"]
    if not smic:
        raise SynthError(f"{sheet}: no smic rows; --from-sheet for smic takes MEGC2019's "
                         "combined_3class_gt.csv (dataset,subject,filename,class)")
    entries, not_drawn = [], []
    for line, rec in smic:
        subject, clip, why = _smic_names(rec)
        cls = rec[3] if len(rec) > 3 else ""
        if not why and not re.fullmatch(r"[012]", cls):
            why = f"class {cls!r} is not 0, 1 or 2"
        if not why and any(e[1] == subject and e[2] == clip for e in entries):
            why = "duplicate clip"
        if why:
            not_drawn.append((line, f"{subject}/{clip}", why))
            continue
        entries.append((int(subject[1:]), subject, clip, MEGC_CLASSES[int(cls)], line))
    entries.sort()
    lay = next(x for x in spec.reader.layouts if x.name == layout)
    clips = []
    for index, (number, subject, clip, emotion, _) in enumerate(entries, 1):
        n = int(rng.integers(length[0], length[1] + 1))
        onset = int(rng.integers(10_000, 90_000))
        offset = onset + n - 1
        apex = int(np.clip(onset + round(rng.uniform(0.3, 0.7) * (n - 1)), onset + 2,
                           offset - 2))
        base = tmp / lay.base if lay.base else tmp
        clips.append(PlannedClip(
            subject_number=number, subject=subject, clip=clip, emotion=emotion,
            motion=spec.motions[emotion], amplitude=float(rng.uniform(1.0, 2.0)), onset=onset,
            apex=apex, offset=offset, first_frame=onset, last_frame=offset, sheet_apex=None,
            sheet_row=index, frame_dir=base / subject / "micro" / emotion / clip,
            frame_template=spec.frame_template(layout)))
    return clips, not_drawn


def _smic_names(rec: list[str]) -> tuple[str, str, str]:
    """``(subject folder, clip folder, '')`` of a composite row (``s01``, ``s01_ne_01`` ->
    ``s1``, ``s1_ne_01``), or the reason the row has none."""
    if len(rec) < 3:
        return "", "", f"{len(rec)} fields, not dataset,subject,filename,class"
    m_subject = re.fullmatch(r"s0*(\d+)", rec[1], re.IGNORECASE)
    m_clip = re.fullmatch(r"s0*(\d+)(_[A-Za-z]+_\d+)", rec[2], re.IGNORECASE)
    if not m_subject or not m_clip:
        return rec[1], rec[2], "subject or filename is not SMIC's s<N> / s<N>_<code>_<k>"
    subject = f"s{int(m_subject.group(1))}"
    clip = f"s{int(m_clip.group(1))}{m_clip.group(2)}"
    if int(m_clip.group(1)) != int(m_subject.group(1)):
        return subject, clip, f"filename {rec[2]!r} is not of subject {rec[1]!r}"
    return subject, clip, ""


def _render(spec: SynthSpec, layout: str, looks: dict, clips: list[PlannedClip],
            frame_size: tuple[int, int], seed: int, progress: bool, tmp: Path,
            out: Path) -> int:
    """Draw and write the planned clips into their ``frame_dir`` under ``tmp``; each
    ``frame_dir`` is then given under ``out``."""
    bar = None
    if progress:
        from mer_di._progress import progress_bar

        bar = progress_bar(len(clips), f"synth {spec.name} --from-sheet", "clip")
    n_written = 0
    for i, clip in enumerate(clips):
        frames = render_clip(spec, layout, looks[clip.subject], clip, frame_size,
                             np.random.default_rng([seed, 2, i]))
        n_written += _write_frames(clip.frame_dir, clip.frame_template, frames, clip.clip)
        clip.frame_dir = out / clip.frame_dir.relative_to(tmp)
        if bar:
            bar.update()
    if bar:
        bar.close()
    return n_written


def _write_truth(path: Path, clips: list[PlannedClip]) -> None:
    """Every row, drawn or not (``quirk``: 'not drawn: why'); frame columns blank for a
    row without frames."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(GT_FIELDS)
        for c in clips:
            drawn = not c.quirk
            w.writerow([c.subject, c.clip, c.sheet_row,
                        c.onset if drawn else "", cell_text(c.sheet_apex),
                        c.offset if drawn else "", c.emotion,
                        c.offset - c.onset + 1 if drawn else "",
                        c.first_frame if drawn else "", c.last_frame if drawn else "",
                        c.apex if drawn else "", c.motion, f"{c.amplitude:.3f}", c.quirk])
