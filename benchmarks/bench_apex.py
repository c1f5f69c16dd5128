"""Benchmark of the apex spotter (:mod:`mer_di.pipeline.apex`) against the known apex of
generated clips.

Usage::

    python benchmarks/bench_apex.py [--quick] [--clips N]

For every kind of look-alike dataset the generator has (CASME II, SAMM, MMEW, SMIC-HS,
CAS(ME)^3), every noise level (the subject's sensor noise x1, x2, x4) and both spotting
methods (``diff``, the build's, and ``flow``, Farneback optical flow), N clips are drawn
with the dataset's own clip lengths and rendered (frames onset..offset, the long side at
most 256 pixels); the spotter's error is |spotted - true apex| in frames and as a fraction
of the clip's length (median and 90th percentile), and its cost is the spotter's time per
frame on frames in memory (decoding excluded: the build has decoded them already). Clips
whose true apex is the onset or offset frame (a planted quirk) are left out: the spotter
answers strictly inside the clip. Target: median error at most 10 % of the clip's length.

Writes ``benchmarks/results/apex_<host>_py<ver>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import numpy as np
from _common import machine_base, results_path, write_results

from mer_di.data_manifest.synth.faces import random_look
from mer_di.data_manifest.synth.registry import SPECS
from mer_di.data_manifest.synth.render import render_clip
from mer_di.pipeline.apex import METHODS, spot_apex

NOISE = (1.0, 2.0, 4.0)
MAX_SIDE = 256


def _frame_size(spec) -> tuple[int, int]:
    w, h = spec.frame_size
    scale = min(1.0, MAX_SIDE / max(w, h))
    return max(48, round(w * scale)), max(48, round(h * scale))


def clips_of(dataset: str, n: int, noise: float, seed: int = 0):
    """``(frames onset..offset, true apex index)`` of ``n`` generated clips."""
    spec = SPECS[dataset]
    # planning is cheap (rendering is not): plan plenty, render n
    plan = spec.plan(max(2, n // 2), 1, spec.length, np.random.default_rng([seed, 1]))
    plan = [c for c in plan if c.onset < c.apex < c.offset][:n]
    size = _frame_size(spec)
    out = []
    for i, clip in enumerate(plan):
        look = random_look(np.random.default_rng([seed, 2, i]))
        look = dataclasses.replace(look, noise_sigma=look.noise_sigma * noise)
        frames = dict(render_clip(spec, spec.layouts[0], look, clip, size,
                                  np.random.default_rng([seed, 3, i])))
        out.append((np.stack([frames[k] for k in range(clip.onset, clip.offset + 1)]),
                    clip.apex - clip.onset))
    return out


def measure(dataset: str, n: int, noise: float) -> list[dict]:
    clips = clips_of(dataset, n, noise)
    rows = []
    for method in METHODS:
        errors, fractions, seconds, frames = [], [], 0.0, 0
        for stack, apex in clips:
            t0 = time.perf_counter()
            got = spot_apex(stack, method)
            seconds += time.perf_counter() - t0
            frames += len(stack)
            errors.append(abs(got - apex))
            fractions.append(abs(got - apex) / len(stack))
        rows.append({
            "dataset": dataset, "noise": noise, "method": method, "clips": len(clips),
            "frames_per_clip": round(frames / len(clips), 1),
            "frame_size": list(_frame_size(SPECS[dataset])),
            "median_error_frames": float(statistics.median(errors)),
            "p90_error_frames": float(np.percentile(errors, 90)),
            "median_error_fraction": float(statistics.median(fractions)),
            "p90_error_fraction": float(np.percentile(fractions, 90)),
            "within_10pct": float(np.mean(np.asarray(fractions) <= 0.10)),
            "ms_per_frame": 1000 * seconds / frames,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="12 clips per cell, noise x1 only")
    ap.add_argument("--clips", type=int, default=None, help="clips per cell (default 40)")
    args = ap.parse_args(argv)
    n = args.clips or (12 if args.quick else 40)
    noises = NOISE[:1] if args.quick else NOISE
    rows = []
    for dataset in SPECS:
        for noise in noises:
            rows += measure(dataset, n, noise)
            for r in rows[-len(METHODS):]:
                print(f"{r['dataset']:7s} noise x{r['noise']:g} {r['method']:4s}: median "
                      f"{100 * r['median_error_fraction']:.1f}% p90 "
                      f"{100 * r['p90_error_fraction']:.1f}% ({r['ms_per_frame']:.2f} ms/frame)",
                      file=sys.stderr)
    info = machine_base()
    path = results_path("apex", info, quick=args.quick)
    write_results(path, {"machine": info, "clips_per_cell": n, "target_median_fraction": 0.10,
                         "rows": rows})
    print("\n| dataset | noise | method | clips | frames/clip | median error (frames) | "
          "p90 (frames) | median (% of clip) | p90 (% of clip) | within 10% | ms/frame |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dataset']} | x{r['noise']:g} | {r['method']} | {r['clips']} | "
              f"{r['frames_per_clip']} | {r['median_error_frames']:g} | "
              f"{r['p90_error_frames']:.1f} | {100 * r['median_error_fraction']:.1f} | "
              f"{100 * r['p90_error_fraction']:.1f} | {100 * r['within_10pct']:.0f}% | "
              f"{r['ms_per_frame']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
