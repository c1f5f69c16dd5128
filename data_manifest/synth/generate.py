"""``mer-prep synth``: write a look-alike dataset in an official layout.

The plan (which clips, their frame numbers, motions and planted quirks) is drawn first
from the seed; every clip's frames then come from a generator seeded by (seed, clip
index), so the same seed gives the same bytes. The dataset is written into a temporary
sibling folder and renamed into place at the end, so an interrupted run never leaves a
folder that looks complete.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mer_di._paths import check_writable
from mer_di.data_manifest.synth.faces import random_look
from mer_di.data_manifest.synth.registry import get_spec
from mer_di.data_manifest.synth.render import render_clip
from mer_di.data_manifest.synth.spec import PlannedClip, SynthSpec
from mer_di.errors import SynthError

GROUND_TRUTH = "synth_ground_truth.csv"
GT_FIELDS = ["subject", "clip", "sheet_row", "onset", "apex", "offset", "emotion", "n_frames",
             "first_frame", "last_frame", "true_apex", "motion", "amplitude_px", "quirk"]
JPEG_QUALITY = 95


@dataclass
class SynthResult:
    """What :func:`generate_dataset` wrote: the dataset folder, its sheet (for a dataset
    without one, SMIC: the folder its clips are read from), the planned clips (with their
    final frame folders) and the number of frame files. From a real sheet
    (:func:`~mer_di.data_manifest.synth.from_sheet.generate_from_sheet`): ``source`` is that
    sheet and ``not_drawn`` lists ``(sheet row, subject/clip, why)`` of the rows left
    without frames."""

    root: Path
    sheet: Path
    clips: list[PlannedClip]
    n_frames_written: int
    has_sheet: bool = True
    source: Path | None = None
    not_drawn: list[tuple[int, str, str]] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"wrote {len(self.clips)} clips ({self.n_frames_written} frames) to {self.root}"]
        if self.source is not None:
            lines.append(f"from the rows of {self.source}")
        lines += [f"sheet: {self.sheet}" if self.has_sheet else
                  f"no annotation sheet: the clips are read from the folders under {self.sheet}",
                  f"ground truth: {self.root / GROUND_TRUTH}"]
        if self.source is not None:
            lines.append(f"rows left without frames ({len(self.not_drawn)}):"
                         if self.not_drawn else "rows left without frames: none")
            lines += [f"  row {row}  {key}: {why}" for row, key, why in self.not_drawn]
            return "\n".join(lines)
        lines.append("planted quirks:")
        lines += [f"  {'sheet row' if self.has_sheet else 'clip'} {c.sheet_row}  "
                  f"{c.subject}/{c.clip}: {c.quirk}" for c in self.clips if c.quirk]
        return "\n".join(lines)


def generate_dataset(dataset: str, out: str | Path, subjects: int = 6, clips_per_class: int = 2,
                     frame_size: tuple[int, int] | None = None,
                     length: tuple[int, int] | None = None, layout: str | None = None,
                     seed: int = 0, progress: bool = False) -> SynthResult:
    """Write a look-alike ``dataset`` in its official layout into ``out``.

    Parameters
    ----------
    dataset : str
        ``casme2``, ``samm``, ``mmew``, ``smic`` or ``casme3``.
    out : str or Path
        A folder to create (absent or empty); written under a temporary name and renamed
        when whole.
    subjects : int
        Subjects, each with its own look.
    clips_per_class : int
        Clips of each emotion of the dataset's default class set per subject (CASME II,
        SAMM, MMEW: the five classes, and the last subject also gets one clip outside
        them; SMIC: its three; CAS(ME)^3: its seven emotions).
    frame_size : (int, int), optional
        Frame width and height in pixels (default: the dataset's).
    length : (int, int), optional
        Shortest and longest clip, frames from onset to offset (default: the dataset's).
    layout : str, optional
        One of the reader's frame layouts (default: its first).
    seed : int
        The same seed gives the same bytes.
    progress : bool
        A progress bar over clips.

    Returns
    -------
    result : SynthResult
        ``root``, ``sheet``, the planned ``clips`` (sheet values, true apex and motion,
        planted quirks) and the frames written; ``root/synth_ground_truth.csv`` holds the
        same per clip.

    Raises
    ------
    SynthError
        An unknown dataset or layout, too short clips, or an ``out`` that is not empty.
    """
    spec = get_spec(dataset)
    layout, frame_size, out = check_arguments(spec, out, layout, frame_size)
    length = length or spec.length
    if length[0] < 5:
        raise SynthError("clips need at least 5 frames from onset to offset")

    rng = np.random.default_rng([seed, 0])
    looks = {spec.subject_folder(spec.subject_number(s)):
             random_look(np.random.default_rng([seed, 1, s])) for s in range(subjects)}
    clips = spec.plan(subjects, clips_per_class, length, rng)

    def write(tmp: Path) -> tuple[Path, int]:
        n_written = render_clips(spec, tmp, out, layout, looks, clips, frame_size, seed,
                                 progress)
        n_written += spec.write_extras(tmp, layout, frame_size, seed, clips)
        sheet = spec.write_sheet(tmp, clips)
        write_ground_truth(tmp / GROUND_TRUTH, clips, spec.extra_gt_fields)
        return sheet, n_written

    sheet, n_written = write_atomically(out, write)
    return SynthResult(out, sheet, clips, n_written, has_sheet=spec.has_sheet)


def check_arguments(spec: SynthSpec, out: str | Path, layout: str | None,
                    frame_size: tuple[int, int] | None) -> tuple[str, tuple[int, int], Path]:
    """``(layout, frame size, out)`` with the spec's defaults, or :class:`SynthError`."""
    check_writable(out, folder=True)
    layout = layout or spec.layouts[0]
    if layout not in spec.layouts:
        raise SynthError(f"{spec.name} has no layout {layout!r}; choose "
                         f"{', '.join(spec.layouts)}")
    frame_size = frame_size or spec.frame_size
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SynthError(f"{out} exists and is not an empty folder; choose a new --out")
    return layout, frame_size, out


def write_atomically(out: Path, write):
    """Run ``write(tmp)`` on a temporary sibling of ``out`` and rename it into place; on
    any failure (an interrupt included) nothing is left. Paths under ``tmp`` in what
    ``write`` returns first are given under ``out``."""
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        sheet, *rest = write(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return (out / Path(sheet).relative_to(tmp), *rest)


def render_clips(spec: SynthSpec, tmp: Path, out: Path, layout: str, looks: dict,
                 clips: list[PlannedClip], frame_size: tuple[int, int], seed: int,
                 progress: bool) -> int:
    """Draw and write every clip's frames under ``tmp`` (clip ``i`` from the generator
    seeded by ``(seed, 2, i)``); each clip's ``frame_dir`` is set under ``out``."""
    bar = None
    if progress:
        from mer_di._progress import progress_bar

        bar = progress_bar(len(clips), f"synth {spec.name}", "clip")
    n_written = 0
    for i, clip in enumerate(clips):
        folder, template = spec.frame_location(tmp, layout, clip)
        frames = render_clip(spec, layout, looks[clip.subject], clip, frame_size,
                             np.random.default_rng([seed, 2, i]))
        n_written += _write_frames(folder, template, frames, clip.clip, clip.missing_frames)
        final_folder, template = spec.frame_location(out, layout, clip)
        clip.frame_dir, clip.frame_template = final_folder, template
        if bar:
            bar.update()
    if bar:
        bar.close()
    return n_written


def _write_frames(folder: Path, template: str, frames: Iterable[tuple[int, np.ndarray]],
                  clip: str, skip: tuple[int, ...] = ()) -> int:
    """Write ``(frame number, uint8 image)`` pairs as image files of the template's kind
    (JPEG, BMP, PNG), all but the numbers in ``skip``; the number written."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(template).suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix in (".jpg", ".jpeg") else []
    count = 0
    for n, img in frames:
        if n in skip:
            continue
        ok, buf = cv2.imencode(suffix, img, params)
        if not ok:
            raise SynthError(f"{suffix} encoding failed for {clip} frame {n}")
        (folder / template.format(n=n)).write_bytes(buf.tobytes())
        count += 1
    return count


def write_ground_truth(path: Path, clips: list[PlannedClip],
                       extra_fields: tuple[str, ...] = ()) -> None:
    """One row per clip: its sheet values (``apex`` blank where the sheet has none), the
    frames on disk, the true apex and motion, and its planted quirk; ``extra_fields`` are
    columns after those, taken from each clip's ``sheet_cells``."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*GT_FIELDS, *extra_fields])
        for c in clips:
            sheet_apex = c.sheet_apex if isinstance(c.sheet_apex, int) else ""
            w.writerow([c.subject, c.clip, c.sheet_row, c.onset, sheet_apex, c.offset, c.emotion,
                        c.offset - c.onset + 1, c.first_frame, c.last_frame, c.apex, c.motion,
                        f"{c.amplitude:.3f}", c.quirk,
                        *(c.sheet_cells.get(f, "") for f in extra_fields)])


def read_ground_truth(root: str | Path) -> list[dict[str, str]]:
    """The ground truth rows a generated dataset carries (``synth_ground_truth.csv``)."""
    with (Path(root) / GROUND_TRUTH).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
