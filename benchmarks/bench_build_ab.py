"""What each part of the build costs: the build A/B against itself with one part removed.

Usage::

    python benchmarks/bench_build_ab.py [--repeats N] [--workers 1 2] [--shape S]
                                        [--variants NAME ...] [--tag T] [--no-write]

On one of ``bench_build.py``'s shapes (``--shape``; default CASME II: 640x480 colour,
60-frame clips, 41 clips, 2 of them with an unusable apex that the build spots), in one
process, for each worker count: the decode floor, the build as it is, and the build with
one of its parts switched off (:data:`VARIANTS`, monkeypatched for the run), all
interleaved (every repeat runs each once, in turn), best of ``--repeats``. A part's cost is
``build seconds / variant seconds - 1``: how much slower the build is for having it; its
CPU ms a clip is the least process CPU (all threads) of the build's runs minus the
variant's, per clip. The
variants are what changed since the figures of 2026-11-22 in ``benchmarks/README.md``:

- ``fletcher32``: the images written without the per-chunk Fletcher-32 checksum;
- ``attributes``: without the four clip attributes added since (``row_fingerprint``,
  ``apex_source``, ``apex_used``, ``spotted_apex``);
- ``apex_frame``: without the ``apex_frame`` dataset;
- ``spotting``: the apex spotter not run (the middle frame for the 2 clips it runs on);
- ``part files``: no part file written (the cache alone);
- ``hostile checks``: frames read by ``np.fromfile`` and decoded with no header check
  (size, channels, hostile sizes, regular file);
- ``all of them``: the six parts above off at once (for the code before
  issue 22: the build as of 2026-11-22, about).

and, the other way round, two changes of issue 22's second round undone one at a time (a
negative "cost": what the change saved):

- ``(undone) libjpeg-turbo API -> cv2.imdecode``: every frame decoded by OpenCV, as before
  :mod:`mer_di.pipeline.jpeg`;
- ``(undone) chunks as stored -> h5py's filter``: images written by h5py's
  ``create_dataset(fletcher32=True)``, as before :mod:`mer_di.pipeline.chunks`.

A variant whose patch target no longer exists in the code is reported as not applicable.
Writes ``benchmarks/results/build_ab_<host>_py<ver>[_<tag>].json`` with the load average
before and after (the machine may be shared) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import bench_build as bb
import cv2
import numpy as np
from _build_shapes import SHAPES, build, decode_floor, decode_jobs, ensure_dataset, timed
from _common import results_path, write_results

NEW_ATTRS = ("row_fingerprint", "apex_source", "apex_used", "spotted_apex")


def _no_fletcher32():
    import h5py

    from mer_di.pipeline import writer

    if hasattr(writer, "write_checksummed"):  # since the chunks are written as stored
        return mock.patch.object(writer, "write_checksummed",
                                 lambda group, name, image: group.create_dataset(
                                     name, data=image))
    create = h5py.Group.create_dataset

    def plain(self, name, *a, fletcher32=False, chunks=None, **k):
        return create(self, name, *a, **k)

    return mock.patch.object(h5py.Group, "create_dataset", plain)


def _opencv_decoder():
    """Undone: every frame decoded by ``cv2.imdecode`` (and copied into the clip)."""
    from mer_di.pipeline import jpeg

    return mock.patch.object(jpeg, "_sj", None)


def _h5py_filter_writes():
    """Undone: each image written by h5py's ``create_dataset`` through HDF5's Fletcher-32
    filter (one chunk), the GIL held throughout."""
    from mer_di.pipeline import writer
    from mer_di.pipeline.store import APEX_FRAME

    if not hasattr(writer, "write_checksummed"):
        raise AttributeError("write_checksummed")  # older code: not applicable

    def put(group, name, image):
        if name != APEX_FRAME:
            image = image.astype(np.float32, copy=False)
        group.create_dataset(name, data=image, chunks=image.shape, fletcher32=True)

    return mock.patch.object(writer, "_put", put)


def _without(images=(), attrs=()):
    """A patch of the build's record maker that drops ``images`` and ``attrs``."""
    from mer_di.pipeline import build

    try:  # where the clips are pooled since pipeline/clip_pool.py was split from build.py
        from mer_di.pipeline import clip_pool as build
    except ImportError:
        pass
    make = build.make_record

    def lean(*a, **k):
        record, notes = make(*a, **k)
        for name in images:
            record.images.pop(name, None)
        for name in attrs:
            record.attrs.pop(name, None)
        return record, notes

    return mock.patch.object(build, "make_record", lean)


def _no_spotting():
    from mer_di.pipeline import build

    try:  # where the record is made since pipeline/clip_record.py was split from build.py
        from mer_di.pipeline import clip_record as home
    except ImportError:
        home = build
    return mock.patch.object(home, "spot_apex", lambda frames, *a, **k: len(frames) // 2)


def _no_parts():
    from mer_di.pipeline import writer

    return mock.patch.object(writer.PartStore, "save", lambda self, record: None)


def _no_checks():
    from mer_di.pipeline import frames

    flags = frames._REDUCED

    def lean(path, number, grey, reduce, box, out, first):
        img = cv2.imdecode(np.fromfile(path, np.uint8), flags[(grey, reduce)])
        b = box.scaled(reduce)
        out[...] = img[b.y:b.y + out.shape[0], b.x:b.x + out.shape[1]].reshape(out.shape)
        return ""

    return mock.patch.object(frames, "_decode_one", lean)


def _apex_frame():
    from mer_di.pipeline.store import APEX_FRAME

    return _without(images=(APEX_FRAME,))


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "fletcher32": _no_fletcher32,
    "attributes": lambda: _without(attrs=NEW_ATTRS),
    "apex_frame": _apex_frame,
    "spotting": _no_spotting,
    "part files": _no_parts,
    "hostile checks": _no_checks,
}
# the second round of issue 22, undone one at a time: a negative cost is what it saved
UNDONE: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "(undone) libjpeg-turbo API -> cv2.imdecode": _opencv_decoder,
    "(undone) chunks as stored -> h5py's filter": _h5py_filter_writes,
}


@contextlib.contextmanager
def _all_off():
    with contextlib.ExitStack() as stack:
        for make in VARIANTS.values():
            if _applicable(make):
                stack.enter_context(make())
        yield


def _applicable(make) -> bool:
    try:
        with make():
            return True
    except AttributeError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=list(bb.WORKERS))
    parser.add_argument("--data", type=Path, default=bb.DEFAULT_DATA)
    parser.add_argument("--tag", default="", help="added to the results file's name")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="casme2")
    parser.add_argument("--variants", nargs="+", choices=sorted({**VARIANTS, **UNDONE}),
                        metavar="NAME",
                        help="only these (default: all, and all six issue variants at once)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    info = bb.machine_info()
    info["pipeline"] = bb.code_under_test()
    print(f"# pipeline from {info['pipeline']}", flush=True)
    shape = SHAPES[args.shape]
    root, _ = ensure_dataset(shape, args.data)
    chosen = args.variants or [*VARIANTS, *UNDONE]
    variants = {k: v for k, v in {**VARIANTS, **UNDONE}.items()
                if k in chosen and _applicable(v)}
    skipped = sorted(set(chosen) - set(variants))
    if not args.variants:
        variants["all of them"] = _all_off
    load_before = bb.load_average()
    records = []
    with tempfile.TemporaryDirectory(prefix="bench_build_ab_") as tmp:
        out = Path(tmp) / "cache.h5"
        from mer_di.pipeline.build import BuildOptions, build_cache

        warm = build_cache(shape.dataset, root, out, options=BuildOptions(
            size=shape.size, crop=shape.crop, workers=max(args.workers)))
        expect = n_clips, n_frames = warm.built, warm.frames
        jobs = decode_jobs(shape, root, out)
        print(f"# {n_clips} clips, {n_frames} frames; load average {load_before}", flush=True)
        decode_floor(jobs, max(args.workers))
        for workers in args.workers:
            runs: dict[str, list[float]] = {"floor": [], "build": [],
                                            **{k: [] for k in variants}}
            cpu: dict[str, list[float]] = {k: [] for k in runs}
            for rep in range(args.repeats):
                order = list(runs)
                order = order[rep % len(order):] + order[:rep % len(order)]  # rotate
                for name in order:
                    if name == "floor":
                        t, c = timed(lambda w=workers: decode_floor(jobs, w))
                    else:
                        with (variants[name]() if name in variants
                              else contextlib.nullcontext()):
                            t, c = timed(lambda w=workers: build(shape, root, out, w, expect))
                    runs[name].append(t)
                    cpu[name].append(c)
            best = {k: min(v) for k, v in runs.items()}
            least_cpu = {k: min(v) for k, v in cpu.items()}
            record = {"workers": workers, "times_s": runs, "cpu_s": cpu, "best_s": best,
                      "load_average": bb.load_average(),
                      "build_vs_floor": best["floor"] / best["build"],
                      "cost": {k: best["build"] / best[k] - 1 for k in variants},
                      "cpu_ms_per_clip": {k: 1e3 * (least_cpu["build"] - least_cpu[k])
                                          / n_clips for k in variants},
                      "variant_vs_floor": {k: best["floor"] / best[k] for k in variants}}
            records.append(record)
            print(f"# workers={workers}: floor {best['floor']:.2f} s, build "
                  f"{best['build']:.2f} s ({100 * record['build_vs_floor']:.0f} % of floor); "
                  f"load {record['load_average']}", flush=True)
    table = markdown_table(records, list(variants))
    print()
    print(table)
    if skipped:
        print(f"\nnot applicable to this code: {', '.join(skipped)}")
    if not args.no_write:
        write_results(results_path("build_ab", info, args.tag), {
            "command": "python benchmarks/bench_build_ab.py" + "".join(
                f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info,
            "load_average": {"before": load_before, "after": bb.load_average()},
            "cpu_count": os.cpu_count(), "clips": n_clips, "frames": n_frames,
            "shape": shape.label,
            "repeats": args.repeats, "not_applicable": skipped, "records": records,
            "table_markdown": table})
    return 0


def markdown_table(records: list[dict], variants: list[str]) -> str:
    head = "| removed | " + " | ".join(
        f"{r['workers']} worker{'s' * (r['workers'] > 1)}: s / cost / % of floor / CPU ms a clip"
        for r in records) + " |"
    lines = [head, "|---|" + "---:|" * len(records)]
    lines.append("| nothing (the build) | " + " | ".join(
        f"{r['best_s']['build']:.2f} s / - / {100 * r['build_vs_floor']:.0f} % / -"
        for r in records) + " |")
    for name in variants:
        lines.append(f"| {name} | " + " | ".join(
            f"{r['best_s'][name]:.2f} s / {100 * r['cost'][name]:+.0f} % / "
            f"{100 * r['variant_vs_floor'][name]:.0f} % / {r['cpu_ms_per_clip'][name]:.1f}"
            for r in records) + " |")
    lines.append("| (decode floor) | " + " | ".join(
        f"{r['best_s']['floor']:.2f} s / / 100 % /" for r in records) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
