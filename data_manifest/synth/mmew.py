"""The look-alike MMEW: frames numbered 1..N in each clip folder (no padding), face-cropped
in both layouts, ``Sxx-cc-kkk`` clip names (``cc``: the emotion's code)."""

from __future__ import annotations

import numpy as np

from mer_di.data_manifest.synth.spec import AU, PlannedClip, SynthSpec


class MmewSpec(SynthSpec):
    name, extra_class = "mmew", "sadness"
    motions = {"happiness": "lip_corner_pull", "surprise": "brow_raise",
               "disgust": "nose_wrinkle", "fear": "eye_widen", "others": "lip_press",
               "sadness": "brow_lower"}
    length = (14, 40)
    cropped_layouts = ("emotion", "subject")
    pad_frames = False  # onset is frame 1 and offset the last frame on every row
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
              "Estimated Emotion", "remarks"]

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        code = (*self.five, self.extra_emotion).index(emotion) + 1
        return f"{subject}-{code:02d}-{k + 1:03d}"

    def sheet_row(self, c: PlannedClip) -> list[object]:
        return [c.subject_number, c.clip, c.onset, c.sheet_apex, c.offset, AU[c.motion],
                c.emotion, None]
