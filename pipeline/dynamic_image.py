"""Dynamic images (approximate rank pooling) of micro-expression clips.

A dynamic image summarises a clip of frames ``F_1 .. F_T`` (``t`` is 1-based) as one
weighted sum ``d = sum_t a_t * F_t`` whose weights grow with time, so the image encodes
the direction of the motion (Bilen et al., "Dynamic Image Networks for Action
Recognition", CVPR 2016).

Two weightings are provided (see :func:`rank_pool_weights`):

- ``"linear"``: ``a_t = 2t - T - 1``;
- ``"harmonic"``: ``a_t = 2(T - t + 1) - (T + 1)(H_T - H_{t-1})`` with ``H_k`` the
  ``k``-th harmonic number and ``H_0 = 0`` (weight ``1`` by convention when ``T = 1``).

A clip runs from its onset frame to its offset frame and has an apex frame inside. From
ONE pass over the frames, :func:`clip_dynamic_images` produces three images:

- ``full``: all ``T`` frames, forward weights;
- ``onset``: frames onset..apex (apex included), forward weights of that phase's length;
- ``offset``: frames apex..offset (apex included), *reversed*, i.e. the forward-weighted
  image of the reversed frames apex..offset, so that the apex frame weighs most.

A phase of a single frame carries no motion; it is reported (``None`` plus a note) and is
never produced as an all-zero image.

This module must never import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

__all__ = ["WEIGHTS", "ClipImages", "clip_dynamic_images", "rank_pool_weights"]

WEIGHTS: tuple[str, ...] = ("linear", "harmonic")


def rank_pool_weights(n: int, kind: str = "linear") -> np.ndarray:
    """Approximate rank pooling weights for a sequence of ``n`` frames.

    Parameters
    ----------
    n : int > 0
        Number of frames.
    kind : str
        ``"linear"`` (``a_t = 2t - n - 1``) or ``"harmonic"``
        (``a_t = 2(n - t + 1) - (n + 1)(H_n - H_{t-1})``), ``t = 1 .. n``.

    Returns
    -------
    weights : np.ndarray [shape=(n,), dtype=float64]
        Forward weights: ``weights[t - 1]`` multiplies frame ``t``. Both kinds sum to
        zero for ``n >= 2``. For ``n == 1`` the linear weight is ``[0]`` and the harmonic
        weight is ``[1]`` by convention.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``kind`` is not one of :data:`WEIGHTS`.

    Examples
    --------
    >>> rank_pool_weights(4)
    array([-3., -1.,  1.,  3.])
    >>> rank_pool_weights(1, "harmonic")
    array([1.])
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be an integer, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if kind not in WEIGHTS:
        raise ValueError(f"unknown weights {kind!r}; expected one of {WEIGHTS}")

    t = np.arange(1, n + 1, dtype=np.float64)
    if kind == "linear":
        return 2.0 * t - n - 1.0

    if n == 1:
        return np.ones(1, dtype=np.float64)
    # harmonic[k] = H_k for k = 0 .. n
    harmonic = np.concatenate(([0.0], np.cumsum(1.0 / t)))
    return 2.0 * (n - t + 1.0) - (n + 1.0) * (harmonic[n] - harmonic[:-1])


@dataclass
class ClipImages:
    """The three dynamic images of one clip.

    Attributes
    ----------
    full : np.ndarray [shape=(H, W, C), dtype=float32]
        Dynamic image of all frames, forward weights.
    onset : np.ndarray [shape=(H, W, C), dtype=float32] or None
        Dynamic image of frames onset..apex, forward weights; ``None`` when the apex is
        unknown or the phase is a single frame (see ``notes``).
    offset : np.ndarray [shape=(H, W, C), dtype=float32] or None
        Dynamic image of the reversed frames apex..offset (apex weighs most); ``None``
        when the apex is unknown or the phase is a single frame (see ``notes``).
    notes : list of str
        Why an image is ``None``; empty when all three images were produced.
    """

    full: np.ndarray
    onset: np.ndarray | None
    offset: np.ndarray | None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Kernels. Frames are viewed as (T, H, W*C) so that the inner loop runs over the W*C
# contiguous bytes of one frame row. Each thread owns whole rows (prange over H): for one
# row it streams that row of every frame exactly once, in time order, into accumulator
# rows that stay in L1 (3 x W*C float32, ~23 KB at 640x480x3). The time loop is split
# into the onset-only part, the shared apex frame and the offset-only part, so the inner
# pixel loops are branch-free and vectorise.
# --------------------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True, fastmath=False)
def _fused_kernel(frames, apex, w_full, w_on, w_off, do_on, do_off, full, onset, offset):
    """Fill ``full``, ``onset`` and ``offset`` (each (H, W*C) float32) in place.

    ``frames`` is (T, H, W*C) uint8 C-contiguous; ``w_full`` has length T, ``w_on`` length
    ``apex + 1`` (forward) and ``w_off`` length ``T - apex`` (already reversed: ``w_off[0]``
    multiplies the apex frame). ``do_on`` / ``do_off`` say whether the apex frame goes into
    the onset / offset image (False for a one-frame phase; then the other loop is empty).
    """
    n_frames, n_rows, n_cols = frames.shape
    for h in numba.prange(n_rows):
        f = full[h]
        o = onset[h]
        q = offset[h]
        for j in range(n_cols):
            f[j] = np.float32(0.0)
            o[j] = np.float32(0.0)
            q[j] = np.float32(0.0)

        # onset part: frames 0 .. apex-1 go into full and onset
        for t in range(apex):
            src = frames[t, h]
            wf = w_full[t]
            wo = w_on[t]
            for j in range(n_cols):
                x = np.float32(src[j])
                f[j] += wf * x
                o[j] += wo * x

        # the apex frame is shared by both phases
        src = frames[apex, h]
        wf = w_full[apex]
        wo = w_on[apex]
        wq = w_off[0]
        if do_on and do_off:
            for j in range(n_cols):
                x = np.float32(src[j])
                f[j] += wf * x
                o[j] += wo * x
                q[j] += wq * x
        elif do_on:
            for j in range(n_cols):
                x = np.float32(src[j])
                f[j] += wf * x
                o[j] += wo * x
        elif do_off:
            for j in range(n_cols):
                x = np.float32(src[j])
                f[j] += wf * x
                q[j] += wq * x
        else:
            for j in range(n_cols):
                f[j] += wf * np.float32(src[j])

        # offset part: frames apex+1 .. T-1 go into full and offset
        for t in range(apex + 1, n_frames):
            src = frames[t, h]
            wf = w_full[t]
            wq = w_off[t - apex]
            for j in range(n_cols):
                x = np.float32(src[j])
                f[j] += wf * x
                q[j] += wq * x


@numba.njit(cache=True, parallel=True, fastmath=False)
def _full_kernel(frames, w_full, full):
    """Fill ``full`` ((H, W*C) float32) in place with the forward dynamic image."""
    n_frames, n_rows, n_cols = frames.shape
    for h in numba.prange(n_rows):
        f = full[h]
        for j in range(n_cols):
            f[j] = np.float32(0.0)
        for t in range(n_frames):
            src = frames[t, h]
            wf = w_full[t]
            for j in range(n_cols):
                f[j] += wf * np.float32(src[j])


def _check_out(out: np.ndarray, shape: tuple[int, int, int]) -> None:
    want = (3, *shape)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array, got {type(out).__name__}")
    if out.dtype != np.float32 or out.shape != want or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous float32 array of shape {want}, got "
            f"dtype={out.dtype}, shape={out.shape}, c_contiguous={out.flags.c_contiguous}"
        )


def clip_dynamic_images(
    frames: np.ndarray,
    apex_index: int | None,
    weights: str = "linear",
    out: np.ndarray | None = None,
) -> ClipImages:
    """Full, onset and offset dynamic images of one clip, in one pass over the frames.

    Parameters
    ----------
    frames : np.ndarray [shape=(T, H, W, C), dtype=uint8]
        The clip's frames onset..offset, ``T >= 2``, ``C`` = 1 or 3, any ``H``, ``W``.
        Non-contiguous input is copied to a C-contiguous array first.
    apex_index : int or None
        0-based index of the apex frame inside ``frames`` (``0 <= apex_index < T``), or
        ``None`` when the apex is unknown: then only ``full`` is produced.
    weights : str
        ``"linear"`` or ``"harmonic"`` (see :func:`rank_pool_weights`).
    out : np.ndarray [shape=(3, H, W, C), dtype=float32] or None
        Optional C-contiguous buffer to write into (reuse it across clips of one size to
        avoid allocations). ``out[0]``, ``out[1]``, ``out[2]`` receive the full, onset and
        offset images; the returned arrays are views of it. A slot whose image is ``None``
        holds unspecified values.

    Returns
    -------
    images : ClipImages
        ``full``, ``onset`` and ``offset`` as float32 arrays [shape=(H, W, C)];
        ``onset`` is ``None`` when ``apex_index == 0`` (one-frame onset phase),
        ``offset`` is ``None`` when ``apex_index == T - 1`` (one-frame offset phase), both
        are ``None`` when ``apex_index`` is ``None``; ``notes`` says why.

    Raises
    ------
    ValueError
        If ``frames`` is not a uint8 array of shape (T, H, W, C) with ``T >= 2`` and
        ``C`` in (1, 3), if ``apex_index`` is out of range, if ``weights`` is unknown, or
        if ``out`` has the wrong shape, dtype or layout.

    Notes
    -----
    Accumulation is in float32 with the weights precomputed in float64 and rounded to
    float32. The offset image uses the reversed weights ``w'[k] = w[T' - 1 - k]`` of the
    offset phase (``T' = T - apex_index`` frames, ``k = 0`` at the apex); for linear
    weights this is ``T' + 1 - 2t`` for the ``t``-th frame from the apex (1-based).
    """
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4:
        raise ValueError(
            f"frames must have shape (T, H, W, C), got ndim={frames.ndim} "
            f"(shape {frames.shape})"
        )
    n_frames, height, width, channels = frames.shape
    if n_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames (T >= 2), got T={n_frames}")
    if channels not in (1, 3):
        raise ValueError(f"frames must have 1 or 3 channels, got C={channels}")
    if height < 1 or width < 1:
        raise ValueError(f"frames must have H, W >= 1, got H={height}, W={width}")
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; expected one of {WEIGHTS}")
    if apex_index is not None:
        if isinstance(apex_index, bool) or not isinstance(apex_index, (int, np.integer)):
            raise ValueError(f"apex_index must be an int or None, got {apex_index!r}")
        apex_index = int(apex_index)
        if not 0 <= apex_index < n_frames:
            raise ValueError(
                f"apex_index {apex_index} out of range for a clip of T={n_frames} frames "
                f"(expected 0 <= apex_index <= {n_frames - 1})"
            )

    image_shape = (height, width, channels)
    if out is None:
        out = np.empty((3, *image_shape), dtype=np.float32)
    else:
        _check_out(out, image_shape)

    src = np.ascontiguousarray(frames).reshape(n_frames, height, width * channels)
    flat = out.reshape(3, height, width * channels)
    w_full = rank_pool_weights(n_frames, weights).astype(np.float32)

    if apex_index is None:
        _full_kernel(src, w_full, flat[0])
        notes = ["apex unknown: onset and offset images not written"]
        return ClipImages(full=out[0], onset=None, offset=None, notes=notes)

    n_on = apex_index + 1
    n_off = n_frames - apex_index
    w_on = rank_pool_weights(n_on, weights).astype(np.float32)
    w_off = np.ascontiguousarray(rank_pool_weights(n_off, weights)[::-1]).astype(np.float32)
    do_on = n_on > 1
    do_off = n_off > 1
    _fused_kernel(src, apex_index, w_full, w_on, w_off, do_on, do_off, flat[0], flat[1], flat[2])

    notes: list[str] = []
    if not do_on:
        notes.append("onset phase is one frame (apex == onset): not written")
    if not do_off:
        notes.append("offset phase is one frame (apex == offset): not written")
    return ClipImages(
        full=out[0],
        onset=out[1] if do_on else None,
        offset=out[2] if do_off else None,
        notes=notes,
    )
