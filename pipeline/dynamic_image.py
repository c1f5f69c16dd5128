"""Dynamic images (approximate rank pooling) of micro-expression clips.

A dynamic image summarises a clip of frames ``F_1 .. F_T`` (``t`` is 1-based) as one
weighted sum ``d = sum_t a_t * F_t`` whose weights are negative early and positive late,
so the image encodes the direction of the motion (Bilen et al., "Dynamic Image Networks for Action
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
from functools import lru_cache

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from mer_di.options import WEIGHT_NAMES as WEIGHTS

__all__ = ["WEIGHTS", "ClipImages", "clip_dynamic_images", "rank_pool_weights"]


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


@lru_cache(maxsize=4096)
def _kernel_weights(n: int, kind: str, reverse: bool = False) -> np.ndarray:
    """Read-only float32 weights for the kernels (cached: clips repeat their lengths)."""
    w = rank_pool_weights(n, kind)
    if reverse:
        w = w[::-1]
    w = np.ascontiguousarray(w, dtype=np.float32)
    w.flags.writeable = False
    return w


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
# Kernels.
#
# Frames are viewed as (T, N) with N = H*W*C, images as (N,). The N pixels are cut into
# contiguous chunks (a few rows' worth, see _chunk_size) and the chunks are spread over
# the threads with prange. For its chunk a thread streams the matching bytes of every
# frame exactly once, in time order, into accumulators that stay in its L2 cache.
#
# What keeps the inner loops fast:
# - the time loop is split into the onset-only part, the shared apex frame and the
#   offset-only part, so the pixel loops have no branches and vectorise;
# - frames are taken 8 (then 4, then 1) at a time, so each accumulator element is loaded
#   and stored once per block instead of once per frame: one frame at a time, the
#   accumulator stores, not memory, bound the kernel;
# - each multiply-add is one fused multiply-add (llvm.fma, a single rounding) rather than
#   a multiply and an add. This is not fastmath: nothing is reassociated, the additions
#   stay in time order, ((acc + w0*x0) + w1*x1) + ..., and the result is deterministic
#   and independent of the thread count. (On a CPU without FMA, LLVM calls fmaf instead:
#   same results, slower.)
#
# Measured on 2 cores (benchmarks/README.md): about 25-40 GB/s of uint8 input, i.e. the
# kernel reads frames faster than np.copyto copies them; at 640x480x3 it is bound by the
# memory system, not by arithmetic.
# --------------------------------------------------------------------------------------

_CHUNK = 32768  # pixels (uint8 values) per work item; accumulators 128 KB each


@intrinsic
def _fma(typingctx, a, x, acc):
    """``a * x + acc`` in float32 with a single rounding (llvm.fma.f32)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@numba.njit(cache=True, inline="always")
def _chain8(a0, a1, a2, a3, a4, a5, a6, a7, x0, x1, x2, x3, x4, x5, x6, x7, acc):
    """acc + a0 x0 + ... + a7 x7 as eight fused multiply-adds in that order."""
    return _fma(a7, x7, _fma(a6, x6, _fma(a5, x5, _fma(a4, x4, _fma(
        a3, x3, _fma(a2, x2, _fma(a1, x1, _fma(a0, x0, acc))))))))


@numba.njit(cache=True)
def _acc2_block8(f, g, frames, t, lo, hi, wa, ia, wb, ib):
    """f += sum_k wa[ia+k] frames[t+k, lo:hi], g += sum_k wb[ib+k] frames[t+k, lo:hi], k < 8."""
    s0 = frames[t, lo:hi]
    s1 = frames[t + 1, lo:hi]
    s2 = frames[t + 2, lo:hi]
    s3 = frames[t + 3, lo:hi]
    s4 = frames[t + 4, lo:hi]
    s5 = frames[t + 5, lo:hi]
    s6 = frames[t + 6, lo:hi]
    s7 = frames[t + 7, lo:hi]
    a0, a1, a2, a3 = wa[ia], wa[ia + 1], wa[ia + 2], wa[ia + 3]
    a4, a5, a6, a7 = wa[ia + 4], wa[ia + 5], wa[ia + 6], wa[ia + 7]
    b0, b1, b2, b3 = wb[ib], wb[ib + 1], wb[ib + 2], wb[ib + 3]
    b4, b5, b6, b7 = wb[ib + 4], wb[ib + 5], wb[ib + 6], wb[ib + 7]
    for j in range(f.size):
        x0 = np.float32(s0[j])
        x1 = np.float32(s1[j])
        x2 = np.float32(s2[j])
        x3 = np.float32(s3[j])
        x4 = np.float32(s4[j])
        x5 = np.float32(s5[j])
        x6 = np.float32(s6[j])
        x7 = np.float32(s7[j])
        f[j] = _chain8(a0, a1, a2, a3, a4, a5, a6, a7, x0, x1, x2, x3, x4, x5, x6, x7, f[j])
        g[j] = _chain8(b0, b1, b2, b3, b4, b5, b6, b7, x0, x1, x2, x3, x4, x5, x6, x7, g[j])


@numba.njit(cache=True)
def _acc2_block4(f, g, frames, t, lo, hi, wa, ia, wb, ib):
    """Like :func:`_acc2_block8` for 4 frames."""
    s0, s1, s2, s3 = (frames[t, lo:hi], frames[t + 1, lo:hi], frames[t + 2, lo:hi],
                      frames[t + 3, lo:hi])
    a0, a1, a2, a3 = wa[ia], wa[ia + 1], wa[ia + 2], wa[ia + 3]
    b0, b1, b2, b3 = wb[ib], wb[ib + 1], wb[ib + 2], wb[ib + 3]
    for j in range(f.size):
        x0 = np.float32(s0[j])
        x1 = np.float32(s1[j])
        x2 = np.float32(s2[j])
        x3 = np.float32(s3[j])
        f[j] = _fma(a3, x3, _fma(a2, x2, _fma(a1, x1, _fma(a0, x0, f[j]))))
        g[j] = _fma(b3, x3, _fma(b2, x2, _fma(b1, x1, _fma(b0, x0, g[j]))))


@numba.njit(cache=True)
def _acc2_frame(f, g, src, a, b):
    """f += a * src, g += b * src for one frame's chunk."""
    for j in range(f.size):
        x = np.float32(src[j])
        f[j] = _fma(a, x, f[j])
        g[j] = _fma(b, x, g[j])


@numba.njit(cache=True)
def _acc1_frame(f, src, a):
    """f += a * src for one frame's chunk."""
    for j in range(f.size):
        f[j] = _fma(a, np.float32(src[j]), f[j])


@numba.njit(cache=True)
def _acc2_span(f, g, frames, lo, hi, t0, t1, wa, wb, shift_b):
    """Frames t0 .. t1-1 (pixels lo:hi) into f (weights wa[t]) and g (wb[t + shift_b])."""
    t = t0
    while t + 8 <= t1:
        _acc2_block8(f, g, frames, t, lo, hi, wa, t, wb, t + shift_b)
        t += 8
    if t + 4 <= t1:
        _acc2_block4(f, g, frames, t, lo, hi, wa, t, wb, t + shift_b)
        t += 4
    while t < t1:
        _acc2_frame(f, g, frames[t, lo:hi], wa[t], wb[t + shift_b])
        t += 1


# nogil: the build's decoder threads need the GIL between frames while the kernel runs
@numba.njit(cache=True, parallel=True, fastmath=False, nogil=True)
def _fused_kernel(frames, apex, w_full, w_on, w_off, do_on, do_off, full, onset, offset, chunk):
    """Fill ``full``, ``onset`` and ``offset`` (each (N,) float32) in place.

    ``frames`` is (T, N) uint8 C-contiguous; ``w_full`` has length T, ``w_on`` length
    ``apex + 1`` (forward) and ``w_off`` length ``T - apex`` (already reversed: ``w_off[0]``
    multiplies the apex frame). ``do_on`` / ``do_off`` say whether the apex frame goes into
    the onset / offset image (False for a one-frame phase, whose other loop is then
    empty and whose output stays zero). ``chunk`` pixels per work item.
    """
    n_frames, n_pix = frames.shape
    n_chunks = (n_pix + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        lo = c * chunk
        hi = min(lo + chunk, n_pix)
        f = full[lo:hi]
        o = onset[lo:hi]
        q = offset[lo:hi]
        f[:] = np.float32(0.0)
        o[:] = np.float32(0.0)
        q[:] = np.float32(0.0)

        # onset part: frames 0 .. apex-1 go into full and onset
        _acc2_span(f, o, frames, lo, hi, 0, apex, w_full, w_on, 0)

        # the apex frame is shared by both phases
        src = frames[apex, lo:hi]
        wf = w_full[apex]
        if do_on and do_off:
            wo = w_on[apex]
            wq = w_off[0]
            for j in range(hi - lo):
                x = np.float32(src[j])
                f[j] = _fma(wf, x, f[j])
                o[j] = _fma(wo, x, o[j])
                q[j] = _fma(wq, x, q[j])
        elif do_on:
            _acc2_frame(f, o, src, wf, w_on[apex])
        elif do_off:
            _acc2_frame(f, q, src, wf, w_off[0])
        else:
            _acc1_frame(f, src, wf)

        # offset part: frames apex+1 .. T-1 go into full and offset (w_off[t - apex])
        _acc2_span(f, q, frames, lo, hi, apex + 1, n_frames, w_full, w_off, -apex)


def _chunk_size(n_pix: int) -> int:
    """Pixels per work item: about _CHUNK, but at least 4 items per thread when small."""
    per_item = -(-n_pix // (4 * numba.get_num_threads()))
    per_item = -(-per_item // 64) * 64  # whole cache lines of uint8
    return max(64, min(_CHUNK, per_item))


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
    Each input frame is read exactly once: one fused pass accumulates all three images.
    Accumulation is in float32, in time order, with fused multiply-adds; the weights are
    computed in float64 and rounded to float32. The result does not depend on the number
    of threads. The offset image uses the reversed weights ``w'[k] = w[T' - 1 - k]`` of the
    offset phase (``T' = T - apex_index`` frames, ``k = 0`` at the apex); for linear
    weights this is ``T' + 1 - 2t`` for the ``t``-th frame from the apex (1-based).
    """
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4:
        raise ValueError(
            f"frames must have shape (T, H, W, C), got ndim={frames.ndim} (shape {frames.shape})"
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

    n_pix = height * width * channels
    src = np.ascontiguousarray(frames).reshape(n_frames, n_pix)
    flat = out.reshape(3, n_pix)
    chunk = _chunk_size(n_pix)
    w_full = _kernel_weights(n_frames, weights)

    if apex_index is None:
        # The fused kernel with the apex on the last frame and both phases off: the full
        # image gets exactly the same chain of multiply-adds in time order; the onset slot
        # is scratch (unspecified, as documented). One kernel to keep fast, not two.
        _fused_kernel(src, n_frames - 1, w_full, w_full, w_full, False, False, flat[0],
                      flat[1], flat[2], chunk)
        return ClipImages(
            full=out[0],
            onset=None,
            offset=None,
            notes=["apex unknown: onset and offset images not written"],
        )

    n_on = apex_index + 1
    n_off = n_frames - apex_index
    w_on = _kernel_weights(n_on, weights)
    w_off = _kernel_weights(n_off, weights, reverse=True)
    do_on = n_on > 1
    do_off = n_off > 1
    _fused_kernel(
        src, apex_index, w_full, w_on, w_off, do_on, do_off, flat[0], flat[1], flat[2], chunk
    )

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
