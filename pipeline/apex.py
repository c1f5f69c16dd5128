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
import numba
import numpy as np

GRID = 48            # cells a side after block-averaging
TOP_FRACTION = 0.05  # share of the cells, the most changed, that score a frame
METHODS = ("diff", "flow")


def _grey_cells(frames: np.ndarray, grid: int = GRID) -> np.ndarray:
    """(T, h, w, C) or (T, h, w) frames -> (T, gh, gw) float32 block means of grey (the
    channels' mean), blocks of ``s = max(1, min(h, w) // grid)`` pixels a side, the
    image's last partial row and column of blocks left out. uint8 frames (the build's)
    are summed exactly in integers by :func:`_cell_sums` in one pass (about 10 ms for 60
    320x240 colour frames, where the float32 means of :func:`numpy_grey_cells` took
    120 ms); others by :func:`numpy_grey_cells`."""
    x = np.asarray(frames)
    if x.ndim == 3:
        x = x[..., None]
    t, h, w, c = x.shape
    s = max(1, min(h, w) // grid)
    gh, gw = h // s, w // s
    if x.dtype == np.uint8 and c * s * s < 2 ** 24:  # uint32 sums, exact in float64
        return (_cell_sums(x, s, gh, gw) / float(c * s * s)).astype(np.float32)
    return numpy_grey_cells(x, grid)


def numpy_grey_cells(frames: np.ndarray, grid: int = GRID) -> np.ndarray:
    """:func:`_grey_cells` by float32 NumPy means (the spotter's arithmetic before issue
    22; kept for frames that are not uint8, and as the fast path's reference)."""
    x = np.asarray(frames)
    if x.ndim == 4:
        x = x.mean(axis=3, dtype=np.float32) if x.shape[3] > 1 else x[..., 0]
    x = x.astype(np.float32, copy=False)
    t, h, w = x.shape
    s = max(1, min(h, w) // grid)
    gh, gw = h // s, w // s
    return x[:, :gh * s, :gw * s].reshape(t, gh, s, gw, s).mean(axis=(2, 4))


@numba.njit(cache=True, nogil=True)
def _cell_sums(frames: np.ndarray, s: int, gh: int, gw: int) -> np.ndarray:
    """Sums of every ``s`` x ``s`` block over all channels of uint8 ``frames`` (T, h, w,
    C) -> (T, gh, gw) uint32 (exact: 255 * C * s * s < 2**32)."""
    t, c = frames.shape[0], frames.shape[3]
    out = np.zeros((t, gh, gw), np.uint32)
    for i in range(t):
        for y in range(gh * s):
            row = out[i, y // s]
            for cx in range(gw):
                acc = np.uint32(0)
                for x in range(cx * s, cx * s + s):
                    for k in range(c):
                        acc += frames[i, y, x, k]
                row[cx] += acc
    return out


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
