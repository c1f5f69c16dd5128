"""The plan of a look-alike dataset: every clip's names, frame numbers, motion and quirk.

Drawn from one generator before any frame is rendered; the order of the draws is part of
what makes a seed give the same bytes, so it must not change.
"""

from __future__ import annotations

import numpy as np

from mer_di.data_manifest.synth.spec import PlannedClip, SynthSpec

# planted quirks, one each, on clearly identified clips (listed in the ground truth)
QUIRKS = ("apex_slash", "apex_equals_onset", "apex_after_offset", "emotion_outside_five")


def plan_clips(spec: SynthSpec, subjects: int, clips_per_class: int,
               length: tuple[int, int], rng: np.random.Generator) -> list[PlannedClip]:
    """``subjects * (5 * clips_per_class) + 1`` clips in sheet order, quirks planted.

    ``length`` is the (shortest, longest) clip in frames from onset to offset.
    """
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
            clips.append(PlannedClip(  # keyword order is draw order: clip name, then amplitude
                subject_number=number, subject=subject,
                clip=spec.clip_name(subject, emotion, k, rng), emotion=emotion,
                motion=spec.motion(emotion), amplitude=float(rng.uniform(1.0, 2.0)),
                onset=onset, apex=apex, offset=offset, first_frame=first, last_frame=last,
                sheet_apex=apex,
                quirk="emotion_outside_five" if emotion == spec.extra_emotion else "",
            ))
    clips.sort(key=lambda c: (c.subject_number, c.clip))
    _plant_sheet_quirks(clips, rng)
    return clips


def _plant_sheet_quirks(clips: list[PlannedClip], rng: np.random.Generator) -> None:
    """The three sheet quirks on the first clips of subjects 1, 2, 3 (cycling if fewer)."""
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
