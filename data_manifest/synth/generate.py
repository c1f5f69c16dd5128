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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mer_di.data_manifest.synth.casme2 import Casme2Spec
from mer_di.data_manifest.synth.faces import (
    Look,
    draw_features,
    motion_intensity,
    pose_at,
    random_look,
    random_pose,
    render_base,
)
from mer_di.data_manifest.synth.mmew import MmewSpec
from mer_di.data_manifest.synth.samm import SammSpec
from mer_di.data_manifest.synth.spec import PlannedClip, SynthSpec
from mer_di.errors import SynthError

SPECS: dict[str, type[SynthSpec]] = {s.name: s for s in (Casme2Spec, SammSpec, MmewSpec)}
GROUND_TRUTH = "synth_ground_truth.csv"
GT_FIELDS = ["subject", "clip", "sheet_row", "onset", "apex", "offset", "emotion", "n_frames",
             "first_frame", "last_frame", "true_apex", "motion", "amplitude_px", "quirk"]
# planted quirks, one each, on clearly identified clips (listed in the ground truth)
QUIRKS = ("apex_slash", "apex_equals_onset", "apex_after_offset", "emotion_outside_five")
JPEG_QUALITY = 95


@dataclass
class SynthResult:
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


def get_spec(dataset: str) -> SynthSpec:
    """The generator's rules for ``dataset`` (:class:`SynthError` for others)."""
    if dataset not in SPECS:
        raise SynthError(f"unknown dataset {dataset!r}; choose one of {', '.join(SPECS)}")
    return SPECS[dataset]()


def plan_clips(spec: SynthSpec, subjects: int, clips_per_class: int,
               length: tuple[int, int], rng: np.random.Generator) -> list[PlannedClip]:
    """Every clip's names, frame numbers, motion and quirk, in sheet order."""
    clips: list[PlannedClip] = []
    for s in range(subjects):
        number = spec.subject_number(s)
        subject = spec.subject_folder(number)
        emotions = [e for e in spec.five for _ in range(clips_per_class)]
        if s == subjects - 1:
            emotions.append(spec.extra_emotion)  # the one clip outside the five
        for k, emotion in enumerate(emotions):
            n = int(rng.integers(length[0], length[1] + 1))
            first, onset, offset, last = spec.frame_numbers(n, rng)
            frac = rng.uniform(0.3, 0.7)
            apex = int(np.clip(onset + round(frac * (n - 1)), onset + 2, offset - 2))
            clips.append(PlannedClip(
                subject_number=number, subject=subject,
                clip=spec.clip_name(subject, emotion, k, rng), emotion=emotion,
                motion=spec.motions[emotion], amplitude=float(rng.uniform(1.0, 2.0)),
                onset=onset, apex=apex, offset=offset, first_frame=first, last_frame=last,
                sheet_apex=apex,
                quirk="emotion_outside_five" if emotion == spec.extra_emotion else "",
            ))
    clips.sort(key=lambda c: (c.subject_number, c.clip))
    # plant the sheet quirks on the first clip of subjects 1, 2, 3 (cycling if fewer)
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
    return clips


def _face_box(spec: SynthSpec, layout: str, width: int, height: int,
              rng: np.random.Generator) -> tuple[float, float, float]:
    """``(x0, y0, size)`` of the face box, with per-clip position jitter."""
    if spec.face_fills[layout]:
        size = min(width, height) * 0.98
    else:
        size = height * 0.6
    jitter = 0.03 * size
    x0 = (width - size) / 2 + rng.uniform(-jitter, jitter)
    y0 = (height - size) / 2 + rng.uniform(-jitter, jitter)
    return x0, y0, size


def render_clip(spec: SynthSpec, layout: str, look: Look, clip: PlannedClip,
                frame_size: tuple[int, int], rng: np.random.Generator):
    """Yield ``(frame_number, uint8 image)`` for every frame on disk, BGR or grey."""
    width, height = frame_size
    box = _face_box(spec, layout, width, height, rng)
    base = render_base(look, height, width, box, spec.grey)
    apex_pose = random_pose(rng)
    for n in range(clip.first_frame, clip.last_frame + 1):
        s = motion_intensity(n, clip.onset, clip.apex, clip.offset)
        pose = pose_at(apex_pose, clip.motion, clip.amplitude, s)
        # sub-pixel head jitter from frame to frame, as a real head never holds still
        dx, dy = rng.normal(0.0, 0.08, size=2)
        frame_box = (box[0] + dx, box[1] + dy, box[2])
        noisy = base + rng.standard_normal(base.shape, dtype=np.float32) * look.noise_sigma
        img = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        if spec.grey:
            img = img[..., 0].copy()
        draw_features(img, look, frame_box, pose, spec.grey)
        yield n, img


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
        iterator = enumerate(clips)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=len(clips), desc=f"synth {dataset}", unit="clip")
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        for i, clip in iterator:
            folder, template = spec.frame_location(tmp, layout, clip)
            folder.mkdir(parents=True, exist_ok=True)
            clip_rng = np.random.default_rng([seed, 2, i])
            for n, img in render_clip(spec, layout, looks[clip.subject], clip, frame_size,
                                      clip_rng):
                ok, buf = cv2.imencode(".jpg", img, params)
                if not ok:
                    raise SynthError(f"JPEG encoding failed for {clip.clip} frame {n}")
                (folder / template.format(n=n)).write_bytes(buf.tobytes())
                n_written += 1
            final_folder, template = spec.frame_location(out, layout, clip)
            clip.frame_dir, clip.frame_template = final_folder, template
        sheet = spec.write_sheet(tmp, clips)
        _write_ground_truth(tmp / GROUND_TRUTH, clips)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthResult(out, out / sheet.name, clips, n_written)


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
