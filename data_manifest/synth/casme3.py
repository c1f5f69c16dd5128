"""The look-alike CAS(ME)^3 part A: long videos ``<Subject>/<Filename>/color/<n>.jpg``
(``spNO.1/e/color/62.jpg``) each holding several micro-expressions, frames numbered along
the video (the clips of one video share its folder, with gaps between them), a ``depth/``
folder the reader must ignore, and the sheet ``label`` of text cells (several rows per
Filename, told apart by their onsets) beside empty sheets. 30 fps: clips of 8-15 frames.

Planted quirks, one clip each, as the real sheet has them: onset == apex, an offset of 0,
an onset after the offset, an apex outside the clip, a Filename in another case than its
folder, and one implausibly long clip (60-90 frames).
"""

from __future__ import annotations

import string
from pathlib import Path

import cv2
import numpy as np

from mer_di.data_manifest.synth.spec import AU, PlannedClip, SynthSpec

QUIRKS = ("apex_equals_onset", "offset_zero", "onset_after_offset", "apex_outside",
          "filename_case", "long_clip")
ROMAN = {"brow_raise": "II", "brow_lower": "I", "lip_corner_pull": "III", "lip_press": "IV",
         "eye_widen": "V", "nose_wrinkle": "VI", "lip_stretch": "VII"}
LONG_CLIP = (60, 90)  # frames of the planted long clip (2-3 s at 30 fps)


class Casme3Spec(SynthSpec):
    name = "casme3"
    motions = {"disgust": "nose_wrinkle", "fear": "lip_stretch", "anger": "brow_lower",
               "sad": "lip_press", "happy": "lip_corner_pull", "surprise": "brow_raise",
               "others": "eye_widen"}
    frame_size = (160, 120)  # the real frames are 1280x720, with background
    length = (8, 15)  # 30 fps: 0.27-0.5 s
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
              "emotion"]
    sheet_name = "label"
    empty_sheets = ("Sheet2", "Sheet3")
    quirks = QUIRKS
    extra_gt_fields = ("filename",)

    def plan(self, subjects: int, clips_per_class: int, length: tuple[int, int],
             rng: np.random.Generator) -> list[PlannedClip]:
        """Per subject: every emotion ``clips_per_class`` times, shuffled into videos of
        about 2-3 clips (single letters), quirks chosen, then frames laid along each video."""
        videos: list[tuple[int, str, str, list[str]]] = []  # (number, subject, letter, emotions)
        for s in range(subjects):
            number = self.subject_number(s)
            subject = self.subject_folder(number)
            emotions = [e for e in self.emotions for _ in range(clips_per_class)]
            emotions = [emotions[i] for i in rng.permutation(len(emotions))]
            n_videos = min(26, max(1, round(len(emotions) / 2.5)))
            letters = sorted(rng.choice(list(string.ascii_lowercase), n_videos, replace=False))
            for letter, group in zip(letters, np.array_split(np.array(emotions), n_videos),
                                     strict=True):
                videos.append((number, subject, str(letter), [str(e) for e in group]))
        # which clip gets which quirk: the first free clip of each subject in turn
        slots = [(v, k) for v, video in enumerate(videos) for k in range(len(video[3]))]
        subjects_order = list(dict.fromkeys(video[1] for video in videos))
        quirk_of: dict[tuple[int, int], str] = {}
        for i, quirk in enumerate(self.quirks):
            subject = subjects_order[i % len(subjects_order)]
            free = [slot for slot in slots if videos[slot[0]][1] == subject
                    and slot not in quirk_of] or [slot for slot in slots if slot not in quirk_of]
            if free:
                quirk_of[free[0]] = quirk
        clips: list[PlannedClip] = []
        for v, (number, subject, letter, emotions) in enumerate(videos):
            cursor = int(rng.integers(1, 200))
            for k, emotion in enumerate(emotions):
                quirk = quirk_of.get((v, k), "")
                lo, hi = LONG_CLIP if quirk == "long_clip" else length
                n = int(rng.integers(lo, hi + 1))
                first = cursor
                onset = first + int(rng.integers(3, 8))
                offset = onset + n - 1
                last = offset + int(rng.integers(3, 8))
                cursor = last + 1 + int(rng.integers(0, 30))
                frac = rng.uniform(0.3, 0.7)
                apex = int(np.clip(onset + round(frac * (n - 1)), onset + 2, offset - 2))
                clip = PlannedClip(
                    subject_number=number, subject=subject, clip=f"{letter}_{onset}",
                    emotion=emotion, motion=self.motion(emotion),
                    amplitude=float(rng.uniform(1.0, 2.0)), onset=onset, apex=apex,
                    offset=offset, first_frame=first, last_frame=last, sheet_apex=apex,
                    quirk=quirk, video=letter, sheet_cells={"filename": letter})
                self._plant(clip, rng)
                clips.append(clip)
        clips.sort(key=lambda c: (c.subject_number, c.video, c.onset))
        return clips

    @staticmethod
    def _plant(clip: PlannedClip, rng: np.random.Generator) -> None:
        if clip.quirk == "apex_equals_onset":
            clip.apex = clip.sheet_apex = clip.onset  # the motion really peaks at onset
        elif clip.quirk == "offset_zero":
            clip.sheet_cells["offset"] = 0
        elif clip.quirk == "onset_after_offset":  # a typo in the offset
            clip.sheet_cells["offset"] = clip.onset - int(rng.integers(1, min(10, clip.onset)))
        elif clip.quirk == "apex_outside":
            clip.sheet_apex = clip.offset + int(rng.integers(3, 10))
        elif clip.quirk == "filename_case":
            clip.sheet_cells["filename"] = clip.video.upper()

    def plant_quirks(self, clips: list[PlannedClip], rng: np.random.Generator) -> None:
        """Planted while planning (:meth:`plan`)."""

    def frame_location(self, root: Path, layout: str, clip: PlannedClip) -> tuple[Path, str]:
        lay = next(x for x in self.reader.layouts if x.name == layout)
        base = root / lay.base if lay.base else root
        return base / clip.subject / clip.video / "color", lay.template

    def sheet_row(self, c: PlannedClip) -> list[object]:
        offset = c.sheet_cells.get("offset", c.offset)
        return [c.subject, c.sheet_cells["filename"], str(c.onset), str(c.sheet_apex),
                str(offset), f"AU{AU[c.motion]}", ROMAN[c.motion], c.emotion]

    def write_extras(self, root: Path, layout: str, frame_size: tuple[int, int], seed: int,
                     clips: list[PlannedClip]) -> int:
        """A few depth frames (16-bit PNG) beside the first video's ``color/``."""
        first = clips[0]
        color, _ = self.frame_location(root, layout, first)
        depth = color.parent / "depth"
        depth.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, 3])
        width, height = frame_size
        for n in range(first.onset, first.onset + 3):
            img = rng.integers(500, 1500, size=(height, width), dtype=np.uint16)
            cv2.imwrite(str(depth / f"{n}.png"), img)
        return 3
