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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mer_di._paths import check_writable
from mer_di.data_manifest.synth.faces import random_look
from mer_di.data_manifest.synth.plan import plan_clips
from mer_di.data_manifest.synth.registry import get_spec
from mer_di.data_manifest.synth.render import render_clip
from mer_di.data_manifest.synth.spec import PlannedClip
from mer_di.errors import SynthError

GROUND_TRUTH = "synth_ground_truth.csv"
GT_FIELDS = ["subject", "clip", "sheet_row", "onset", "apex", "offset", "emotion", "n_frames",
             "first_frame", "last_frame", "true_apex", "motion", "amplitude_px", "quirk"]
JPEG_QUALITY = 95


@dataclass
class SynthResult:
    """What :func:`generate_dataset` wrote: the dataset folder, its sheet, the planned clips
    (with their final frame folders) and the number of frame files."""

    root: Path
    sheet: Path
    clips: list[PlannedClip]
    n_frames_written: int

    def describe(self) -> str:
        lines = [f"wrote {len(self.clips)} clips ({self.n_frames_written} frames) to {self.root}",
                 f"sheet: {self.sheet}", f"ground truth: {self.root / GROUND_TRUTH}",
                 "planted quirks:"]
        lines += [f"  sheet row {c.sheet_row}  {c.subject}/{c.clip}: {c.quirk}"
                  for c in self.clips if c.quirk]
        return "\n".join(lines)


def generate_dataset(dataset: str, out: str | Path, subjects: int = 6, clips_per_class: int = 2,
                     frame_size: tuple[int, int] | None = None,
                     length: tuple[int, int] | None = None, layout: str | None = None,
                     seed: int = 0, progress: bool = False) -> SynthResult:
    """Write a look-alike ``dataset`` in its official layout into ``out``.

    Parameters
    ----------
    dataset : str
        ``casme2``, ``samm`` or ``mmew``.
    out : str or Path
        A folder to create (absent or empty); written under a temporary name and renamed
        when whole.
    subjects : int
        Subjects, each with its own look.
    clips_per_class : int
        Clips of each of the five classes per subject (the last subject also gets one
        clip outside the five).
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
    check_writable(out, folder=True)
    layout = layout or spec.layouts[0]
    if layout not in spec.layouts:
        raise SynthError(f"{dataset} has no layout {layout!r}; choose {', '.join(spec.layouts)}")
    frame_size = frame_size or spec.frame_size
    length = length or spec.length
    if length[0] < 5:
        raise SynthError("clips need at least 5 frames from onset to offset")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SynthError(f"{out} exists and is not an empty folder; choose a new --out")

    rng = np.random.default_rng([seed, 0])
    looks = {spec.subject_folder(spec.subject_number(s)):
             random_look(np.random.default_rng([seed, 1, s])) for s in range(subjects)}
    clips = plan_clips(spec, subjects, clips_per_class, length, rng)

    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_written = 0
    try:
        bar = None
        if progress:
            from mer_di._progress import progress_bar

            bar = progress_bar(len(clips), f"synth {dataset}", "clip")
        for i, clip in enumerate(clips):
            folder, template = spec.frame_location(tmp, layout, clip)
            frames = render_clip(spec, layout, looks[clip.subject], clip, frame_size,
                                 np.random.default_rng([seed, 2, i]))
            n_written += _write_frames(folder, template, frames, clip.clip)
            final_folder, template = spec.frame_location(out, layout, clip)
            clip.frame_dir, clip.frame_template = final_folder, template
            if bar:
                bar.update()
        if bar:
            bar.close()
        sheet = spec.write_sheet(tmp, clips)
        _write_ground_truth(tmp / GROUND_TRUTH, clips)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthResult(out, out / sheet.name, clips, n_written)


def _write_frames(folder: Path, template: str, frames: Iterable[tuple[int, np.ndarray]],
                  clip: str) -> int:
    """Write ``(frame number, uint8 image)`` pairs as JPEG files; the number written."""
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    count = 0
    for n, img in frames:
        ok, buf = cv2.imencode(".jpg", img, params)
        if not ok:
            raise SynthError(f"JPEG encoding failed for {clip} frame {n}")
        (folder / template.format(n=n)).write_bytes(buf.tobytes())
        count += 1
    return count


def _write_ground_truth(path: Path, clips: list[PlannedClip]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(GT_FIELDS)
        for c in clips:
            sheet_apex = c.sheet_apex if isinstance(c.sheet_apex, int) else ""
            w.writerow([c.subject, c.clip, c.sheet_row, c.onset, sheet_apex, c.offset, c.emotion,
                        c.offset - c.onset + 1, c.first_frame, c.last_frame, c.apex, c.motion,
                        f"{c.amplitude:.3f}", c.quirk])


def read_ground_truth(root: str | Path) -> list[dict[str, str]]:
    """The ground truth rows a generated dataset carries (``synth_ground_truth.csv``)."""
    with (Path(root) / GROUND_TRUTH).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
