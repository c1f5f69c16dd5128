"""Drawn faces for the look-alike datasets: a subject's look, a clip's pose, its motion.

Geometry is in fractions of the face box (a square of side ``size`` at ``origin``); pose
offsets and motions are in frame pixels whatever the box size. Everything is drawn
with sub-pixel precision (``cv2`` polygons with 4 fractional bits, anti-aliased), so a
1-2 pixel feature motion shows up as a graded change, as in real high-speed footage.

Why a single frame says nothing about the class: a clip's *apex* pose (every feature
parameter) is drawn from one class-independent distribution whose spread (several pixels)
is wider than the motion; the class only decides which parameters move on the way from
onset to apex and back. The apex frame is therefore class-independent in distribution and
the other frames nearly so; only the change over time carries the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHIFT = 4  # fractional bits of cv2 polygon coordinates: 1/16 pixel
_SCALE = 1 << SHIFT

# Pose parameters: half-width of each one's uniform spread, in frame pixels.
POSE_SPREAD = {
    "brow_dy": 3.0,        # both brows up (-) or down (+)
    "brow_inner_dy": 2.0,  # inner brow ends up (-) or down (+)
    "eye_open": 1.5,       # eyelid aperture
    "corner_dy": 2.5,      # mouth corners up (-) or down (+)
    "corner_dx": 3.0,      # mouth wider (+)
    "lip_thick": 1.5,      # lips fuller (+) or pressed (-)
    "nose_dy": 2.0,        # nose wings up (-) or down (+)
}

# Class motions: parameter changes at the apex per pixel of amplitude.
MOTIONS: dict[str, dict[str, float]] = {
    "brow_raise": {"brow_dy": -1.0, "brow_inner_dy": -0.5},
    "brow_lower": {"brow_dy": 1.0, "brow_inner_dy": 1.0},
    "lip_corner_pull": {"corner_dy": -1.0, "corner_dx": 0.7},
    "lip_press": {"lip_thick": -1.0, "corner_dx": -0.4},
    "eye_widen": {"eye_open": 1.0},
    "nose_wrinkle": {"nose_dy": -1.0, "brow_inner_dy": 0.6},
    "lip_stretch": {"corner_dx": 1.0, "lip_thick": -0.5},  # AU 20, fear (CAS(ME)^3)
}


@dataclass(frozen=True)
class Look:
    """A subject's appearance; colours are BGR (or one grey value), sizes fractions."""

    skin: tuple[float, float, float]
    feature: tuple[float, float, float]   # brows, iris
    lips: tuple[float, float, float]
    background: tuple[float, float, float]
    face_width: float       # head ellipse half-width / box
    eye_spacing: float      # eye centre offset from the midline / box
    eye_width: float
    brow_thickness: float
    mouth_width: float
    texture: np.ndarray     # float32 (T, T) skin texture, +-1 scaled by texture_amp
    texture_amp: float
    noise_sigma: float      # sensor noise, grey levels


def random_look(rng: np.random.Generator) -> Look:
    """Draw a subject's look."""
    tone = rng.uniform(0.0, 1.0)
    skin = (80 + 90 * tone + rng.uniform(-10, 10), 110 + 90 * tone + rng.uniform(-10, 10),
            150 + 80 * tone + rng.uniform(-10, 10))
    dark = rng.uniform(20, 60)
    texture = cv2.GaussianBlur(rng.standard_normal((256, 256)).astype(np.float32), (0, 0), 2.0)
    texture /= np.abs(texture).max()
    return Look(
        skin=tuple(min(v, 245.0) for v in skin),
        feature=(dark, dark + rng.uniform(0, 15), dark + rng.uniform(0, 25)),
        lips=(skin[0] * 0.55, skin[1] * 0.5, min(255.0, skin[2] * 0.85)),
        background=tuple(float(v) for v in rng.uniform(40, 200, size=3)),
        face_width=rng.uniform(0.34, 0.40),
        eye_spacing=rng.uniform(0.15, 0.18),
        eye_width=rng.uniform(0.065, 0.08),
        brow_thickness=rng.uniform(0.018, 0.028),
        mouth_width=rng.uniform(0.11, 0.14),
        texture=texture,
        texture_amp=rng.uniform(4.0, 10.0),
        noise_sigma=rng.uniform(1.0, 2.5),
    )


def random_pose(rng: np.random.Generator) -> dict[str, float]:
    """A clip's apex pose in frame pixels, class-independent."""
    return {k: float(rng.uniform(-s, s)) for k, s in POSE_SPREAD.items()}


def motion_intensity(frame: int, onset: int, apex: int, offset: int) -> float:
    """0 before onset and after offset, rising smoothly to 1 at apex and fading back."""
    if frame <= onset or frame >= offset:
        return 1.0 if frame == apex else 0.0
    if frame <= apex:
        x = (frame - onset) / max(apex - onset, 1)
    else:
        x = (offset - frame) / max(offset - apex, 1)
    return float(x * x * (3 - 2 * x))  # smoothstep


def pose_at(apex_pose: dict[str, float], motion: str, amplitude: float,
            intensity: float) -> dict[str, float]:
    """The pose at a given motion intensity: the apex pose less the unfinished motion."""
    pose = dict(apex_pose)
    for key, gain in MOTIONS[motion].items():
        pose[key] -= (1.0 - intensity) * gain * amplitude
    return pose


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(points * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def _ellipse_points(cx, cy, ax, ay, n=40, t0=0.0, t1=2 * np.pi) -> np.ndarray:
    t = np.linspace(t0, t1, n)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)


def _colour(c, grey: bool):
    return (float(np.mean(c)),) if grey else tuple(float(v) for v in c)


def render_base(look: Look, height: int, width: int, box: tuple[float, float, float],
                grey: bool) -> np.ndarray:
    """Background and textured head (the parts that never move), float32 (H, W, C)."""
    x0, y0, size = box
    channels = 1 if grey else 3
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.empty((height, width, channels), np.float32)
    bg = _colour(look.background, grey)
    shade = (xx / max(width - 1, 1) - 0.5) * 30.0  # a soft light gradient across the frame
    for c in range(channels):
        base[..., c] = bg[c] + shade
    # head ellipse with skin texture, and a darker hair cap above it
    cx, cy = x0 + 0.5 * size, y0 + 0.52 * size
    ax, ay = look.face_width * size, 0.46 * size
    hair = np.zeros((height, width), np.uint8)
    cv2.fillPoly(hair, [_poly(_ellipse_points(cx, cy - 0.06 * size, ax * 1.04, ay * 0.98,
                                              t0=np.pi, t1=2 * np.pi))], 255, cv2.LINE_AA,
                 SHIFT)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [_poly(_ellipse_points(cx, cy, ax, ay))], 255, cv2.LINE_AA, SHIFT)
    m = mask.astype(np.float32)[..., None] / 255.0
    h = hair.astype(np.float32)[..., None] / 255.0 * (1 - m) * 0.9
    tex_y = ((yy - y0) / size * 255).astype(np.int32) % 256
    tex_x = ((xx - x0) / size * 255).astype(np.int32) % 256
    texture = look.texture[tex_y, tex_x][..., None] * look.texture_amp
    skin = np.array(_colour(look.skin, grey), np.float32)
    # gentle shading: darker towards the head's edge, as a lit face is
    rr = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    relief = (1.0 - 0.25 * np.clip(rr, 0, 1))[..., None]
    face = skin * relief + texture
    hair_col = np.array(_colour(look.feature, grey), np.float32)
    return base * (1 - m - h) + face * m + hair_col * h


def draw_features(img: np.ndarray, look: Look, box: tuple[float, float, float],
                  pose: dict[str, float], grey: bool) -> None:
    """Draw brows, eyes, nose and mouth for ``pose`` into ``img`` (uint8, in place)."""
    x0, y0, size = box
    cx = x0 + 0.5 * size
    feat = _colour(look.feature, grey)
    white = _colour((235, 235, 235), grey)
    lips = _colour(look.lips, grey)
    dark = _colour(tuple(v * 0.5 for v in look.skin), grey)
    eye_y = y0 + 0.44 * size
    ew = look.eye_width * size
    for side in (-1, 1):
        ex = cx + side * look.eye_spacing * size
        # eye: sclera, iris, upper lid line
        open_h = max(0.5, 0.028 * size + pose["eye_open"])
        cv2.fillPoly(img, [_poly(_ellipse_points(ex, eye_y, ew, open_h))], white, cv2.LINE_AA,
                     SHIFT)
        cv2.fillPoly(img, [_poly(_ellipse_points(ex, eye_y, 0.45 * ew, min(open_h, 0.45 * ew)))],
                     feat, cv2.LINE_AA, SHIFT)
        cv2.polylines(img, [_poly(_ellipse_points(ex, eye_y, ew, open_h, 20, np.pi,
                                                  2 * np.pi))], False, feat, 2, cv2.LINE_AA,
                      SHIFT)
        # brow: a thick arc whose inner end can move separately
        by = eye_y - 0.085 * size + pose["brow_dy"]
        inner = ex - side * 1.1 * ew
        outer = ex + side * 1.1 * ew
        t = np.linspace(0, 1, 16)
        xs = inner + (outer - inner) * t
        ys = by - 0.02 * size * np.sin(np.pi * t) + (1 - t) * pose["brow_inner_dy"]
        th = look.brow_thickness * size
        upper = np.stack([xs, ys - th / 2], 1)
        lower = np.stack([xs, ys + th / 2], 1)[::-1]
        cv2.fillPoly(img, [_poly(np.concatenate([upper, lower]))], feat, cv2.LINE_AA, SHIFT)
        # nose wing
        ny = y0 + 0.64 * size + pose["nose_dy"]
        nx = cx + side * 0.045 * size
        cv2.fillPoly(img, [_poly(_ellipse_points(nx, ny, 0.02 * size, 0.011 * size))], dark,
                     cv2.LINE_AA, SHIFT)
    # nose bridge
    cv2.polylines(img, [_poly(np.array([[cx, eye_y + 0.04 * size],
                                        [cx - 0.01 * size, y0 + 0.6 * size]]))], False, dark, 1,
                  cv2.LINE_AA, SHIFT)
    # mouth: upper and lower lip between two corners
    my = y0 + 0.76 * size
    half = look.mouth_width * size + pose["corner_dx"]
    cy_ = my + pose["corner_dy"]
    thick = max(0.5, 0.022 * size + pose["lip_thick"])
    t = np.linspace(-1, 1, 24)
    xs = cx + half * t
    centre = my + (cy_ - my) * t**2
    top = centre - thick * (1 - t**2) ** 0.7
    bottom = centre + 1.2 * thick * (1 - t**2) ** 0.7
    cv2.fillPoly(img, [_poly(np.concatenate([np.stack([xs, top], 1),
                                             np.stack([xs, bottom], 1)[::-1]]))], lips,
                 cv2.LINE_AA, SHIFT)
    cv2.polylines(img, [_poly(np.stack([xs, centre], 1))], False, dark, 1, cv2.LINE_AA, SHIFT)
