"""The look-alike SAMM: greyscale frames with background, subjects from 006, frame numbers
in the thousands, the ``MICRO_ONLY`` sheet under its 13 note rows, capitalised emotions."""

from __future__ import annotations

import numpy as np

from mer_di.data_manifest.synth.spec import AU, OBJECTIVE, PlannedClip, SynthSpec

# The real SAMM sheet's 13 note rows (column A unless a column is given).
SAMM_NOTES: list[dict[int, str]] = [
    {1: "SAMM Dataset - Master FACS Codes",
     5: "(Note to the users: If you're using SAMM, please cite: Davison, A. K., Lansley, C., "
        "Costen, N., Tan, K., & Yap, M. H. (2016). SAMM: A spontaneous micro-facial movement "
        "dataset. IEEE Transactions on Affective Computing.)"},
    {},
    {1: "9/9/17 - New updates with Emotional and Objective Classes. For details please "
        "refer to: ", 9: "arXiv preprint arXiv:1708.07549."},
    {5: "(Note to the users: if you're using the emotional or objective classes, please "
        "cite: Davison, A. K., Merghani, W., & Yap, M. H. (2017). Objective Classes for "
        "Micro-Facial Expression Recognition. arXiv preprint arXiv:1708.07549.)"},
    {},
    {1: "Symbol Key:"},
    {1: '"/" = or'},
    {1: '"?" = some AU\'s continue for a while and have unclear offset'},
    {},
    {1: "AU Help:"},
    {1: '"L2 or R2" = Unilateral AU 2 on left side of face / right side of face'},
    {1: '"A2" = Asymmetric AU 2. Occurs on both sides of face but stronger on one side'},
    {},
]


class SammSpec(SynthSpec):
    name, extra_class = "samm", "fear"
    motions = {"happiness": "lip_corner_pull", "anger": "brow_lower", "surprise": "brow_raise",
               "contempt": "lip_press", "other": "eye_widen", "fear": "nose_wrinkle"}
    frame_size = (680, 363)
    grey = True
    # no cropped layout: SAMM frames show the background around the head
    first_subject = 6  # SAMM's subjects start at 006
    header = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
              "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
              "Objective Classes", "Notes"]
    notes = SAMM_NOTES
    sheet_name = "MICRO_ONLY"

    def spell(self, emotion: str) -> str:
        return emotion.capitalize()  # SAMM's sheet writes 'Happiness', 'Other'

    def clip_name(self, subject: str, emotion: str, k: int, rng: np.random.Generator) -> str:
        return f"{subject}_{rng.integers(1, 8)}_{k + 1}"

    def first_frame(self, rng: np.random.Generator) -> int:
        return int(rng.integers(1000, 6000))

    def sheet_row(self, c: PlannedClip) -> list[object]:
        return [c.subject, c.clip, int(c.clip.split("_")[1]), c.onset, c.sheet_apex, c.offset,
                c.offset - c.onset + 1, "Micro - 1/2", AU[c.motion], c.emotion,
                OBJECTIVE[c.motion], c.quirk or None]
