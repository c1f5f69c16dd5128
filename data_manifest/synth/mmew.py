"""The look-alike MMEW: frames numbered 1..N in each clip folder (no padding), clips under
their emotion's folder, ``Sxx-cc-kkk`` clip names."""

from __future__ import annotations

import numpy as np

from mer_di.data_manifest.synth.spec import AU, PlannedClip, SynthSpec


class MmewSpec(SynthSpec):
    name, extra_emotion = "mmew", "sadness"
    motion_order = ("lip_corner_pull", "brow_raise", "nose_wrinkle", "eye_widen", "lip_press",
                    "brow_lower")
    length = (14, 40)
    face_fills = {"emotion": True, "subject": True}
    pad_frames = False
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
              "Estimated Emotion", "remarks"]

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        code = (*self.five, self.extra_emotion).index(emotion) + 1
        return f"{subject}-{code:02d}-{k + 1:03d}"

    def sheet_row(self, c: PlannedClip) -> list[object]:
        return [c.subject_number, c.clip, c.onset, c.sheet_apex, c.offset, AU[c.motion],
                c.emotion, None]
