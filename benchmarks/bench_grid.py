"""Benchmark of the cross-validation grid, run locally and on Ray.

Usage::

    python benchmarks/bench_grid.py [--quick] [--epochs N] [--workers 2]

The grid: LEARNet (full size, 112x112 input) x the four augmentation settings x 5 folds on
two generated datasets (CASME II and SAMM look-alikes, 6 subjects, 2 clips per class,
caches at 112x112), ``--epochs`` (default 3) each: 40 units. It runs with the local
executor (the units one after another in this process) twice, with torch's default
threads (what ``mer-train cv`` does) and with one thread (what each Ray worker has), and
once with ``--executor ray`` on a local Ray instance of ``--workers`` single-thread
workers, each from a fresh run folder. Reported: wall time and units per minute of each, the ratio
(target: Ray >= 1.7x local on a 2-core machine), and Ray's overhead: starting Ray,
putting the plan into the object store (per dataset), and per unit the wall time the
workers did not spend preparing images or training (scheduling, fetching the plan,
returning the result), = (wall x workers - time inside the tasks) / units. The Ray run's
predictions are compared with the one-thread local run's (the same arithmetic: they must
be equal). ``--quick``: 2 folds, 1 epoch.

Writes ``benchmarks/results/grid_<host>_py<ver>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import machine_base, results_path, write_results

from mer_di.data_manifest.synth import generate_dataset
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training import CVSpec, TrainOptions, run_cv
from mer_di.training.executor import LocalExecutor
from mer_di.training.ray_executor import RayExecutor, import_ray

CONFIGS = ["baseline", "fliprot", "dualdi", "dualdi+fliprot"]


def make_caches(base: Path) -> list[Path]:
    caches = []
    for i, dataset in enumerate(("casme2", "samm")):
        root = generate_dataset(dataset, base / dataset, subjects=6, clips_per_class=2,
                                frame_size=(160, 160), length=(12, 20), seed=40 + i).root
        caches.append(build_cache(dataset, root, base / f"{dataset}.h5",
                                  options=BuildOptions(size=112)).cache)
    return caches


def run_grid(caches: list[Path], out: Path, executor, folds: int, epochs: int) -> float:
    start = time.perf_counter()
    for cache in caches:
        spec = CVSpec(caches=[str(cache)], models=["learnet"], configs=CONFIGS,
                      protocol="kfold", folds=folds, seeds=[0],
                      train=TrainOptions(epochs=epochs, patience=0), checkpoints=False)
        run_cv(spec, out / cache.stem, device="cpu", progress=False, echo=lambda _: None,
               executor=executor)
    return time.perf_counter() - start


def predictions(out: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted(out.glob("*/predictions.csv"))]
    return pd.concat(frames).sort_values(["config", "fold", "subject", "clip"],
                                         ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 folds, 1 epoch")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per unit (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="single-thread Ray workers")
    args = ap.parse_args(argv)
    folds = 2 if args.quick else 5
    epochs = args.epochs or (1 if args.quick else 3)
    ray = import_ray()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        caches = make_caches(base)
        units = len(caches) * len(CONFIGS) * folds
        print(f"grid: {units} LEARNet units ({len(caches)} datasets x {len(CONFIGS)} "
              f"settings x {folds} folds, {epochs} epochs)", file=sys.stderr)

        threads = __import__("torch").get_num_threads()
        local_s = run_grid(caches, base / "local", LocalExecutor(progress=False), folds, epochs)
        print(f"local ({threads} threads): {local_s:.1f} s", file=sys.stderr)
        one_s = run_grid(caches, base / "local1", LocalExecutor(progress=False, threads=1),
                         folds, epochs)
        print(f"local (1 thread): {one_s:.1f} s", file=sys.stderr)

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        ray_start_s = time.perf_counter() - t0
        executor = RayExecutor(unit_cpus=1.0, unit_gpus=0.0, progress=False)
        try:
            # the plan's trip into the object store, alone (as each run does once)
            from mer_di.training.plan import plan_run

            plan = plan_run(CVSpec(caches=[str(caches[0])], models=["learnet"],
                                   configs=CONFIGS, folds=folds))
            t0 = time.perf_counter()
            ref = ray.put(plan)
            put_s = time.perf_counter() - t0
            del ref
            ray_s = run_grid(caches, base / "ray", executor, folds, epochs)
        finally:
            ray.shutdown()
        print(f"ray: {ray_s:.1f} s (+ {ray_start_s:.1f} s to start Ray)", file=sys.stderr)

        same = predictions(base / "local1").equals(predictions(base / "ray"))
        inside = sum(s["images"] + s["unit"] for s in executor.task_seconds)
        images = sum(s["images"] for s in executor.task_seconds)
        overhead = (ray_s * args.workers - inside) / units
    info = machine_base()
    result = {
        "machine": info, "units": units, "epochs": epochs, "folds": folds,
        "ray_workers": args.workers, "ray_version": ray.__version__,
        "local_threads": threads, "local_seconds": local_s, "local_1thread_seconds": one_s,
        "ray_seconds": ray_s, "local_units_per_min": 60 * units / local_s,
        "local_1thread_units_per_min": 60 * units / one_s,
        "ray_units_per_min": 60 * units / ray_s, "ratio": local_s / ray_s,
        "ratio_vs_1thread": one_s / ray_s, "target_ratio": 1.7,
        "ray_start_seconds": ray_start_s, "plan_put_seconds": put_s,
        "ray_images_seconds_total": images,
        "ray_overhead_seconds_per_unit": overhead,
        "predictions_equal_to_1thread_local": bool(same),
    }
    write_results(results_path("grid", info, tag=f"{epochs}epochs", quick=args.quick), result)
    print("\n| executor | wall (s) | units/min | vs local |")
    print("|---|---:|---:|---:|")
    print(f"| local (1 process, torch threads {threads}) | "
          f"{local_s:.1f} | {result['local_units_per_min']:.1f} | 1.00x |")
    print(f"| local (1 process, 1 thread) | {one_s:.1f} | "
          f"{result['local_1thread_units_per_min']:.1f} | {local_s / one_s:.2f}x |")
    print(f"| ray ({args.workers} x 1-thread workers) | {ray_s:.1f} | "
          f"{result['ray_units_per_min']:.1f} | {result['ratio']:.2f}x |")
    print(f"\nRay: start {ray_start_s:.1f} s; plan into the object store {put_s * 1000:.0f} ms "
          f"per dataset; overhead {overhead:.2f} s per unit (scheduling, fetching the plan, "
          f"returning the result); preparing images in the workers {images:.1f} s in all; "
          f"predictions equal to the 1-thread local run's: {same}")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
