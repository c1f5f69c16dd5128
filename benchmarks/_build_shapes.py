"""The build benchmark's datasets ("shapes": a real dataset's frame size, colour and crop on
look-alike frames), its floors and one timed build. Imported by ``bench_build.py`` and
``bench_build_ab.py``.

Floors are measured on the very frames a build of the shape decodes (onset..offset of every
usable clip), each clip at the decoder reduction and colour the build chose for it (read
back from a warm-up build's cache: ``jpeg_reduce``, ``channels``), on a
``ThreadPoolExecutor(workers)``: ``np.fromfile`` + ``cv2.imdecode``, nothing else. The
*full-decode* floor is the same at full size (no reduction).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np


@dataclass(frozen=True)
class Shape:
    """A build workload: ``dataset`` generated at ``frame_size`` (W, H) with clips of
    ``length`` frames (onset..offset; None: the dataset's own range), built at ``size``
    with ``crop``."""

    key: str
    label: str
    dataset: str
    layout: str | None
    frame_size: tuple[int, int]
    length: tuple[int, int] | None
    subjects: int
    clips_per_class: int
    crop: str
    size: int = 224
    seed: int = 0

    def folder(self, base: Path) -> Path:
        w, h = self.frame_size
        length = ("" if self.length is None else f"_T{self.length[0]}"
                  if self.length[0] == self.length[1] else f"_T{self.length[0]}-{self.length[1]}")
        return base / (f"{self.dataset}_{self.layout or 'default'}_{w}x{h}{length}"
                       f"_s{self.subjects}_c{self.clips_per_class}_seed{self.seed}")


# CASME II's 640x480 colour frames, whole (the issue-22 figures' workload); SAMM's
# 2040x1088 greyscale frames with background, Haar-cropped; CAS(ME)^3's 1280x720 colour
# frames with background, Haar-cropped, its short clips (8-15 frames, quirks included)
SHAPES = {
    "casme2": Shape("casme2", "CASME II 640x480 colour, crop none", "casme2", "raw",
                    (640, 480), (60, 60), 4, 2, "none"),
    "samm": Shape("samm", "SAMM 2040x1088 grey, crop haar", "samm", None, (2040, 1088),
                  (40, 40), 2, 1, "haar"),
    "casme3": Shape("casme3", "CAS(ME)^3 1280x720 colour, crop haar", "casme3", None,
                    (1280, 720), None, 2, 1, "haar"),
}
QUICK = {"casme2": {"subjects": 2, "clips_per_class": 1}}


def ensure_dataset(shape: Shape, base: Path) -> tuple[Path, float | None]:
    """The shape's look-alike dataset, generated when missing (the generator renames a
    finished dataset into place, so a folder that exists is whole); also the seconds
    generating took (None: it was there)."""
    from mer_di.data_manifest.synth import generate_dataset

    root = shape.folder(base)
    if root.is_dir():
        return root, None
    base.mkdir(parents=True, exist_ok=True)
    print(f"# generating {shape.label} into {root} (once; kept for later runs)", flush=True)
    t0 = time.perf_counter()
    generate_dataset(shape.dataset, root, subjects=shape.subjects,
                     clips_per_class=shape.clips_per_class, frame_size=shape.frame_size,
                     length=shape.length, layout=shape.layout, seed=shape.seed)
    return root, time.perf_counter() - t0


def usable_rows(shape: Shape, root: Path) -> list:
    from mer_di.data_manifest import build_manifest

    return [r for r in build_manifest(shape.dataset, root, classes="all").rows if r.full_ok]


def build(shape: Shape, root: Path, out: Path, workers: int, expect: tuple[int, int]):
    """One build from scratch into ``out`` (removed first, with any parts); checks that it
    built ``expect`` = (clips, frames). Returns the report."""
    from mer_di.pipeline.build import BuildOptions, build_cache

    out.unlink(missing_ok=True)
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)
    report = build_cache(shape.dataset, root, out, options=BuildOptions(
        size=shape.size, crop=shape.crop, workers=workers))
    if (report.built, report.frames) != expect or report.reused:
        raise RuntimeError(f"the build made {report.built} clips ({report.frames} frames, "
                           f"{report.reused} reused); expected {expect[0]} ({expect[1]} "
                           "frames) built from scratch")
    return report


def decode_jobs(shape: Shape, root: Path, cache: Path) -> list[tuple[Path, int, int]]:
    """``(frame file, reduced flag, full-size flag)`` of every frame the build decoded, with
    the reduction and colour the build used for its clip (from the cache ``cache``)."""
    from mer_di.pipeline.frames import _REDUCED

    jobs = []
    with h5py.File(cache, "r") as f:
        for row in usable_rows(shape, root):
            if row.key not in f:
                continue  # a clip the build skipped (an unreadable frame): not decoded
            a = f[row.key].attrs
            grey = int(a["channels"]) == 1
            reduced, full = _REDUCED[(grey, int(a["jpeg_reduce"]))], _REDUCED[(grey, 1)]
            jobs += [(row.frame_path(n), reduced, full)
                     for n in range(row.onset, row.offset + 1)]
    return jobs


def decode_floor(jobs: list[tuple[Path, int, int]], workers: int, full: bool = False,
                 decoder: str = "opencv") -> None:
    """Read and decode every frame of ``jobs`` on ``workers`` threads, nothing else
    (``full``: at full size). ``decoder`` "opencv": ``np.fromfile`` + ``cv2.imdecode`` (the
    issue's floor); "build": the build's own JPEG decoder (:func:`mer_di.pipeline.jpeg.
    decode_jpeg`, libjpeg-turbo's API into a buffer kept per thread), OpenCV for a file it
    does not take, as in the build."""
    if decoder == "build":
        import threading

        from mer_di.pipeline.frames import _REDUCED
        from mer_di.pipeline.jpeg import decode_jpeg, reduced_size

        how = {flag: key for key, flag in _REDUCED.items()}  # flag -> (grey, reduction)
        local = threading.local()

    def decode(job: tuple[Path, int, int]) -> None:
        path, reduced, whole = job
        flag = whole if full else reduced
        data = np.fromfile(path, np.uint8)
        if decoder == "build":
            grey, reduce = how[flag]
            h, w = _jpeg_size(data)
            shape = (*reduced_size(h, w, reduce), 1 if grey else 3)
            buf = getattr(local, "buf", None)
            if buf is None or buf.shape != shape:
                buf = local.buf = np.empty(shape, np.uint8)
            if decode_jpeg(data, (h, w), grey, reduce, buf) is not None:
                return
        if cv2.imdecode(data, flag) is None:
            raise RuntimeError(f"{path}: not decodable")

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(decode, jobs):
            pass


def _jpeg_size(data: np.ndarray) -> tuple[int, int]:
    from mer_di.pipeline.frames import _jpeg_header

    header = _jpeg_header(data[:1 << 16].tobytes())
    if header is None:
        raise RuntimeError("the look-alike frames are JPEGs")
    return header[0], header[1]


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds, all threads)`` of one call of ``fn``."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0
