"""Tests for mer_di.pipeline.dynamic_image against a plain float64 NumPy reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from mer_di.pipeline.dynamic_image import (
    WEIGHTS,
    ClipImages,
    clip_dynamic_images,
    rank_pool_weights,
)

# --------------------------------------------------------------------------------------
# float64 reference (deliberately naive and independent of the package's weights code)
# --------------------------------------------------------------------------------------


def ref_weights(n: int, kind: str) -> np.ndarray:
    """a_t for t = 1 .. n, straight from the formulas."""
    if kind == "linear":
        return np.array([2.0 * t - n - 1.0 for t in range(1, n + 1)])
    if n == 1:
        return np.array([1.0])
    harmonic = [0.0]
    for k in range(1, n + 1):
        harmonic.append(harmonic[-1] + 1.0 / k)
    return np.array(
        [2.0 * (n - t + 1) - (n + 1) * (harmonic[n] - harmonic[t - 1]) for t in range(1, n + 1)]
    )


def reference_dynamic_image(frames: np.ndarray, kind: str) -> np.ndarray:
    """Forward dynamic image of frames (T, H, W, C) in float64."""
    w = ref_weights(frames.shape[0], kind)
    out = np.zeros(frames.shape[1:], dtype=np.float64)
    for t in range(frames.shape[0]):
        out += w[t] * frames[t].astype(np.float64)
    return out


def reference_clip(frames: np.ndarray, apex: int, kind: str):
    full = reference_dynamic_image(frames, kind)
    onset = reference_dynamic_image(frames[: apex + 1], kind) if apex > 0 else None
    offset = reference_dynamic_image(frames[apex:][::-1], kind) if apex < len(frames) - 1 else None
    return full, onset, offset


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    """Within rtol relative to the largest magnitude of the reference image."""
    assert got.dtype == np.float32
    assert got.shape == want.shape
    scale = max(float(np.abs(want).max()), 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


def random_frames(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------


def test_module_does_not_import_torch():
    code = "import sys, mer_di.pipeline.dynamic_image; sys.exit('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize("kind", WEIGHTS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 23, 140])
def test_rank_pool_weights_match_formula(n, kind):
    w = rank_pool_weights(n, kind)
    assert w.dtype == np.float64
    assert w.shape == (n,)
    np.testing.assert_allclose(w, ref_weights(n, kind), rtol=1e-12, atol=1e-12)
    if n >= 2:
        assert abs(w.sum()) < 1e-9 * n * n
        assert w[0] < 0 < w[-1]  # late frames weigh positively, early ones negatively
        if kind == "linear":
            assert np.all(np.diff(w) > 0)


def test_rank_pool_weights_small_values():
    np.testing.assert_array_equal(rank_pool_weights(4), [-3.0, -1.0, 1.0, 3.0])
    np.testing.assert_array_equal(rank_pool_weights(1, "harmonic"), [1.0])
    np.testing.assert_array_equal(rank_pool_weights(1, "linear"), [0.0])
    np.testing.assert_allclose(rank_pool_weights(2, "harmonic"), [-0.5, 0.5])


@pytest.mark.parametrize("n", [0, -3])
def test_rank_pool_weights_bad_n(n):
    with pytest.raises(ValueError, match="n must be >= 1"):
        rank_pool_weights(n)


def test_rank_pool_weights_bad_kind():
    with pytest.raises(ValueError, match="unknown weights"):
        rank_pool_weights(5, "cubic")


# --------------------------------------------------------------------------------------
# clip images against the reference
# --------------------------------------------------------------------------------------

CASES = [
    # (T, H, W, C, apex)
    (2, 5, 7, 1, 1),
    (2, 5, 7, 3, 0),
    (3, 13, 11, 3, 1),
    (7, 5, 7, 1, 3),
    (7, 13, 11, 3, 5),
    (23, 13, 11, 3, 10),
    (23, 5, 7, 1, 1),
    (23, 13, 11, 1, 21),
    (23, 9, 17, 3, 17),
]


@pytest.mark.parametrize("kind", WEIGHTS)
@pytest.mark.parametrize("case", CASES)
def test_matches_float64_reference(rng, case, kind):
    n_frames, height, width, channels, apex = case
    frames = random_frames(rng, (n_frames, height, width, channels))
    got = clip_dynamic_images(frames, apex, kind)
    assert isinstance(got, ClipImages)
    full, onset, offset = reference_clip(frames, apex, kind)

    assert_close(got.full, full)
    for name, image, want in (("onset", got.onset, onset), ("offset", got.offset, offset)):
        if want is None:
            assert image is None, name
            assert any(name in note for note in got.notes)
        else:
            assert image is not None, name
            assert_close(image, want)


@pytest.mark.parametrize("kind", WEIGHTS)
def test_larger_clip_matches_reference(rng, kind):
    # T = 57 exercises the 8-, 4- and 1-frame blocks of both phases
    frames = random_frames(rng, (57, 12, 10, 3))
    got = clip_dynamic_images(frames, 26, kind)
    full, onset, offset = reference_clip(frames, 26, kind)
    assert_close(got.full, full)
    assert_close(got.onset, onset)
    assert_close(got.offset, offset)
    assert got.notes == []


def test_image_larger_than_one_work_chunk(rng):
    # 120 x 100 x 3 = 36000 values per frame: more than one kernel work chunk
    frames = random_frames(rng, (13, 120, 100, 3))
    got = clip_dynamic_images(frames, 5, "harmonic")
    full, onset, offset = reference_clip(frames, 5, "harmonic")
    assert_close(got.full, full)
    assert_close(got.onset, onset)
    assert_close(got.offset, offset)


def test_result_independent_of_thread_count(rng):
    frames = random_frames(rng, (21, 17, 19, 3))
    many = clip_dynamic_images(frames, 8, "harmonic")
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = clip_dynamic_images(frames, 8, "harmonic")
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(many.full, one.full)
    np.testing.assert_array_equal(many.onset, one.onset)
    np.testing.assert_array_equal(many.offset, one.offset)


@pytest.mark.parametrize("kind", WEIGHTS)
@pytest.mark.parametrize("apex", [1, 4, 9, 15])
def test_offset_is_image_of_reversed_phase(rng, kind, apex):
    frames = random_frames(rng, (17, 6, 5, 3))
    got = clip_dynamic_images(frames, apex, kind)
    reversed_phase = np.ascontiguousarray(frames[apex:][::-1])
    # as a whole clip, the reversed offset phase gives the same full image ...
    again = clip_dynamic_images(reversed_phase, None, kind)
    np.testing.assert_allclose(
        got.offset, again.full, rtol=1e-5, atol=1e-5 * np.abs(again.full).max()
    )
    # ... and matches the float64 reference of the reversed frames
    assert_close(got.offset, reference_dynamic_image(reversed_phase, kind))


def test_offset_linear_weights_explicit(rng):
    # a~_t = T' + 1 - 2t for the t-th frame from the apex: apex weighs most
    frames = random_frames(rng, (9, 4, 3, 1))
    apex = 3
    n_off = 9 - apex
    want = np.zeros((4, 3, 1))
    for t in range(1, n_off + 1):
        want += (n_off + 1 - 2 * t) * frames[apex + t - 1].astype(np.float64)
    got = clip_dynamic_images(frames, apex, "linear")
    np.testing.assert_allclose(got.offset, want, rtol=0, atol=1e-3)


def test_apex_unknown_gives_full_only(rng):
    frames = random_frames(rng, (11, 7, 5, 3))
    got = clip_dynamic_images(frames, None, "harmonic")
    assert got.onset is None and got.offset is None
    assert got.notes and "apex unknown" in got.notes[0]
    assert_close(got.full, reference_dynamic_image(frames, "harmonic"))


# --------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", WEIGHTS)
@pytest.mark.parametrize("n_frames,apex", [(2, 1), (5, 2), (23, 9), (40, 17)])
def test_constant_clip_is_zero(n_frames, apex, kind):
    frames = np.full((n_frames, 6, 5, 3), 200, dtype=np.uint8)
    got = clip_dynamic_images(frames, apex, kind)
    images = [im for im in (got.full, got.onset, got.offset) if im is not None]
    for image in images:
        if kind == "linear":
            # integer weights: every partial sum is exact in float32
            np.testing.assert_array_equal(image, 0.0)
        else:
            w = rank_pool_weights(n_frames, kind)
            bound = 200 * np.abs(w).sum() * n_frames * np.finfo(np.float32).eps
            assert np.abs(image).max() <= bound


@pytest.mark.parametrize("kind,divisor", [("linear", 6), ("harmonic", 12)])
@pytest.mark.parametrize("n_frames", [2, 3, 7, 23, 60])
def test_ramp_closed_form(n_frames, kind, divisor):
    # I_t = t for t = 1 .. T, constant over pixels
    ramp = np.arange(1, n_frames + 1, dtype=np.uint8)
    frames = np.broadcast_to(ramp[:, None, None, None], (n_frames, 4, 6, 3)).copy()
    got = clip_dynamic_images(frames, None, kind)
    want = n_frames * (n_frames**2 - 1) / divisor
    np.testing.assert_allclose(got.full, want, rtol=1e-6)


# --------------------------------------------------------------------------------------
# one-frame phases
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", WEIGHTS)
def test_apex_at_onset_has_no_onset_image(rng, kind):
    frames = random_frames(rng, (8, 5, 7, 3))
    got = clip_dynamic_images(frames, 0, kind)
    assert got.onset is None
    assert got.notes == ["onset phase is one frame (apex == onset): not written"]
    full, _, offset = reference_clip(frames, 0, kind)
    assert_close(got.full, full)
    assert_close(got.offset, offset)


@pytest.mark.parametrize("kind", WEIGHTS)
def test_apex_at_offset_has_no_offset_image(rng, kind):
    frames = random_frames(rng, (8, 5, 7, 1))
    got = clip_dynamic_images(frames, 7, kind)
    assert got.offset is None
    assert got.notes == ["offset phase is one frame (apex == offset): not written"]
    full, onset, _ = reference_clip(frames, 7, kind)
    assert_close(got.full, full)
    assert_close(got.onset, onset)


def test_two_frames_apex_at_either_end(rng):
    frames = random_frames(rng, (2, 3, 4, 1))
    diff = frames[1].astype(np.float32) - frames[0].astype(np.float32)
    a0 = clip_dynamic_images(frames, 0)
    a1 = clip_dynamic_images(frames, 1)
    np.testing.assert_array_equal(a0.full, diff)
    np.testing.assert_array_equal(a0.offset, -diff)  # reversed: apex (frame 0) weighs +1
    np.testing.assert_array_equal(a1.onset, diff)
    assert a0.onset is None and a1.offset is None


# --------------------------------------------------------------------------------------
# layouts and buffers
# --------------------------------------------------------------------------------------


def test_non_contiguous_input(rng):
    big = random_frames(rng, (12, 10, 14, 4))
    frames = big[::2, 1:9, ::2, :3]  # strided, (6, 8, 7, 3)
    assert not frames.flags.c_contiguous
    got = clip_dynamic_images(frames, 2, "linear")
    want = clip_dynamic_images(np.ascontiguousarray(frames), 2, "linear")
    np.testing.assert_array_equal(got.full, want.full)
    np.testing.assert_array_equal(got.onset, want.onset)
    np.testing.assert_array_equal(got.offset, want.offset)
    assert_close(got.full, reference_dynamic_image(frames, "linear"))


def test_out_buffer_is_used_and_reusable(rng):
    out = np.full((3, 5, 6, 3), np.nan, dtype=np.float32)
    for apex in (3, 1):
        frames = random_frames(rng, (9, 5, 6, 3))
        got = clip_dynamic_images(frames, apex, "harmonic", out=out)
        assert np.shares_memory(got.full, out)
        assert np.shares_memory(got.onset, out) and np.shares_memory(got.offset, out)
        full, onset, offset = reference_clip(frames, apex, "harmonic")
        assert_close(got.full, full)
        assert_close(got.onset, onset)
        assert_close(got.offset, offset)


def test_bad_out_buffer(rng):
    frames = random_frames(rng, (4, 5, 6, 3))
    with pytest.raises(ValueError, match="out must be"):
        clip_dynamic_images(frames, 1, out=np.zeros((3, 5, 6, 3), dtype=np.float64))
    with pytest.raises(ValueError, match="out must be"):
        clip_dynamic_images(frames, 1, out=np.zeros((3, 6, 5, 3), dtype=np.float32))


# --------------------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------------------


def test_rejects_float_frames(rng):
    frames = random_frames(rng, (4, 5, 6, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="uint8"):
        clip_dynamic_images(frames, 1)


def test_rejects_single_frame(rng):
    with pytest.raises(ValueError, match="T >= 2"):
        clip_dynamic_images(random_frames(rng, (1, 5, 6, 3)), 0)


@pytest.mark.parametrize("apex", [-1, 4, 100])
def test_rejects_apex_out_of_range(rng, apex):
    with pytest.raises(ValueError, match="out of range"):
        clip_dynamic_images(random_frames(rng, (4, 5, 6, 3)), apex)


def test_rejects_unknown_weights(rng):
    with pytest.raises(ValueError, match="unknown weights"):
        clip_dynamic_images(random_frames(rng, (4, 5, 6, 3)), 1, "quadratic")


@pytest.mark.parametrize("shape", [(4, 5, 6), (4, 5, 6, 3, 1), (4, 5, 6, 2), (4, 5, 6, 4)])
def test_rejects_bad_shapes(rng, shape):
    with pytest.raises(ValueError, match="shape|channels"):
        clip_dynamic_images(random_frames(rng, shape), 1)


def test_rejects_non_array_and_bad_apex_type(rng):
    with pytest.raises(ValueError, match="numpy array"):
        clip_dynamic_images([[[[0]]], [[[1]]]], 0)
    with pytest.raises(ValueError, match="apex_index"):
        clip_dynamic_images(random_frames(rng, (4, 5, 6, 3)), 1.5)
