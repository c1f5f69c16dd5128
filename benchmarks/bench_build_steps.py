"""What each step of the build costs in CPU, before and after issue 22, in one process.

Usage::

    python benchmarks/bench_build_steps.py [--clips 12] [--repeats 7] [--no-write]

On clips of ``bench_build.py``'s CASME II shape (640x480 colour, 60 frames, decoded once at
the build's reduction), each step the build runs beside decoding is timed alone on one
thread as CPU seconds of that thread (``time.thread_time``: work done, not waiting, so it
holds on a shared machine where wall-clock A/B does not), per clip, best of ``--repeats``
with the variants of a step interleaved. The variants are the code before issue 22 (as it
was, re-created here) and now:

- spotting: the grey cells as float32 NumPy means (before) / integer sums in Numba (now),
  per clip it runs on (the CASME II shape spots 2 clips of 41);
- attributes: ``group.attrs[k] = v`` for the clip's 27 (before) / ``write_new_attrs`` (now),
  and the 4 added since 2026-11-22 alone;
- images: four datasets with h5py's chunks (48 a 224x224x3 image) and Fletcher-32
  (before) / one chunk each with Fletcher-32 (now) / contiguous without a checksum (what
  the checksum costs now); the ``apex_frame`` dataset alone;
- part file: ``PartStore.save`` (unchanged);
- hostile checks: a clip's 60 frames through ``_decode_one`` / through ``np.fromfile`` and
  ``cv2.imdecode`` only (decoder-thread CPU);
- for scale: the kernel plus ``finish_image`` (make_record without spotting), and decoding
  the clip's frames (the floor's work).

Writes ``benchmarks/results/build_steps_<host>_py<ver>.json`` with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bench_build as bb
import cv2
import h5py
import numpy as np
from _build_shapes import SHAPES, ensure_dataset, usable_rows
from _common import results_path, write_results

NEW_ATTRS = ("row_fingerprint", "apex_source", "apex_used", "spotted_apex")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", type=Path, default=bb.DEFAULT_DATA)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    info = bb.machine_info()
    info["pipeline"] = bb.code_under_test()
    from mer_di.pipeline import apex as apex_module
    from mer_di.pipeline import frames as frames_module
    from mer_di.pipeline.build import make_record, row_fingerprint
    from mer_di.pipeline.frames import _REDUCED, load_clip
    from mer_di.pipeline.store import APEX_FRAME, IMAGES, to_attr
    from mer_di.pipeline.writer import PartStore, write_new_attrs

    shape = SHAPES["casme2"]
    root, _ = ensure_dataset(shape, args.data)
    rows = usable_rows(shape, root)[:args.clips]
    load_before = bb.load_average()
    with ThreadPoolExecutor(1) as pool:
        clips = [load_clip([(n, r.frame_path(n)) for n in range(r.onset, r.offset + 1)],
                           shape.size, shape.crop, pool) for r in rows]
    records = [make_record(r, c, "linear", shape.size, row_fingerprint(r, {}), "middle")[0]
               for r, c in zip(rows, clips, strict=True)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_build_steps_"))
    files = {name: h5py.File(tmp / f"{name}.h5", "w") for name in ("a", "b", "c", "d", "e")}
    counter = iter(range(10 ** 9))

    def group(f: h5py.File) -> h5py.Group:
        return f.require_group(f"s/{next(counter)}")

    def attrs_before(rec):
        g = group(files["a"])
        for k, v in rec.attrs.items():
            g.attrs[k] = to_attr(v)

    def attrs_added(rec):
        g = group(files["a"])
        for k in NEW_ATTRS:
            g.attrs[k] = to_attr(rec.attrs.get(k, ""))

    def images(rec, f, **kw):
        g = group(files[f])
        for name in IMAGES:
            g.create_dataset(name, data=rec.images[name], **kw)

    def apex_frame_now(rec):
        g = group(files["e"])
        image = rec.images[APEX_FRAME]
        g.create_dataset(APEX_FRAME, data=image, chunks=image.shape, fletcher32=True)

    parts = PartStore(tmp / "p.h5", {})
    parts.open()
    flag = _REDUCED[(False, clips[0].reduce)]
    box = clips[0].box

    def decode(rec_index, lean):
        row = rows[rec_index]
        out = np.empty_like(clips[rec_index].frames)
        for i, n in enumerate(range(row.onset, row.offset + 1)):
            path = row.frame_path(n)
            if lean:
                img = cv2.imdecode(np.fromfile(path, np.uint8), flag)
                b = box.scaled(clips[rec_index].reduce)
                out[i] = img[b.y:b.y + out.shape[1], b.x:b.x + out.shape[2]]
            else:
                frames_module._decode_one(path, n, False, clips[rec_index].reduce, box,
                                          out[i], (480, 640))

    def spot(frames, reference):
        if reference:
            real = apex_module._grey_cells
            apex_module._grey_cells = apex_module.numpy_grey_cells
            try:
                apex_module.spot_apex(frames)
            finally:
                apex_module._grey_cells = real
        else:
            apex_module.spot_apex(frames)

    steps = {
        "spotting, before (float32 NumPy means)": lambda i: spot(clips[i].frames, True),
        "spotting, now (integer sums, Numba)": lambda i: spot(clips[i].frames, False),
        "27 attributes, before (group.attrs[k] = v)": lambda i: attrs_before(records[i]),
        "  of them the 4 added since 2026-11-22": lambda i: attrs_added(records[i]),
        "27 attributes, now (write_new_attrs)": lambda i: write_new_attrs(
            group(files["b"]), records[i].attrs),
        "4 images, before (h5py's chunks + Fletcher-32)": lambda i: images(
            records[i], "c", fletcher32=True),
        "4 images, now (one chunk each + Fletcher-32)": lambda i: images(
            records[i], "d", chunks=records[i].images["full"].shape, fletcher32=True),
        "4 images, contiguous, no checksum": lambda i: images(records[i], "e"),
        "  apex_frame dataset alone, now": lambda i: apex_frame_now(records[i]),
        "part file (PartStore.save)": lambda i: parts.save(records[i]),
        "kernel + finish_image (make_record, no spotting)": lambda i: make_record(
            rows[i], clips[i], "linear", shape.size, "", "middle"),
        "decode 60 frames with the hostile checks (_decode_one)": lambda i: decode(i, False),
        "decode 60 frames, np.fromfile + imdecode only": lambda i: decode(i, True),
    }
    for fn in steps.values():  # warm-up: Numba, HDF5 types
        fn(0)
    best = {k: float("inf") for k in steps}
    for rep in range(args.repeats):
        order = list(steps)[rep % len(steps):] + list(steps)[:rep % len(steps)]
        for name in order:
            c0 = time.thread_time()
            for i in range(len(records)):
                steps[name](i)
            best[name] = min(best[name], (time.thread_time() - c0) / len(records))
    for f in files.values():
        f.close()
    load_after = bb.load_average()
    table = ["| step (one thread) | CPU ms a clip |", "|---|---:|"]
    table += [f"| {k} | {1e3 * v:.2f} |" for k, v in best.items()]
    print("\n".join(table))
    if not args.no_write:
        write_results(results_path("build_steps", info), {
            "command": "python benchmarks/bench_build_steps.py" + "".join(
                f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info,
            "load_average": {"before": load_before, "after": load_after},
            "cpu_count": os.cpu_count(), "clips": len(records), "repeats": args.repeats,
            "cpu_ms_per_clip": {k: 1e3 * v for k, v in best.items()},
            "table_markdown": "\n".join(table)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
