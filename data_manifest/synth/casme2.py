"""The look-alike CASME II: the 2019 sheet with its blank columns and a junk last row,
frames numbered from 1 with padding around each clip, ``EPxx_yy[f]`` clip names."""

from __future__ import annotations

import numpy as np

from mer_di.data_manifest.synth.spec import AU, OBJECTIVE, PlannedClip, SynthSpec


class Casme2Spec(SynthSpec):
    name, extra_class = "casme2", "fear"
    motions = {"happiness": "lip_corner_pull", "disgust": "nose_wrinkle", "surprise": "brow_raise",
               "repression": "lip_press", "others": "eye_widen", "fear": "brow_lower"}
    frame_size = (192, 224)
    cropped_layouts = ("cropped",)  # CASME2_RAW_selected frames show the whole scene
    header = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
              "Action Units", "Estimated Emotion", "Objective Classes"]
    empty_sheets = ("Sheet2", "Sheet3")
    sheet_file_index = 1  # CASME2-coding-20190701.xlsx

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        return f"EP{rng.integers(1, 20):02d}_{k + 1:02d}" + ("f" if rng.random() < 0.5 else "")

    def sheet_row(self, c: PlannedClip) -> list[object]:
        return [f"{c.subject_number:02d}", c.clip, None, c.onset, c.sheet_apex, c.offset, None,
                AU[c.motion], c.emotion, OBJECTIVE[c.motion]]

    def trailing_rows(self, clips: list[PlannedClip]) -> list[list[object]]:
        # a junk row without a subject, as some copies end
        return [[None, f"{len(clips)} clips", *[None] * 8]]
