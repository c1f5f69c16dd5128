"""JPEG frames decoded by libjpeg-turbo's own API (``simplejpeg``), into the clip's array.

``cv2.imdecode`` decodes through OpenCV's codec layer into a new array, which the build
then copies into its clip array. ``simplejpeg`` calls the same library (libjpeg-turbo,
with the defaults both use: the accurate integer DCT and fancy upsampling; the same DCT
scaling for a reduced decode) and writes into a buffer we give it: the same pixels
(``tests/test_jpeg.py`` compares it with ``cv2.imdecode`` over chroma subsamplings,
progressive and restart-marker files, greyscale, odd sizes and every reduction) for less
CPU: the build of a CASME II-shaped look-alike took 6.6-8.0 ms CPU a 60-frame clip less
with it, 8-11 % less time (``benchmarks/README.md``, "Build", second round). It releases
the GIL while it decodes, as OpenCV does.

A file it does not take as it is (not YCbCr or greyscale, such as CMYK or Adobe RGB; a
damaged or truncated file, where it stops at libjpeg's first warning) is left to OpenCV,
which decodes it, or judges it bad, exactly as before: :func:`decode_jpeg` returns None
and the caller falls back.
"""

from __future__ import annotations

import numpy as np

try:  # a dependency; without it (a platform with no wheel) OpenCV decodes every frame
    import simplejpeg as _sj
except ImportError:  # pragma: no cover - simplejpeg is installed with the project
    _sj = None

AVAILABLE = _sj is not None
_COLORSPACES = ("YCbCr", "Gray")  # what a decode to BGR or grey takes exactly as OpenCV


def reduced_size(h: int, w: int, reduce: int) -> tuple[int, int]:
    """The size (height, width) a decode at 1/``reduce`` gives: libjpeg's, rounded up."""
    return -(-h // reduce), -(-w // reduce)


def decode_jpeg(data: np.ndarray, size: tuple[int, int], grey: bool, reduce: int,
                out: np.ndarray | None = None) -> np.ndarray | None:
    """Decode a JPEG file's bytes at 1/``reduce`` (1, 2, 4, 8) as BGR, or grey when
    ``grey``; ``size`` (h, w) is the frame's size from its header.

    Returns the image [shape=(h', w', C), uint8, C = 3 or 1, h', w' =
    :func:`reduced_size`], decoded into ``out`` (and ``out`` itself) when ``out`` is
    given: a C-contiguous uint8 array of exactly that shape. None when this decoder does
    not take the file (see the module's docstring); ``out`` may then hold anything.
    """
    if _sj is None:
        return None
    try:
        h, w, colorspace, _ = _sj.decode_jpeg_header(data)
        if (h, w) != size or colorspace not in _COLORSPACES:
            return None
        eh, ew = reduced_size(h, w, reduce)
        img = _sj.decode_jpeg(data, colorspace="GRAY" if grey else "BGR",
                              min_height=eh, min_width=ew, min_factor=reduce, buffer=out,
                              strict=True)
    except Exception:  # any refusal: OpenCV decides, as it did before this decoder
        return None
    if img.shape != (eh, ew, 1 if grey else 3):
        return None
    return img
