"""Decoding a clip's frames: only the ones it needs, in parallel, cropped and resized.

A clip's frames are decoded by a thread pool (OpenCV releases the GIL while it decodes).
Where the JPEG decoder's reduced-size decoding (1/2, 1/4, 1/8, done in the DCT, much
cheaper than a full decode) still leaves at least the target size for the crop, we use
it. Frames are then only cropped (a view) and stacked in the decoder's channel order: the
dynamic image is a linear sum, so resizing and reordering channels commute with pooling,
and :func:`finish_image` does both once per *image* instead of once per frame (exactly,
with no per-frame uint8 rounding, and 60x fewer resizes for a 60-frame clip).
"""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mer_di.errors import FrameError
from mer_di.options import CROP_NAMES as CROPS
from mer_di.pipeline.jpeg import decode_jpeg, reduced_size

FRAMES_PER_TASK = 4  # frames a decoder thread takes at a time
# Bounds on one frame file: far above any dataset's (SAMM: 2040x1088, 4K video: 8.3 Mpx),
# far below what exhausts memory.
MAX_FRAME_PIXELS = 64 * 1024 * 1024
MAX_FRAME_BYTES = 256 * 1024 * 1024
HAAR_MARGIN = 0.15  # fraction of the detected face's side added on every side
# Frames are pixels as stored: EXIF orientation is ignored by every decode, so the first
# frame (read as stored) and the reduced decodes always agree on the geometry.
_IGNORE = cv2.IMREAD_IGNORE_ORIENTATION
_DECODE_FLAGS = {  # (grey, reduction) -> OpenCV flag
    (False, 1): cv2.IMREAD_COLOR, (False, 2): cv2.IMREAD_REDUCED_COLOR_2,
    (False, 4): cv2.IMREAD_REDUCED_COLOR_4, (False, 8): cv2.IMREAD_REDUCED_COLOR_8,
    (True, 1): cv2.IMREAD_GRAYSCALE, (True, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (True, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4, (True, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
_REDUCED = {k: flag | _IGNORE for k, flag in _DECODE_FLAGS.items()}
_AS_STORED = (cv2.IMREAD_UNCHANGED, cv2.IMREAD_UNCHANGED | _IGNORE)
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class Box:
    """A crop box in full-resolution pixels: ``x, y`` top-left, ``side`` (square) or w/h."""

    x: int
    y: int
    w: int
    h: int

    def scaled(self, factor: int) -> Box:
        return Box(self.x // factor, self.y // factor, max(1, self.w // factor),
                   max(1, self.h // factor))


@dataclass
class ClipFrames:
    """Decoded, cropped frames [shape=(T, h, w, C), dtype=uint8], BGR or grey (C = 1),
    at the decoder's resolution, and what was done."""

    frames: np.ndarray
    box: Box
    reduce: int
    notes: list[str]
    grey: bool


def read_frame(path: Path, number: int, flag: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Decode one frame file; raise :class:`FrameError` for a missing, empty or bad file."""
    data = _read_bytes(path, number)
    if flag in _AS_STORED and data[:2].tobytes() == b"\xff\xd8":
        # a JPEG as stored (the onset frame a face is looked for on): libjpeg-turbo's API
        # where it takes the file, in OpenCV's layout (BGR, or 2-D grey)
        header = _jpeg_header(data[:1 << 16].tobytes())
        if header is not None and header[2] in (1, 3):
            _check_geometry(header[0], header[1], path, number)
            img = decode_jpeg(data, header[:2], header[2] == 1, 1)
            if img is not None:
                return img[..., 0] if header[2] == 1 else img
    return _decode(data, path, number, flag)


def _read_bytes(path: Path, number: int) -> np.ndarray:
    try:
        # opened without blocking and checked before reading: a FIFO, a device or a folder
        # where a frame should be is a bad frame, never a hang
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise FrameError(f"frame {number} ({path}): cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FrameError(f"frame {number} ({path}): not a regular file")
        if st.st_size > MAX_FRAME_BYTES:
            raise FrameError(f"frame {number} ({path}): {st.st_size} bytes, more than a frame "
                             f"may have ({MAX_FRAME_BYTES})")
        try:
            data = np.frombuffer(fh.read(), dtype=np.uint8)
        except OSError as exc:
            raise FrameError(f"frame {number} ({path}): cannot read ({exc.strerror})") from None
    if data.size == 0:
        raise FrameError(f"frame {number} ({path}): empty file")
    return data


def _check_geometry(h: int, w: int, path: Path, number: int) -> None:
    """A frame header claiming more than :data:`MAX_FRAME_PIXELS` is a bad frame: decoding
    it would allocate gigabytes (a hostile 65000x65000 header stopped whole builds)."""
    if h * w > MAX_FRAME_PIXELS:
        raise FrameError(f"frame {number} ({path}): its header claims {w}x{h} pixels, more "
                         f"than a frame may have ({MAX_FRAME_PIXELS})")


def _decode(data: np.ndarray, path: Path, number: int, flag: int,
            checked: bool = False) -> np.ndarray:
    """Decode a frame file's bytes; ``checked``: its header was already read and its
    geometry checked by the caller."""
    header = None if checked else frame_header(data[:1 << 16].tobytes())
    if header is not None:
        _check_geometry(header[0], header[1], path, number)
    try:
        img = cv2.imdecode(data, flag)
    except (cv2.error, MemoryError) as exc:  # any decoder failure is a bad frame
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise FrameError(f"frame {number} ({path}): the decoder failed ({reason})") from None
    if img is None:
        raise FrameError(f"frame {number} ({path}): not a decodable image")
    return img


def jpeg_geometry(path: Path) -> tuple[int, int, int] | None:
    """``(height, width, components)`` from a JPEG's frame header, without decoding it;
    None for anything else (not a JPEG, unreadable, no frame header in the first 64 KiB),
    where the caller decodes the frame instead."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # not a file: decoding it says so
        data = fh.read(1 << 16)
    return _jpeg_header(data)


def _jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """:func:`jpeg_geometry` of a JPEG's first bytes."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF_MARKERS:
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            return (h, w, data[i + 9]) if h and w else None
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def _png_header(data: bytes) -> tuple[int, int, int] | None:
    """``(height, width, components)`` from a PNG's IHDR chunk; None for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 26:
        return None
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    components = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25])
    return (h, w, components) if h and w and components else None


def _bmp_header(data: bytes) -> tuple[int, int, int | None] | None:
    """``(height, width, components)`` from a BMP's header; components None for a palette
    image (8 bits or fewer: the decoder gives grey or colour after its palette)."""
    if data[:2] != b"BM" or len(data) < 30:
        return None
    if int.from_bytes(data[14:18], "little") == 12:  # BITMAPCOREHEADER
        w, h = int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
        bits = int.from_bytes(data[24:26], "little")
    else:  # BITMAPINFOHEADER and later: signed sizes, a negative height is top-down
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = abs(int.from_bytes(data[22:26], "little", signed=True))
        bits = int.from_bytes(data[28:30], "little")
    return (h, w, None if bits <= 8 else 3) if h and w > 0 else None


def frame_header(data: bytes) -> tuple[int, int, int | None] | None:
    """``(height, width, components)`` from the header of a JPEG, PNG or BMP frame's first
    bytes, without decoding it (components None where the header does not decide it);
    None for another format, where the decoder alone judges the frame."""
    return _jpeg_header(data) or _png_header(data) or _bmp_header(data)


def _is_grey(img: np.ndarray) -> bool:
    return img.ndim == 2 or img.shape[2] == 1


# One cascade per thread: a CascadeClassifier is not safe to share between threads (two
# clips load at once during a build, and shared detections came back wrong).
_CASCADES = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    cascade = getattr(_CASCADES, "cascade", None)
    if cascade is None:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades
                                        + "haarcascade_frontalface_default.xml")
        _CASCADES.cascade = cascade
    return cascade


def detect_face(img: np.ndarray) -> Box | None:
    """The largest frontal face (Haar cascade shipped with OpenCV) as a square box with a
    margin, clipped to the image; None when no face is found. Thread-safe."""
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape[:2]
    faces = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                      minSize=(max(24, min(h, w) // 8),) * 2)
    if len(faces) == 0:
        return None
    fx, fy, fw, fh = max(faces, key=lambda f: f[2] * f[3])
    side = int(round(max(fw, fh) * (1 + 2 * HAAR_MARGIN)))
    side = min(side, h, w)
    cx, cy = fx + fw / 2, fy + fh / 2
    x = int(round(min(max(cx - side / 2, 0), w - side)))
    y = int(round(min(max(cy - side / 2, 0), h - side)))
    return Box(x, y, side, side)


def centre_box(h: int, w: int) -> Box:
    side = min(h, w)
    return Box((w - side) // 2, (h - side) // 2, side, side)


def choose_reduce(box: Box, size: int | None) -> int:
    """The largest JPEG reduction (1, 2, 4, 8) that keeps the box at least ``size``."""
    if size is None:
        return 1
    for factor in (8, 4, 2):
        if min(box.w, box.h) // factor >= size:
            return factor
    return 1


def _decode_one(path: Path, number: int, grey: bool, reduce: int, box: Box,
                out: np.ndarray, first: tuple[int, int]) -> str:
    """Decode one frame into ``out``; a frame whose header gives another size than the
    clip's first frame (``first``, (h, w)) is an error (the clip is skipped), one with
    another channel count is converted by the decoder and named in the returned note."""
    data = _read_bytes(path, number)
    # the frame header is near the start: look in 4 KiB first, 64 KiB if metadata is long
    # (a JPEG's; PNG and BMP (SMIC's frames) say their size in their first 30 bytes)
    header = frame_header(data[:4096].tobytes()) or _jpeg_header(data[:1 << 16].tobytes())
    note = ""
    if header is not None:
        h, w, components = header
        _check_geometry(h, w, path, number)
        if (h, w) != first:
            raise FrameError(f"frame {number} ({path}): size {w}x{h} differs from the clip's "
                             f"first frame ({first[1]}x{first[0]}): clip skipped")
        if components is not None and (components == 1) != grey:
            kind = "greyscale" if components == 1 else "colour"
            note = (f"frame {number} ({path.name}) is {kind} in a "
                    f"{'greyscale' if grey else 'colour'} clip: converted")
    b = box.scaled(reduce)
    img = None
    if header is not None and data[:2].tobytes() == b"\xff\xd8":  # a JPEG
        # the whole reduced frame is the clip's frame (--crop none): straight into it
        whole = (b.x, b.y) == (0, 0) and out.shape[:2] == reduced_size(h, w, reduce)
        img = decode_jpeg(data, (h, w), grey, reduce, out if whole else None)
        if img is not None and whole:
            return note
    if img is None:  # not a JPEG, or one that libjpeg-turbo's API did not take as it is
        img = _decode(data, path, number, _REDUCED[(grey, reduce)], checked=header is not None)
    if img.shape[0] < b.y + out.shape[0] or img.shape[1] < b.x + out.shape[1]:
        raise FrameError(f"frame {number} ({path}): size {img.shape[1]}x{img.shape[0]} "
                         "differs from the clip's first frame")
    crop = img[b.y:b.y + out.shape[0], b.x:b.x + out.shape[1]]
    out[...] = crop.reshape(out.shape)
    return note


def _decode_many(paths: list[tuple[int, Path]], grey: bool, reduce: int, box: Box,
                 out: np.ndarray, first: tuple[int, int]) -> list[str]:
    notes = [_decode_one(path, number, grey, reduce, box, dst, first)
             for (number, path), dst in zip(paths, out, strict=True)]
    return [n for n in notes if n]


def finish_image(img: np.ndarray, size: int | None, grey: bool) -> np.ndarray:
    """A pooled image in decoder order -> the cache's: resized to ``size`` x ``size``
    (area interpolation; None keeps it) and RGB (colour) [shape=(H, W, C), float32]."""
    if size is not None and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[..., None]
    img = img.astype(np.float32, copy=False)
    if not grey:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)  # one SIMD pass, contiguous
    return np.ascontiguousarray(img)


def load_clip(paths: list[tuple[int, Path]], size: int | None, crop: str,
              executor: Executor) -> ClipFrames:
    """Decode a clip's frames ``[(frame number, path)]`` (onset first) into one array.

    The crop box is fixed for the whole clip, from the onset frame: a box that moved from
    frame to frame would invent motion. Frames come back cropped, at the decoder's
    (possibly reduced) resolution, in its channel order (BGR or grey); pool them, then
    :func:`finish_image`. ``size`` None keeps the native size. Raises
    :class:`FrameError` naming the first bad file.
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose one of {', '.join(CROPS)}")
    number0, path0 = paths[0]
    geometry = jpeg_geometry(path0) if crop == "none" else None
    if geometry is None:
        first = read_frame(path0, number0, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        h, w = first.shape[:2]
        grey = _is_grey(first)
    else:  # the whole frame: its size from the header, no full-size decode of frame 1
        h, w, components = geometry
        grey = components == 1
        _check_geometry(h, w, path0, number0)
    notes: list[str] = []
    box = Box(0, 0, w, h)  # crop none: the whole frame (squashed to size x size)
    if crop == "haar":
        box = detect_face(first if first.ndim == 2 or first.shape[2] == 3
                          else cv2.cvtColor(first, cv2.COLOR_BGRA2BGR))
        if box is None:
            box = centre_box(h, w)
            notes.append(f"no face found on the onset frame ({path0.name}): centre crop")
    reduce = choose_reduce(box, size)
    b = box.scaled(reduce)
    frames = np.empty((len(paths), b.h, b.w, 1 if grey else 3), np.uint8)
    # a few frames per task: one future per frame cost more Python (and GIL) than a decode
    step = FRAMES_PER_TASK
    futures = [executor.submit(_decode_many, paths[i:i + step], grey, reduce, box,
                               frames[i:i + step], (h, w)) for i in range(0, len(paths), step)]
    for f in futures:
        notes += f.result()  # re-raises the first FrameError
    return ClipFrames(frames, box, reduce, notes, grey)
