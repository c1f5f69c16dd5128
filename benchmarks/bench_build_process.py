"""The whole ``mer-prep build-cache`` process on a CASME II-sized look-alike, against
decoding its frames.

Usage::

    python benchmarks/bench_build_process.py [--repeats 3] [--workers 2] [--check]

Issue 22's headline figure: on the CASME II shape at its real size (26 subjects, about
255 clips and 17,000 frames at 640x480, ``--size 224 --crop none --workers 2``), the
command's whole process (interpreter start, imports, manifest, build, sync, rename), best
of ``--repeats``, against, in this process on the same number of threads:

- the full-decode floor: every frame the build decodes, ``np.fromfile`` + ``cv2.imdecode``
  at full size (``IMREAD_COLOR``);
- the reduced-decode floor: the same at the reduction the build uses
  (``IMREAD_REDUCED_COLOR_2``);
- the build's own decoder alone (:mod:`mer_di.pipeline.jpeg`);
- the build called in this process (:func:`mer_di.pipeline.build.build_cache`: the
  process start and imports left out).

Target: full-decode seconds / whole-process build seconds >= 1.3. All repeats
interleaved. The look-alike (about 0.7 GB of JPEGs) is generated once under ``--data``.
Writes ``benchmarks/results/build_process_<host>_py<ver>[_<tag>].json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _build_shapes import Shape, decode_floor, decode_jobs, ensure_dataset, timed
from _common import load_average, machine_base, results_path, write_results

# CASME II: 26 subjects, 255 clips, 17,133 frames at 640x480 (mean 67 frames a clip);
# the look-alike: 26 subjects x 5 classes x 2 clips (+1), 40-94 frames (mean 67)
SHAPE = Shape("casme2_whole", "CASME II 640x480 colour, crop none, 26 subjects", "casme2",
              "raw", (640, 480), (40, 94), 26, 2, "none")
TARGET = 1.3
DEFAULT_DATA = Path(tempfile.gettempdir()) / "mer-di-bench-build"


def _command(root: Path, out: Path, workers: int) -> list[str]:
    exe = shutil.which("mer-prep", path=str(Path(sys.executable).parent)) or "mer-prep"
    return [exe, "build-cache", "--dataset", SHAPE.dataset, "--root", str(root), "--out",
            str(out), "--size", str(SHAPE.size), "--crop", SHAPE.crop, "--workers",
            str(workers)]


def _clean(out: Path) -> None:
    out.unlink(missing_ok=True)
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tag", default="")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from mer_di.pipeline.build import BuildOptions, build_cache

    root, generated = ensure_dataset(SHAPE, args.data)
    info = machine_base()
    load_before = load_average()
    w = args.workers
    with tempfile.TemporaryDirectory(prefix="bench_build_process_") as tmp:
        out = Path(tmp) / "casme2.h5"
        options = BuildOptions(size=SHAPE.size, crop=SHAPE.crop, workers=w)
        warm = build_cache(SHAPE.dataset, root, out, options=options)  # page cache, Numba
        clips, frames = warm.built, warm.frames
        jobs = decode_jobs(SHAPE, root, out)
        decode_floor(jobs, w, full=True)
        print(f"# {clips} clips, {frames} frames; load average {load_before}", flush=True)
        runs: dict[str, list[float]] = {"process": [], "in_process": [], "full": [],
                                        "reduced": [], "own": []}
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        for _ in range(args.repeats):
            _clean(out)
            t0 = time.perf_counter()
            done = subprocess.run(_command(root, out, w), capture_output=True, text=True,
                                  env=env)
            runs["process"].append(time.perf_counter() - t0)
            if done.returncode:
                raise SystemExit(f"mer-prep failed:\n{done.stdout}\n{done.stderr}")
            _clean(out)
            runs["in_process"].append(timed(lambda: build_cache(
                SHAPE.dataset, root, out, options=options))[0])
            runs["full"].append(timed(lambda: decode_floor(jobs, w, full=True))[0])
            runs["reduced"].append(timed(lambda: decode_floor(jobs, w))[0])
            runs["own"].append(timed(lambda: decode_floor(jobs, w, decoder="build"))[0])
            print("# " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()), flush=True)
    best = {k: min(v) for k, v in runs.items()}
    ratio = best["full"] / best["process"]
    rows = [("the command, whole process", best["process"]),
            ("build_cache in this process", best["in_process"]),
            ("full-decode floor (cv2.imdecode, IMREAD_COLOR)", best["full"]),
            ("reduced-decode floor (cv2.imdecode, IMREAD_REDUCED_COLOR_2)", best["reduced"]),
            ("the build's decoder alone (libjpeg-turbo API, 1/2)", best["own"])]
    table = "\n".join(["| what | seconds | frames/s |", "|---|---:|---:|",
                       *(f"| {name} | {s:.2f} | {frames / s:.0f} |" for name, s in rows)])
    met = ratio >= TARGET
    summary = (f"full decode / whole-process build: x{ratio:.2f} (target >= x{TARGET}: "
               f"{'met' if met else 'TARGET MISSED'}); full / reduced decode "
               f"x{best['full'] / best['reduced']:.2f}; {clips} clips, {frames} frames, "
               f"{w} workers")
    print()
    print(table)
    print()
    print(summary)
    if not args.no_write:
        write_results(results_path("build_process", info, args.tag), {
            "command": "python benchmarks/bench_build_process.py" + "".join(
                f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info,
            "load_average": {"before": load_before, "after": load_average()},
            "generate_seconds": generated, "clips": clips, "frames": frames, "workers": w,
            "repeats": args.repeats, "times_s": runs, "best_s": best,
            "full_decode_vs_build": ratio, "target": TARGET, "met": met,
            "table_markdown": table, "summary": summary})
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())
