"""Optical flow of a clip, the flow models' input: onset->apex and apex->offset.

For a clip with a usable apex the build stores (:mod:`mer_di.pipeline.build`):

- ``flow_onset_apex``: the flow from the onset frame to the apex frame,
- ``flow_apex_offset``: the flow from the apex frame to the offset frame,

each [shape=(H, W, 3), float32] at the cache's stored size: channel 0 ``u`` (horizontal
displacement, pixels per frame pair at the stored size, + to the right), 1 ``v``
(vertical, + downwards), 2 the optical strain ``sqrt(ux^2 + vy^2 + 0.5 (uy + vx)^2)``
(the magnitude of the strain tensor of (u, v); its spatial derivatives by central
differences, one-sided at the border, ``np.gradient``, in pixels per pixel, >= 0).
Pixel (y, x) of the first frame moves to (y + v, x + u) in the second.

Flow is computed on the grey frames at the stored size: each decoded frame (already
cropped, at the decoder's resolution, BGR or grey) is converted to grey (OpenCV's BT.601
weights) and resized with area averaging to the stored size, rounded to uint8. Raw values,
no normalisation (a model's is :func:`mer_di.training.flow_input.prepare_flow`).

Methods (:data:`FLOW_METHODS`; the build's ``--flow``): ``farneback`` and ``dis`` are in
core OpenCV; ``tvl1`` (TV-L1, the field's standard) needs OpenCV's contrib build
(``cv2.optflow``). Their parameters are fixed here (:data:`FLOW_SETTINGS`), and
:data:`FLOW_VERSION` changes when they do, so a cache's flow is recomputed.

This module must never import torch.
"""

from __future__ import annotations

import cv2
import numpy as np

from mer_di.errors import CacheError
from mer_di.pipeline.store import FLOW_IMAGES

FLOW_ONSET_APEX, FLOW_APEX_OFFSET = FLOW_IMAGES
FLOW_METHODS = {"none": "no optical flow (dynamic images only)",
                "farneback": "Farneback's polynomial expansion (core OpenCV)",
                "dis": "dense inverse search, DIS (core OpenCV; recommended)",
                "tvl1": "TV-L1, the field's standard (needs OpenCV contrib: cv2.optflow)"}
# OpenCV's parameters per method (documented defaults, small windows for faces of
# 28-224 pixels); changing any of them must change FLOW_VERSION
FLOW_SETTINGS = {
    "farneback": {"pyr_scale": 0.5, "levels": 3, "winsize": 9, "iterations": 3,
                  "poly_n": 5, "poly_sigma": 1.1, "flags": 0},
    "dis": {"preset": "medium"},
    "tvl1": {"opencv_defaults": True},
}
FLOW_VERSION = 1


def has_tvl1() -> bool:
    """Whether the installed OpenCV has TV-L1 (``cv2.optflow``, the contrib build)."""
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def check_flow_method(method: str) -> None:
    """Raise :class:`CacheError` for an unknown method, or ``tvl1`` where the installed
    OpenCV lacks it (saying which build has it)."""
    if method not in FLOW_METHODS:
        raise CacheError(f"unknown flow method {method!r}; choose one of "
                         f"{', '.join(FLOW_METHODS)}")
    if method == "tvl1" and not has_tvl1():
        raise CacheError(f"--flow tvl1 needs OpenCV's contrib build (cv2.optflow), which "
                         f"this OpenCV {cv2.__version__} lacks: pip install "
                         "opencv-contrib-python-headless (in place of opencv-python), or "
                         "use --flow dis or --flow farneback (core OpenCV)")


def grey_at_size(frame: np.ndarray, size: int | None) -> np.ndarray:
    """A decoded frame [shape=(h, w, C), uint8, BGR (C = 3) or grey (C = 1)] -> grey at the
    stored size [shape=(size, size), uint8] (``size`` None keeps h x w)."""
    img = frame[..., 0] if frame.shape[2] == 1 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if size is not None and img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def dense_flow(first: np.ndarray, second: np.ndarray, method: str) -> np.ndarray:
    """The flow from ``first`` to ``second`` [shape=(H, W), uint8 grey] by ``method``:
    [shape=(H, W, 2), float32], (u, v) in pixels."""
    check_flow_method(method)
    if method == "none":
        raise ValueError("method 'none' computes no flow")
    if method == "farneback":
        s = FLOW_SETTINGS["farneback"]
        flow = cv2.calcOpticalFlowFarneback(first, second, None, s["pyr_scale"], s["levels"],
                                            s["winsize"], s["iterations"], s["poly_n"],
                                            s["poly_sigma"], s["flags"])
    elif method == "dis":
        flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(
            first, second, None)
    else:
        flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(first, second, None)
    return np.asarray(flow, np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """The optical strain of a flow [shape=(H, W, 2), (u, v)]: [shape=(H, W), float32],
    ``sqrt(ux^2 + vy^2 + 0.5 (uy + vx)^2)``, derivatives by ``np.gradient`` (central
    differences, one-sided at the border; a side of one pixel has derivative 0)."""
    u = flow[..., 0].astype(np.float64)
    v = flow[..., 1].astype(np.float64)

    def grad(a: np.ndarray, axis: int) -> np.ndarray:
        return np.gradient(a, axis=axis) if a.shape[axis] > 1 else np.zeros_like(a)

    ux, uy = grad(u, 1), grad(u, 0)
    vx, vy = grad(v, 1), grad(v, 0)
    return np.sqrt(ux ** 2 + vy ** 2 + 0.5 * (uy + vx) ** 2).astype(np.float32)


def flow_image(first: np.ndarray, second: np.ndarray, method: str) -> np.ndarray:
    """u, v and strain from grey ``first`` to ``second`` [shape=(H, W), uint8]:
    [shape=(H, W, 3), float32]."""
    flow = dense_flow(first, second, method)
    return np.dstack([flow, optical_strain(flow)]).astype(np.float32)


def clip_flow(frames: np.ndarray, at: tuple[int, int, int], size: int | None, method: str,
              onset_ok: bool = True, offset_ok: bool = True
              ) -> tuple[dict[str, np.ndarray], list[str]]:
    """The flow images of one clip: ``({name: (H, W, 3) float32}, notes)``.

    ``frames`` [shape=(T, h, w, C), uint8, the decoder's BGR or grey] hold the clip's
    frames (all of them, or only those named by ``at``); ``at`` = (onset, apex, offset)
    indices into ``frames``. A phase whose two frames are one frame (apex = onset,
    apex = offset) has no flow, and the notes say so; one that the sheet's row does not
    allow (``onset_ok``, ``offset_ok``, as for the phase dynamic images) is left out.
    """
    grey = {i: grey_at_size(frames[i], size) for i in sorted(set(at))}
    out: dict[str, np.ndarray] = {}
    notes: list[str] = []
    onset, apex, offset = at
    for name, (a, b), ok, end in ((FLOW_ONSET_APEX, (onset, apex), onset_ok, "onset"),
                                  (FLOW_APEX_OFFSET, (apex, offset), offset_ok, "offset")):
        if not ok:
            continue
        if a == b:
            notes.append(f"no {name} (the apex is the {end} frame: no motion)")
            continue
        out[name] = flow_image(grey[a], grey[b], method)
    return out, notes


def jitter_flow(grey_of, apex: int, shifts: list[int], k: int, method: str,
                own: np.ndarray | None = None) -> np.ndarray:
    """``--apex-jitter k``'s flow of one clip, ``jitter_flow_onset_apex`` [shape=(2k+1, H,
    W, 3), float32]: entry ``j`` the onset -> (apex + j - k) flow image, for the valid
    ``shifts`` (those of the clip's ``jitter_shifts``), all zeros for the others.
    ``grey_of(i)``: the grey frame at the stored size of clip frame ``i`` (0 = the onset,
    :func:`grey_at_size`); ``own``: the clip's ``flow_onset_apex``, which is entry ``k``."""
    onset = grey_of(0)
    stack = None
    for s in shifts:
        image = own if (s == 0 and own is not None) else flow_image(onset, grey_of(apex + s),
                                                                   method)
        if stack is None:
            stack = np.zeros((2 * k + 1, *image.shape), np.float32)
        stack[s + k] = image
    if stack is None:
        raise ValueError("jitter_flow needs at least one valid shift")
    return stack
