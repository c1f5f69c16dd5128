"""Apex spotting: the frame of a clip where the face has moved most from its onset frame.

SMIC has no apex at all and the other sheets have unusable ones (``'/'``, outside the clip,
equal to the onset); without an apex a clip has no onset and offset phase images. The
spotter estimates it from the frames the build has already decoded (the same pass as the
dynamic images), inside the clip's face box (the frames are already cropped to it).

Method ``diff`` (the default; ``benchmarks/bench_apex.py`` measures it against ``flow``):
each frame is reduced to grey and block-averaged to about :data:`GRID` cells a side (which
averages the sensor noise away), its absolute difference to the onset frame taken per cell,
and the frame scored by the mean of its :data:`TOP_FRACTION` most-changed cells (a
micro-expression moves a small part of the face: the mean over the whole face would drown
it). The score is smoothed over three frames; the apex is its maximum, strictly inside the
clip so that both phases keep two frames or more. Method ``flow``: the same, with
Farneback optical-flow magnitude from the onset frame per cell instead of the difference.
"""

from __future__ import annotations

import cv2
import numpy as np

GRID = 48            # cells a side after block-averaging
TOP_FRACTION = 0.05  # share of the cells, the most changed, that score a frame
METHODS = ("diff", "flow")


def _grey_cells(frames: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(T, h, w, C) or (T, h, w) uint8 -> (T, gh, gw) float32 block means of grey."""
    x = np.asarray(frames)
    if x.ndim == 4:
        x = x.mean(axis=3, dtype=np.float32) if x.shape[3] > 1 else x[..., 0]
    x = x.astype(np.float32, copy=False)
    t, h, w = x.shape
    s = max(1, min(h, w) // grid)
    gh, gw = h // s, w // s
    return x[:, :gh * s, :gw * s].reshape(t, gh, s, gw, s).mean(axis=(2, 4))


def motion_profile(frames: np.ndarray, method: str = "diff") -> np.ndarray:
    """How far each frame has moved from the first (the onset) [shape=(T,), float32,
    grey levels for ``diff``, pixels of the reduced grid for ``flow``], smoothed over three
    frames. ``frames``: (T, h, w, C) or (T, h, w) uint8, the clip onset..offset."""
    if method not in METHODS:
        raise ValueError(f"apex spotting method {method!r}: one of {', '.join(METHODS)}")
    cells = _grey_cells(frames)
    t = len(cells)
    if method == "diff":
        change = np.abs(cells - cells[0])
    else:
        ref = np.clip(cells[0], 0, 255).astype(np.uint8)
        change = np.zeros_like(cells)
        for i in range(1, t):
            cur = np.clip(cells[i], 0, 255).astype(np.uint8)
            flow = cv2.calcOpticalFlowFarneback(ref, cur, None, 0.5, 2, 9, 3, 5, 1.1, 0)
            change[i] = np.hypot(flow[..., 0], flow[..., 1])
    flat = change.reshape(t, -1)
    k = max(1, int(round(flat.shape[1] * TOP_FRACTION)))
    score = np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1)
    if t >= 3:
        padded = np.concatenate([score[:1], score, score[-1:]])
        score = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    return score.astype(np.float32)


def spot_apex(frames: np.ndarray, method: str = "diff") -> int:
    """The 0-based index of the apex in ``frames`` (the clip onset..offset): the maximum
    of :func:`motion_profile`, strictly inside the clip (1..T-2) when T >= 3."""
    score = motion_profile(frames, method)
    if len(score) < 3:
        return len(score) // 2
    return 1 + int(np.argmax(score[1:-1]))
