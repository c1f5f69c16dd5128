"""The look-alike SMIC-HS: no sheet, BMP frames named after the camera's frame number
(``reg_image046623.bmp`` cropped, ``image046623.bmp`` raw, starting in the tens of
thousands), 100 fps clips of 20-50 frames in ``<s>/micro/<emotion>/<clip>/``, a
``non_micro/`` folder the reader must ignore, and no apex anywhere (the ground truth keeps
each clip's true apex). Planted quirk: one clip with a gap in its frame numbering."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_di.data_manifest.synth.faces import random_look
from mer_di.data_manifest.synth.spec import PlannedClip, SynthSpec

# SMIC-HS's 16 subjects with micro-expressions (s7, s10, s16, s17 have none)
SUBJECTS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20)
CODES = {"negative": "ne", "positive": "po", "surprise": "sur"}
FRAME_STEM = {"cropped": "reg_image"}  # other layouts: raw frames, 'image'


class SmicSpec(SynthSpec):
    name = "smic"
    motions = {"negative": "brow_lower", "positive": "lip_corner_pull",
               "surprise": "brow_raise"}
    frame_size = (140, 170)
    length = (20, 50)  # 100 fps: 0.2-0.5 s
    cropped_layouts = ("cropped",)
    quirks = ("frame_gap",)
    annotated_apex = False
    number_per_emotion = True
    frame_suffix = ".bmp"
    has_sheet = False

    def subject_number(self, index: int) -> int:
        return SUBJECTS[index] if index < len(SUBJECTS) else SUBJECTS[-1] + index - 15

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        return f"{subject}_{CODES[emotion]}_{k + 1:02d}"

    def frame_numbers(self, n: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        first = int(rng.integers(10_000, 90_000))  # the camera's frame counter
        return first, first, first + n - 1, first + n - 1

    def frame_template(self, layout: str) -> str:
        return FRAME_STEM.get(layout, "image") + "{n:06d}" + self.frame_suffix

    def frame_location(self, root: Path, layout: str, clip: PlannedClip) -> tuple[Path, str]:
        lay = next(x for x in self.reader.layouts if x.name == layout)
        base = root / lay.base if lay.base else root
        return (base / clip.subject / "micro" / clip.emotion / clip.clip,
                self.frame_template(layout))

    def plant_quirks(self, clips: list[PlannedClip], rng: np.random.Generator) -> None:
        """A gap of one frame inside the first clip of the second subject (or the first)."""
        subjects = list(dict.fromkeys(c.subject for c in clips))
        subject = subjects[min(1, len(subjects) - 1)]
        clip = next(c for c in clips if c.subject == subject)
        clip.quirk = "frame_gap"
        clip.missing_frames = (int(rng.integers(clip.onset + 2, clip.offset - 1)),)

    def write_sheet(self, root: Path, clips: list[PlannedClip]) -> Path:
        """No sheet: the clips' running index in (subject, clip) order is their row; the
        HS folder the reader finds is returned."""
        for i, clip in enumerate(clips, 1):
            clip.sheet_row = i
        layout, _ = self.reader.detect_layout(root)
        return root / layout.base if layout.base else root

    def write_extras(self, root: Path, layout: str, frame_size: tuple[int, int], seed: int,
                     clips: list[PlannedClip]) -> int:
        """``<s>/non_micro/<emotion>/<clip>/`` of the first subject: two clips the reader
        must not read (their frames drawn from generators of their own)."""
        from mer_di.data_manifest.synth.generate import _write_frames
        from mer_di.data_manifest.synth.render import render_clip

        first = clips[0]
        look = random_look(np.random.default_rng([seed, 1, 0]))
        written = 0
        for j, emotion in enumerate(("negative", "positive")):
            rng = np.random.default_rng([seed, 3, j])
            onset = int(rng.integers(10_000, 90_000))
            extra = PlannedClip(
                subject_number=first.subject_number, subject=first.subject,
                clip=f"{first.subject}_{CODES[emotion]}_01", emotion=emotion,
                motion=self.motions[emotion], amplitude=3.0, onset=onset, apex=onset + 5,
                offset=onset + 11, first_frame=onset, last_frame=onset + 11, sheet_apex=None)
            folder, template = self.frame_location(root, layout, extra)
            folder = folder.parents[2] / "non_micro" / emotion / extra.clip
            written += _write_frames(folder, template,
                                     render_clip(self, layout, look, extra, frame_size, rng),
                                     extra.clip)
        return written
