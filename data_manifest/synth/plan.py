"""The plan of a look-alike dataset: every clip's names, frame numbers, motion and quirk.

Drawn from one generator before any frame is rendered; the order of the draws is part of
what makes a seed give the same bytes, so it must not change.
"""

from __future__ import annotations

import numpy as np

from mer_di.data_manifest.synth.spec import QUIRKS, PlannedClip, SynthSpec

__all__ = ["QUIRKS", "plan_clips"]  # QUIRKS: planted in CASME II, SAMM and MMEW, one each


def plan_clips(spec: SynthSpec, subjects: int, clips_per_class: int,
               length: tuple[int, int], rng: np.random.Generator) -> list[PlannedClip]:
    """``subjects * (len(spec.emotions) * clips_per_class)`` clips, plus one outside the
    class set where the spec has an extra class, in sheet order, quirks planted.

    ``length`` is the (shortest, longest) clip in frames from onset to offset.
    """
    clips: list[PlannedClip] = []
    for s in range(subjects):
        number = spec.subject_number(s)
        subject = spec.subject_folder(number)
        emotions = [e for e in spec.emotions for _ in range(clips_per_class)]
        if s == subjects - 1 and spec.extra_class:
            emotions.append(spec.extra_emotion)  # the one clip outside the class set
        for k, emotion in enumerate(emotions):
            n = int(rng.integers(length[0], length[1] + 1))
            first, onset, offset, last = spec.frame_numbers(n, rng)
            frac = rng.uniform(0.3, 0.7)
            apex = int(np.clip(onset + round(frac * (n - 1)), onset + 2, offset - 2))
            number_in_name = emotions[:k].count(emotion) if spec.number_per_emotion else k
            clips.append(PlannedClip(  # keyword order is draw order: clip name, then amplitude
                subject_number=number, subject=subject,
                clip=spec.clip_name(subject, emotion, number_in_name, rng), emotion=emotion,
                motion=spec.motion(emotion), amplitude=float(rng.uniform(1.0, 2.0)),
                onset=onset, apex=apex, offset=offset, first_frame=first, last_frame=last,
                sheet_apex=apex if spec.annotated_apex else None,
                quirk="emotion_outside_five" if spec.extra_class
                and emotion == spec.extra_emotion else "",
            ))
    clips.sort(key=lambda c: (c.subject_number, c.clip))
    spec.plant_quirks(clips, rng)
    return clips
