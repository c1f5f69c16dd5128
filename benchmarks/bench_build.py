"""Benchmark of the whole cache build against the JPEG decoding floor.

Usage::

    python benchmarks/bench_build.py [--quick]

On a look-alike CASME II dataset in the raw layout (640x480 colour JPEG frames, 60 frames
from onset to offset in every clip; generated once and kept under ``--data``), for 1 and
2 decoding threads:

(a) the decode-only floor: every frame the build needs (onset..offset of every usable
    clip) read with ``np.fromfile`` and decoded with ``cv2.imdecode`` under the flag the
    build uses (``IMREAD_REDUCED_COLOR_2`` for 640x480 -> 224) on a
    ``ThreadPoolExecutor(workers)``, and nothing else;
(b) the full build, :func:`mer_di.pipeline.build.build_cache` (size 224, crop none, the same
    number of workers) into a fresh cache file each repeat, timed around the call:
    manifest, decoding, the kernel, resizing, part files and the HDF5 assembly.

Each is warmed up once (numba kernels loaded or compiled, frame files in the page cache)
and timed as the best of 3 repeats, floor and build repeats interleaved. Reported: clips/s
and frames/s of both, build/floor (target >= 85 %), the speed-up from 1 to 2 workers and
the process CPU seconds of every run. Then, unless ``--no-profile``, one more build per
worker count with the build's steps (``load_clip``, ``read_frame``, the kernel,
``finish_image``, the part files, the assembly; those that exist) wrapped by timers, to
show where the build spends its time beyond decoding. Writes
``benchmarks/results/build_<host>_py<ver>.json`` and prints a markdown table.

The machine should be otherwise idle: the script warns when other processes use the CPUs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from _common import (  # benchmarks/ is on sys.path when a script here runs
    ROOT,
    cpu_busy_fraction,
    machine_base,
    results_path,
    write_results,
)

DATASET = "casme2"
LAYOUT = "raw"
FRAME_SIZE = (640, 480)  # (W, H)
CLIP_FRAMES = 60  # onset..offset
SIZE = 224
WORKERS = (1, 2)
REPEATS = 3
SEED = 0
TARGET_BUILD_VS_FLOOR = 0.85
FULL = {"subjects": 4, "clips_per_class": 2}  # 5 classes x 2 x 4 + 1 = 41 clips
QUICK = {"subjects": 2, "clips_per_class": 1}  # 5 x 1 x 2 + 1 = 11 clips
DEFAULT_DATA = Path(tempfile.gettempdir()) / "mer-di-bench-build"


# -- the dataset ----------------------------------------------------------------------------

def dataset_dir(base: Path, subjects: int, clips_per_class: int) -> Path:
    w, h = FRAME_SIZE
    return base / (f"{DATASET}_{LAYOUT}_{w}x{h}_T{CLIP_FRAMES}_s{subjects}"
                   f"_c{clips_per_class}_seed{SEED}")


def ensure_dataset(base: Path, subjects: int, clips_per_class: int) -> tuple[Path, float | None]:
    """The look-alike dataset's folder, generated when missing; also the seconds it took
    (None when it was there already). The generator renames a finished dataset into
    place, so a folder that exists is whole."""
    from mer_di.data_manifest.synth import generate_dataset

    root = dataset_dir(base, subjects, clips_per_class)
    if root.is_dir():
        return root, None
    base.mkdir(parents=True, exist_ok=True)
    print(f"# generating the dataset into {root} (once; kept for later runs)", flush=True)
    t0 = time.perf_counter()
    generate_dataset(DATASET, root, subjects=subjects, clips_per_class=clips_per_class,
                     frame_size=FRAME_SIZE, length=(CLIP_FRAMES, CLIP_FRAMES), layout=LAYOUT,
                     seed=SEED)
    return root, time.perf_counter() - t0


def usable_clips(root: Path) -> list[list[Path]]:
    """The frame files (onset..offset) of every clip the build will pool."""
    from mer_di.data_manifest import build_manifest

    rows = build_manifest(DATASET, root, classes="all").rows
    return [[row.frame_path(n) for n in range(row.onset, row.offset + 1)]
            for row in rows if row.full_ok]


def build_decode_flag() -> int:
    """The OpenCV flag the build decodes a colour frame of FRAME_SIZE with, at SIZE."""
    from mer_di.pipeline.frames import _REDUCED, Box, choose_reduce

    w, h = FRAME_SIZE
    return _REDUCED[(False, choose_reduce(Box(0, 0, w, h), SIZE))]


# -- what is timed --------------------------------------------------------------------------

def decode_floor(paths: list[Path], flag: int, workers: int) -> None:
    """Read and decode every frame file on ``workers`` threads, nothing else."""
    def decode(path: Path) -> None:
        if cv2.imdecode(np.fromfile(path, np.uint8), flag) is None:
            raise RuntimeError(f"{path}: not decodable")

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(decode, paths):
            pass


def full_build(root: Path, out: Path, workers: int, n_clips: int, n_frames: int) -> None:
    """One build from scratch into ``out`` (removed first, with any parts left over)."""
    from mer_di.pipeline.build import BuildOptions, build_cache

    out.unlink(missing_ok=True)
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)
    report = build_cache(DATASET, root, out,
                         options=BuildOptions(size=SIZE, crop="none", workers=workers))
    if report.built != n_clips or report.frames != n_frames or report.reused:
        raise RuntimeError(f"the build made {report.built} clips ({report.frames} frames, "
                           f"{report.reused} reused); expected {n_clips} ({n_frames} frames) "
                           "built from scratch")


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds, all threads)`` of one call of ``fn``."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


# (label, module, attribute, class or None); the profile wraps those that exist
STAGES = (
    ("manifest (build_manifest)", "mer_di.pipeline.build", "build_manifest", None),
    ("load_clip, whole clip (prefetch thread)", "mer_di.pipeline.build", "load_clip", None),
    ("  per frame: _decode_one (decoder threads)", "mer_di.pipeline.frames", "_decode_one", None),
    ("  read_frame (read + decode; + 1st-frame probe)", "mer_di.pipeline.frames", "read_frame",
     None),
    ("make_record (main thread)", "mer_di.pipeline.build", "make_record", None),
    ("  kernel: clip_dynamic_images", "mer_di.pipeline.build", "clip_dynamic_images", None),
    ("  finish_image (resize, RGB)", "mer_di.pipeline.build", "finish_image", None),
    ("PartStore.save (main thread)", "mer_di.pipeline.store", "save", "PartStore"),
    ("CacheWriter.add (main thread)", "mer_di.pipeline.store", "add", "CacheWriter"),
    ("CacheWriter.commit (sync, rename)", "mer_di.pipeline.store", "commit", "CacheWriter"),
    ("  PartStore.load", "mer_di.pipeline.store", "load", "PartStore"),
)


@contextmanager
def stage_timers(totals: dict[str, list[float]]) -> Iterator[None]:
    """Wrap the build's steps (:data:`STAGES`, those that exist) to add up, per step, the
    calls, wall seconds and CPU seconds of the calling thread; restored on exit."""
    import importlib

    lock = threading.Lock()
    undo = []
    for label, module_name, attr, cls_name in STAGES:
        owner = importlib.import_module(module_name)
        if cls_name is not None:
            owner = getattr(owner, cls_name, None)
        fn = getattr(owner, attr, None) if owner is not None else None
        if fn is None:
            continue
        totals[label] = [0, 0.0, 0.0]

        def wrapper(*a, _fn=fn, _label=label, **k):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                dw, dc = time.perf_counter() - w0, time.thread_time() - c0
                with lock:
                    t = totals[_label]
                    t[0] += 1
                    t[1] += dw
                    t[2] += dc

        setattr(owner, attr, wrapper)
        undo.append((owner, attr, fn))
    try:
        yield
    finally:
        for owner, attr, fn in reversed(undo):
            setattr(owner, attr, fn)


def profile_build(root: Path, out: Path, workers: int, n_clips: int, n_frames: int) -> dict:
    """One extra (untimed) build with every step of :data:`STAGES` timed in place."""
    totals: dict[str, list[float]] = {}
    with stage_timers(totals):
        c0, w0 = time.process_time(), time.perf_counter()
        full_build(root, out, workers, n_clips, n_frames)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"workers": workers, "wall_s": wall, "process_cpu_s": cpu,
            "stages": {k: {"calls": int(n), "wall_s": w, "thread_cpu_s": c}
                       for k, (n, w, c) in totals.items()}}


# -- reporting ------------------------------------------------------------------------------

def machine_info() -> dict:
    import h5py
    import numba

    return {**machine_base(), "numba_threads": numba.get_num_threads(),
            "opencv_threads": cv2.getNumThreads(), "opencv": cv2.__version__,
            "numba": numba.__version__, "h5py": h5py.__version__}


def markdown_table(records: list[dict]) -> str:
    lines = [
        "| workers | floor clips/s | floor frames/s | build clips/s | build frames/s "
        "| build / floor |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['workers']} | {r['floor_clips_per_s']:.1f} | {r['floor_frames_per_s']:.0f} "
            f"| {r['build_clips_per_s']:.1f} | {r['build_frames_per_s']:.0f} "
            f"| {100 * r['build_vs_floor']:.0f} % |"
        )
    return "\n".join(lines)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpus_busy(seconds: float = 1.0) -> float | None:
    """How many CPUs other processes keep busy over ``seconds`` (None without /proc/stat)."""
    busy = cpu_busy_fraction(seconds)
    return None if busy is None else busy * (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a smaller dataset ({QUICK['subjects']} subjects x "
                             f"{QUICK['clips_per_class']} clip per class)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="where the generated dataset is kept between runs "
                             "(default: %(default)s)")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the profiled builds (where the time goes)")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    shape = QUICK if args.quick else FULL
    info = machine_info()
    print(f"# {info['hostname']}: {info['cpu_model']}, {info['cpu_count']} CPUs "
          f"({info['cpus_usable']} usable), Python {info['python']}, NumPy {info['numpy']}, "
          f"OpenCV {info['opencv']} ({info['opencv_threads']} threads), "
          f"Numba {info['numba']} ({info['numba_threads']} threads)", flush=True)

    root, gen_seconds = ensure_dataset(args.data, **shape)
    clips = usable_clips(root)
    paths = [p for clip in clips for p in clip]
    n_clips, n_frames = len(clips), len(paths)
    flag = build_decode_flag()
    flag_name = next((n for n in sorted(dir(cv2)) if n.startswith("IMREAD_")
                      and getattr(cv2, n) == flag), str(flag))
    print(f"# {root}: {n_clips} clips, {n_frames} frames (onset..offset), decode flag "
          f"{flag_name}", flush=True)
    load_before, busy_before = load_average(), cpus_busy()
    if busy_before is not None and busy_before > 0.25:
        print(f"# warning: other processes keep {busy_before:.1f} CPUs busy: timings will be "
              "low and noisy; run it on an otherwise idle machine", flush=True)
    records, profiles = [], []
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        out = Path(tmp) / "cache.h5"
        # warm-up: numba kernels loaded (or compiled), frame files in the page cache
        decode_floor(paths, flag, max(WORKERS))
        full_build(root, out, max(WORKERS), n_clips, n_frames)
        for workers in WORKERS:
            floor_runs: list[tuple[float, float]] = []
            build_runs: list[tuple[float, float]] = []
            for _ in range(REPEATS):  # interleaved, so drift hits both alike
                floor_runs.append(timed(lambda w=workers: decode_floor(paths, flag, w)))
                build_runs.append(timed(
                    lambda w=workers: full_build(root, out, w, n_clips, n_frames)))
            floor = min(floor_runs)
            build = min(build_runs)
            record = {
                "workers": workers,
                "floor_best_s": floor[0],
                "floor_median_s": statistics.median(t for t, _ in floor_runs),
                "floor_times_s": [t for t, _ in floor_runs],
                "floor_cpu_s": [c for _, c in floor_runs],
                "floor_clips_per_s": n_clips / floor[0],
                "floor_frames_per_s": n_frames / floor[0],
                "build_best_s": build[0],
                "build_median_s": statistics.median(t for t, _ in build_runs),
                "build_times_s": [t for t, _ in build_runs],
                "build_cpu_s": [c for _, c in build_runs],
                "build_clips_per_s": n_clips / build[0],
                "build_frames_per_s": n_frames / build[0],
                "build_vs_floor": floor[0] / build[0],
            }
            records.append(record)
            print(f"# workers={workers}: floor {record['floor_clips_per_s']:.1f} clips/s "
                  f"(CPU {floor[1]:.2f} s), build {record['build_clips_per_s']:.1f} clips/s "
                  f"(CPU {build[1]:.2f} s), build/floor {100 * record['build_vs_floor']:.0f} %",
                  flush=True)
        if not args.no_profile:
            for workers in WORKERS:
                profiles.append(profile_build(root, out, workers, n_clips, n_frames))
    load_after, busy_after = load_average(), cpus_busy()

    one, two = records[0], records[-1]
    summary = {
        "floor_scaling_1_to_2": one["floor_best_s"] / two["floor_best_s"],
        "build_scaling_1_to_2": one["build_best_s"] / two["build_best_s"],
        "min_build_vs_floor": min(r["build_vs_floor"] for r in records),
        "target_build_vs_floor": TARGET_BUILD_VS_FLOOR,
    }
    summary["target_met"] = bool(summary["min_build_vs_floor"] >= TARGET_BUILD_VS_FLOOR)

    table = markdown_table(records)
    print()
    print(table)
    print()
    print(f"1 -> 2 workers: floor x{summary['floor_scaling_1_to_2']:.2f}, "
          f"build x{summary['build_scaling_1_to_2']:.2f}; min build/floor "
          f"{100 * summary['min_build_vs_floor']:.0f} % (target >= "
          f"{100 * TARGET_BUILD_VS_FLOOR:.0f} %): "
          + ("target met" if summary["target_met"] else "TARGET MISSED"))
    for prof in profiles:
        print()
        print(f"Profiled build, workers={prof['workers']}: {prof['wall_s']:.2f} s wall, "
              f"{prof['process_cpu_s']:.2f} s CPU (all threads). Per step, summed over calls "
              "(wall overlaps across threads; CPU is the calling thread's own):")
        for label, st in prof["stages"].items():
            print(f"  {label:46s} {st['calls']:5d} calls  {st['wall_s']:6.2f} s wall  "
                  f"{st['thread_cpu_s']:6.2f} s CPU")

    if not args.no_write:
        payload = {
            "command": "python benchmarks/bench_build.py" + (" --quick" if args.quick else ""),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": info,
            "load_average": {"before": load_before, "after": load_after},
            "cpus_busy_by_others": {"before": busy_before, "after": busy_after},
            "dataset": {
                "name": DATASET, "layout": LAYOUT, "frame_size_wh": list(FRAME_SIZE),
                "clip_frames": CLIP_FRAMES, "seed": SEED, **shape, "clips": n_clips,
                "frames": n_frames, "generate_seconds": gen_seconds,
            },
            "build_options": {"size": SIZE, "crop": "none", "weights": "linear"},
            "decode_flag": flag_name,
            "repeats": REPEATS,
            "records": records,
            "summary": summary,
            "profiles": profiles,
            "table_markdown": table,
        }
        write_results(results_path("build", info), payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
