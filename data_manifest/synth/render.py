"""A planned clip's frames: the subject's drawn face, moving as the clip's motion says."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mer_di.data_manifest.synth.faces import (
    Look,
    draw_features,
    motion_intensity,
    pose_at,
    random_pose,
    render_base,
)
from mer_di.data_manifest.synth.spec import PlannedClip, SynthSpec


def face_box(spec: SynthSpec, layout: str, width: int, height: int,
             rng: np.random.Generator) -> tuple[float, float, float]:
    """``(x0, y0, size)`` of the square face box in frame pixels, with position jitter."""
    if spec.face_fills(layout):
        size = min(width, height) * 0.98
    else:
        size = height * 0.6
    jitter = 0.03 * size
    x0 = (width - size) / 2 + rng.uniform(-jitter, jitter)
    y0 = (height - size) / 2 + rng.uniform(-jitter, jitter)
    return x0, y0, size


def render_clip(spec: SynthSpec, layout: str, look: Look, clip: PlannedClip,
                frame_size: tuple[int, int],
                rng: np.random.Generator) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame number, image)`` for every frame on disk; images are uint8 (H, W, 3) BGR,
    or (H, W) for a grey dataset, ``frame_size`` being (W, H)."""
    width, height = frame_size
    box = face_box(spec, layout, width, height, rng)
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
