"""Benchmark of the whole cache build against the JPEG decoding floor.

Usage::

    python benchmarks/bench_build.py [--shapes casme2 samm casme3] [--quick] [--check]

For each shape (:data:`_build_shapes.SHAPES`: CASME II 640x480 colour with ``--crop none``,
SAMM 2040x1088 greyscale and CAS(ME)^3 1280x720 colour with ``--crop haar``; look-alike
frames generated once and kept under ``--data``), for 1 and 2 decoding threads:

(a) the decode floor: every frame the build decodes (onset..offset of every usable clip),
    read with ``np.fromfile`` and decoded with ``cv2.imdecode`` at the reduction and colour
    the build chose for its clip (e.g. ``IMREAD_REDUCED_COLOR_2`` for 640x480 -> 224) on a
    ``ThreadPoolExecutor(workers)``, and nothing else;
(b) for CASME II also the full-decode floor: the same frames decoded at full size;
(b') the build's own decoder alone (:mod:`mer_di.pipeline.jpeg`: libjpeg-turbo's API into
    a buffer, the same pixels as ``cv2.imdecode``), to show what the build spends beside
    decoding; the targets are against (a), the issue's floor;
(c) the full build, :func:`mer_di.pipeline.build.build_cache` (size 224, the shape's crop,
    the same number of workers) into a fresh cache file each repeat, timed around the
    call: manifest, decoding, Haar detection, the kernel, spotting, resizing, part files and
    the HDF5 writes, sync and rename.

Each is warmed up once and timed as the best of ``--repeats``, floor and build repeats
interleaved (drift hits both alike). Targets (CASME II): build >= 85 % of the floor at 1
and 2 workers, and full-decode seconds / build seconds >= 1.3 at 2 workers; SAMM and
CAS(ME)^3 are measured against the same floor, without a target of their own. ``--check``
exits 1 when a target is missed. Then, unless ``--no-profile``, one more build per worker
count with the build's steps wrapped by timers (:mod:`_build_profile`). Records the load
average with every figure (the machine may be shared: compare ratios, not absolute
rates). Writes ``benchmarks/results/build_<host>_py<ver>[_<tag>][_quick].json``. To measure
another commit, put its tree first on ``PYTHONPATH`` (``mer_di/`` with ``pipeline/``,
``data_manifest/`` and ``training/`` inside, as installed); the results name the
pipeline's folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
from _build_profile import profile_build
from _build_shapes import QUICK, SHAPES, build, decode_floor, decode_jobs, ensure_dataset, timed
from _common import (  # benchmarks/ is on sys.path when a script here runs
    ROOT,
    cpu_busy_fraction,
    machine_base,
    results_path,
    write_results,
)

WORKERS = (1, 2)
REPEATS = 3
TARGET_BUILD_VS_FLOOR = 0.85
TARGET_FULL_DECODE_VS_BUILD = 1.3
TARGET_SHAPE = "casme2"
DEFAULT_DATA = Path(tempfile.gettempdir()) / "mer-di-bench-build"


def machine_info() -> dict:
    import h5py
    import numba

    return {**machine_base(), "numba_threads": numba.get_num_threads(),
            "opencv_threads": cv2.getNumThreads(), "opencv": cv2.__version__,
            "numba": numba.__version__, "h5py": h5py.__version__}


def code_under_test() -> str:
    """Where ``mer_di.pipeline`` is imported from (the installed checkout, or another tree
    first on ``PYTHONPATH``, to measure an older commit); the checkout's root is put on
    ``sys.path`` only when ``mer_di`` is not importable at all."""
    import importlib.util

    if importlib.util.find_spec("mer_di") is None:
        sys.path.insert(0, str(ROOT))
    import mer_di.pipeline.build as build_module

    return str(Path(build_module.__file__).resolve().parent)


def load_average() -> list[float] | None:
    try:
        import os

        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def measure_shape(shape, root: Path, out: Path, repeats: int, profile: bool) -> dict:
    """Floors and builds of one shape at every worker count (see the module doc)."""
    from _build_shapes import usable_rows

    rows = usable_rows(shape, root)
    from mer_di.pipeline.build import BuildOptions, build_cache

    # warm-up (numba kernels loaded, frame files in the page cache); what it built is what
    # every timed build must build

    warm = build_cache(shape.dataset, root, out, options=BuildOptions(
        size=shape.size, crop=shape.crop, workers=max(WORKERS), rebuild=True))
    expect = (warm.built, warm.frames)
    jobs = decode_jobs(shape, root, out)
    reductions = sorted({job[1] for job in jobs})
    flags = [next((n for n in sorted(dir(cv2)) if n.startswith("IMREAD_")
                   and getattr(cv2, n) == f & ~cv2.IMREAD_IGNORE_ORIENTATION), str(f))
             for f in reductions]
    full = shape.key == TARGET_SHAPE
    decode_floor(jobs, max(WORKERS))  # warm: frame files in the page cache
    decode_floor(jobs, max(WORKERS), decoder="build")
    if full:
        decode_floor(jobs, max(WORKERS), full=True)
    records = []
    for workers in WORKERS:
        runs: dict[str, list[tuple[float, float]]] = {"floor": [], "build": [], "full": [],
                                                      "own_floor": []}
        for _ in range(repeats):
            runs["floor"].append(timed(lambda w=workers: decode_floor(jobs, w)))
            runs["own_floor"].append(timed(
                lambda w=workers: decode_floor(jobs, w, decoder="build")))
            if full:
                runs["full"].append(timed(lambda w=workers: decode_floor(jobs, w, full=True)))
            runs["build"].append(timed(lambda w=workers: build(shape, root, out, w, expect)))
        floor, bld = min(runs["floor"]), min(runs["build"])
        n_clips, n_frames = expect
        rec = {"workers": workers, "load_average": load_average(),
               **{f"{k}_times_s": [t for t, _ in v] for k, v in runs.items() if v},
               **{f"{k}_cpu_s": [c for _, c in v] for k, v in runs.items() if v},
               "floor_best_s": floor[0], "build_best_s": bld[0],
               "build_median_s": statistics.median(t for t, _ in runs["build"]),
               "floor_clips_per_s": n_clips / floor[0],
               "floor_frames_per_s": n_frames / floor[0],
               "build_clips_per_s": n_clips / bld[0], "build_frames_per_s": n_frames / bld[0],
               "build_vs_floor": floor[0] / bld[0],
               # the same frames through the build's own decoder (pipeline/jpeg.py) and
               # nothing else: what the build spends beside decoding
               "own_floor_frames_per_s": n_frames / min(runs["own_floor"])[0],
               "build_vs_own_floor": min(runs["own_floor"])[0] / bld[0],
               # CPU seconds (all threads), least of the repeats: the work done, which a
               # shared machine's load changes far less than the wall time
               "cpu_build_vs_floor": min(c for _, c in runs["floor"])
               / min(c for _, c in runs["build"])}
        if full:
            rec["full_decode_best_s"] = min(runs["full"])[0]
            rec["full_decode_vs_build"] = rec["full_decode_best_s"] / bld[0]
        records.append(rec)
        extra = (f", full decode / build x{rec['full_decode_vs_build']:.2f}" if full else "")
        print(f"# {shape.key} workers={workers}: floor {rec['floor_frames_per_s']:.0f} "
              f"frames/s, build {rec['build_frames_per_s']:.0f} frames/s, build/floor "
              f"{100 * rec['build_vs_floor']:.0f} %{extra}; load {rec['load_average']}",
              flush=True)
    profiles = [profile_build(lambda w=w: build(shape, root, out, w, expect), w)
                for w in WORKERS] if profile else []
    return {"shape": dataclasses.asdict(shape), "label": shape.label, "clips": expect[0],
            "frames": expect[1], "usable_rows": len(rows), "decode_flags": flags,
            "records": records, "profiles": profiles}


def check_targets(results: dict[str, dict]) -> list[str]:
    """The targets missed, one line each (none: all met, or no CASME II shape measured)."""
    missed = []
    for rec in results.get(TARGET_SHAPE, {}).get("records", []):
        if rec["build_vs_floor"] < TARGET_BUILD_VS_FLOOR:
            missed.append(f"{TARGET_SHAPE}, {rec['workers']} worker(s): build "
                          f"{100 * rec['build_vs_floor']:.0f} % of the floor (target >= "
                          f"{100 * TARGET_BUILD_VS_FLOOR:.0f} %)")
        if rec["workers"] == max(WORKERS) and (
                rec["full_decode_vs_build"] < TARGET_FULL_DECODE_VS_BUILD):
            missed.append(f"{TARGET_SHAPE}, {rec['workers']} workers: full decode / build "
                          f"x{rec['full_decode_vs_build']:.2f} (target >= "
                          f"x{TARGET_FULL_DECODE_VS_BUILD})")
    return missed


def markdown_table(results: dict[str, dict]) -> str:
    lines = ["| shape | clips (frames) | decode | workers | floor frames/s | build frames/s "
             "| build / floor | CPU: build / floor | full decode / build "
             "| build's decoder alone frames/s | build / that | load average |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for res in results.values():
        for r in res["records"]:
            ratio = (f"x{r['full_decode_vs_build']:.2f}" if "full_decode_vs_build" in r
                     else "")
            load = "" if r["load_average"] is None else f"{r['load_average'][0]:.1f}"
            cpu = (f"{100 * min(r['floor_cpu_s']) / min(r['build_cpu_s']):.0f} %"
                   if r.get("floor_cpu_s") else "")
            own = (f"| {r['own_floor_frames_per_s']:.0f} | {100 * r['build_vs_own_floor']:.0f} % "
                   if "own_floor_frames_per_s" in r else "| | ")  # results before it
            lines.append(f"| {res['label']} | {res['clips']} ({res['frames']}) "
                         f"| {', '.join(res['decode_flags'])} | {r['workers']} "
                         f"| {r['floor_frames_per_s']:.0f} | {r['build_frames_per_s']:.0f} "
                         f"| {100 * r['build_vs_floor']:.0f} % | {cpu} | {ratio} {own}"
                         f"| {load} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    parser.add_argument("--quick", action="store_true",
                        help="a smaller CASME II dataset (2 subjects x 1 clip per class)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="where generated datasets are kept (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a target is missed")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the profiled builds (where the time goes)")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    parser.add_argument("--tag", default="",
                        help="added to the results file's name (e.g. the commit measured)")
    parser.add_argument("--table", type=Path, metavar="RESULTS_JSON",
                        help="only print the table and targets of a results file")
    args = parser.parse_args(argv)
    if args.table:
        import json

        results = json.loads(args.table.read_text())["results"]
        print(markdown_table(results))
        missed = check_targets(results)
        print("targets: " + ("; ".join(missed) + ": TARGET MISSED" if missed else "met"))
        return 1 if args.check and missed else 0

    info = machine_info()
    info["pipeline"] = code_under_test()
    print(f"# pipeline from {info['pipeline']}", flush=True)
    print(f"# {info['hostname']}: {info['cpu_model']}, {info['cpu_count']} CPUs "
          f"({info['cpus_usable']} usable), Python {info['python']}, NumPy {info['numpy']}, "
          f"OpenCV {info['opencv']}, Numba {info['numba']}", flush=True)
    load_before, busy_before = load_average(), cpu_busy_fraction(1.0)
    if busy_before is not None and busy_before > 0.12:
        print(f"# warning: the CPUs are {100 * busy_before:.0f} % busy with other work: "
              "timings will be low and noisy", flush=True)
    results: dict[str, dict] = {}
    generated: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        for key in args.shapes:
            shape = SHAPES[key]
            if args.quick and key in QUICK:
                shape = dataclasses.replace(shape, **QUICK[key])
            root, generated[key] = ensure_dataset(shape, args.data)
            results[key] = measure_shape(shape, root, Path(tmp) / f"{key}.h5", args.repeats,
                                         not args.no_profile)
    missed = check_targets(results)
    table = markdown_table(results)
    print()
    print(table)
    print()
    print("targets: " + ("; ".join(missed) + ": TARGET MISSED" if missed else "met")
          if TARGET_SHAPE in results else "targets: not measured (no CASME II shape)")
    for key, res in results.items():
        for prof in res["profiles"]:
            print(f"\nProfiled build, {key}, workers={prof['workers']}: {prof['wall_s']:.2f} s "
                  f"wall, {prof['process_cpu_s']:.2f} s CPU (all threads). Per step, summed "
                  "over calls (wall overlaps across threads; CPU is the calling thread's own):")
            for label, st in prof["stages"].items():
                if st["calls"]:
                    print(f"  {label:48s} {st['calls']:5d} calls  {st['wall_s']:6.2f} s wall"
                          f"  {st['thread_cpu_s']:6.2f} s CPU")
    if not args.no_write:
        write_results(results_path("build", info, args.tag, quick=args.quick), {
            "command": "python benchmarks/bench_build.py" + "".join(
                f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info,
            "load_average": {"before": load_before, "after": load_average()},
            "cpus_busy_by_others_before": busy_before, "generate_seconds": generated,
            "repeats": args.repeats, "results": results,
            "targets": {"build_vs_floor": TARGET_BUILD_VS_FLOOR,
                        "full_decode_vs_build": TARGET_FULL_DECODE_VS_BUILD,
                        "shape": TARGET_SHAPE, "missed": missed, "met": not missed},
            "table_markdown": table})
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
