"""JPEG frames through libjpeg-turbo's own API (pipeline/jpeg.py): the same pixels as
cv2.imdecode, whatever the file's chroma subsampling, coding, size or reduction, and
OpenCV's judgement for anything it does not take."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from mer_di.pipeline import jpeg
from mer_di.pipeline.frames import _REDUCED, load_clip

pytestmark = pytest.mark.skipif(not jpeg.AVAILABLE, reason="simplejpeg is not installed")

SAMPLINGS = {"444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
             "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
             "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
             "411": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411}


def _image(h: int, w: int, grey: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 1.5)  # edges and smooth parts, as a face has


def _encode(img: np.ndarray, *params: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, list(params))
    assert ok
    return np.frombuffer(buf.tobytes(), np.uint8)


def _cases():
    for (h, w) in ((480, 640), (479, 641), (136, 255), (9, 17), (1, 1)):
        for name, factor in SAMPLINGS.items():
            yield f"{w}x{h}-{name}", _encode(_image(h, w, False, h + w),
                                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor)
        yield f"{w}x{h}-grey", _encode(_image(h, w, True, h * w))
    img = _image(240, 320, False, 7)
    yield "progressive", _encode(img, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    yield "restart-markers", _encode(img, cv2.IMWRITE_JPEG_RST_INTERVAL, 3)
    yield "optimised-huffman", _encode(img, cv2.IMWRITE_JPEG_OPTIMIZE, 1)
    yield "quality-100", _encode(img, cv2.IMWRITE_JPEG_QUALITY, 100)


CASES = dict(_cases())


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
def test_same_pixels_as_opencv(name, grey, reduce):
    data = CASES[name]
    want = cv2.imdecode(data, _REDUCED[(grey, reduce)])
    if want.ndim == 2:
        want = want[..., None]
    h, w = cv2.imdecode(data, cv2.IMREAD_UNCHANGED).shape[:2]
    got = jpeg.decode_jpeg(data, (h, w), grey, reduce)
    assert got is not None and got.shape == want.shape
    assert np.array_equal(got, want)
    # into a buffer of the clip's (a frame's slot): the same pixels, in that buffer
    out = np.full(want.shape, 77, np.uint8)
    into = jpeg.decode_jpeg(data, (h, w), grey, reduce, out)
    assert into is not None and np.shares_memory(into, out) and np.array_equal(out, want)


def test_what_it_does_not_take_is_left_to_opencv():
    data = CASES["479x480-420"] if "479x480-420" in CASES else CASES["641x479-420"]
    h, w = cv2.imdecode(data, cv2.IMREAD_UNCHANGED).shape[:2]
    assert jpeg.decode_jpeg(data[: len(data) // 2], (h, w), False, 2) is None  # truncated
    assert jpeg.decode_jpeg(data, (h + 1, w), False, 2) is None  # another size than said
    assert jpeg.decode_jpeg(np.frombuffer(b"\xff\xd8garbage", np.uint8), (h, w), False, 1) is None
    # a buffer of another shape is refused, never written out of its layout
    assert jpeg.decode_jpeg(data, (h, w), False, 2, np.empty((10, 10, 3), np.uint8)) is None


@pytest.mark.parametrize("crop", ["none", "haar"])
def test_clips_decode_to_the_same_frames_with_and_without_it(tmp_path, monkeypatch, crop):
    """A clip's frames through the build's loader, the new decoder against OpenCV alone
    (the whole frame decoded into the clip's array, or cropped from a decoded one)."""
    paths = []
    for n in range(6):
        p = tmp_path / f"img{n}.jpg"
        p.write_bytes(_encode(_image(480, 640, False, n)).tobytes())
        paths.append((n, p))
    with ThreadPoolExecutor(2) as pool:
        fast = load_clip(paths, 224, crop, pool)
        monkeypatch.setattr(jpeg, "_sj", None)
        slow = load_clip(paths, 224, crop, pool)
    assert fast.reduce == slow.reduce == 2 and fast.box == slow.box
    assert np.array_equal(fast.frames, slow.frames)


@pytest.mark.parametrize("name", ["641x479-420", "641x479-444", "641x479-grey", "progressive"])
def test_a_frame_read_as_stored_is_opencvs(tmp_path, monkeypatch, name):
    """The onset frame (read whole, as stored, to look for a face): the same array, in
    OpenCV's layout (BGR, or 2-D for grey), with and without the new decoder."""
    from mer_di.pipeline.frames import read_frame

    path = tmp_path / "img1.jpg"
    path.write_bytes(CASES[name].tobytes())
    flag = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    fast = read_frame(path, 1, flag)
    monkeypatch.setattr(jpeg, "_sj", None)
    slow = read_frame(path, 1, flag)
    assert fast.shape == slow.shape and fast.dtype == slow.dtype
    assert np.array_equal(fast, slow)
