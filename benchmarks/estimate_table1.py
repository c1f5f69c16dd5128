"""The wall time of the paper's whole Table I (one seed, both datasets) on 1, 4 and 32 GPUs,
one unit per GPU and units sharing a GPU: from the per-model unit figures that
``gpu_check.py`` measured on a GPU where its results file exists, otherwise an ESTIMATE
from assumed figures (each model's source is labelled in the output).

Usage::

    python benchmarks/estimate_table1.py [--gpu-check results/gpu_check_<gpu>.json]
                                         [--train-results results/train_<host>_cuda.json]

The workload is counted, not guessed: Table I is 6 models x 4 augmentation settings x 2
datasets x 5 folds = 240 units per seed; a unit trains on 4/5 of the dataset's clips less
the 20 % validation split (CASME II: 245 clips of the five classes, SAMM: 136), three
samples per clip under the dual-phase settings, for at most 50 epochs (early stopping
usually ends sooner: this is an upper bound), and each epoch also predicts the validation
clips (forward only, counted as a third of a training image). A unit's time is its
start-up (building the model and moving it to the GPU; measured by gpu_check, else
``--unit-start``) plus its images / the model's training-loop throughput at batch 25.

Placement: units longest first on N GPUs. One unit per GPU: a GPU runs its units one after
another. ``k`` units sharing a GPU (``mer-train table1 --executor ray --unit-gpus 1/k``):
each GPU has k slots, and the GPU's own time is bounded below by the kernels its units
launch (a unit's training time x the model's GPU busy fraction, measured by gpu_check, else
assumed); the wall time is the larger of the k-slot placement and that bound, per GPU. This
assumes the kernels of units sharing a GPU interleave without slowing one another beyond
filling its idle time: an optimistic model, labelled as such.

Writes ``benchmarks/results/table1_estimate.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import RESULTS, write_results

MODELS = ("vggface", "vgg19", "resnet34", "efficientnet_b0", "vit_base_patch16_224",
          "learnet")
SETTINGS = {"baseline": 1, "fliprot": 1, "dualdi": 3, "dualdi+fliprot": 3}  # samples/clip
CLIPS = {"casme2": 245, "samm": 136}
FOLDS, EPOCHS, VAL_FRACTION = 5, 50, 0.2
GPU_COUNTS = (1, 4, 32)
SHARES = (1, 2, 3, 4)  # units per GPU

# ASSUMED training throughput (images/s, AMP, batch 25, one H100/H200-class GPU), from
# public figures for these architectures scaled to a small batch; not measured here.
ASSUMED_IMG_PER_S = {"vggface": 1200.0, "vgg19": 1000.0, "resnet34": 2500.0,
                     "efficientnet_b0": 2000.0, "vit_base_patch16_224": 1000.0,
                     "learnet": 8000.0}
# ASSUMED fraction of a unit's training time the GPU is busy at batch 25 (large convnets
# keep it busy; small models leave it waiting on kernel launches); not measured here.
ASSUMED_BUSY = {"vggface": 0.85, "vgg19": 0.85, "resnet34": 0.5, "efficientnet_b0": 0.35,
                "vit_base_patch16_224": 0.8, "learnet": 0.15}


def unit_images(dataset: str, setting: str) -> float:
    """Training images of one unit (all epochs), validation forwards counted at 1/3."""
    train = CLIPS[dataset] * (FOLDS - 1) / FOLDS
    fit, val = train * (1 - VAL_FRACTION), train * VAL_FRACTION
    return EPOCHS * (fit * SETTINGS[setting] + val / 3)


def newest_gpu_check() -> Path | None:
    """The newest ``results/gpu_check_*.json`` measured on a GPU, or None."""
    found = []
    for path in RESULTS.glob("gpu_check_*.json"):
        try:
            if json.loads(path.read_text()).get("gpu"):
                found.append(path)
        except (OSError, ValueError):
            continue
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def measured_units(path: Path | None) -> tuple[dict[str, dict], str | None]:
    """Per model, from a gpu_check results file measured on a GPU: ``img_per_s`` (the
    loop's), ``start_s``, ``busy`` and ``peak_mib`` where measured; and the GPU's name."""
    if path is None or not path.is_file():
        return {}, None
    report = json.loads(path.read_text())
    if not report.get("gpu"):
        return {}, None
    out = {}
    for r in report.get("sections", {}).get("models", {}).get("records", []):
        rate = r.get("real_images_per_s")
        if not str(r.get("device", "")).startswith("cuda") or not isinstance(rate, float):
            continue
        out[r["model"]] = {"img_per_s": rate, **{k: r[src] for k, src in (
            ("start_s", "startup_s"), ("busy", "busy_fraction"), ("peak_mib", "peak_memory_mib"),
            ("gpu_mib", "gpu_memory_mib")) if isinstance(r.get(src), (int, float))}}
    return out, report.get("device_name")


def measured_throughput(path: Path | None) -> dict[str, float]:
    """Loop img/s per model of a ``bench_train.py --device cuda`` result, where present."""
    if path is None or not path.is_file():
        return {}
    records = json.loads(path.read_text()).get("records", [])
    return {r["model"]: float(r["real_images_per_s"]) for r in records
            if str(r.get("device", "")).startswith("cuda") and "real_images_per_s" in r}


def schedule(durations: list[float], slots: int) -> float:
    """Longest-first placement of durations on ``slots`` slots; the finish time."""
    load = [0.0] * slots
    for d in sorted(durations, reverse=True):
        i = load.index(min(load))
        load[i] += d
    return max(load)


def shared_wall(units: list[tuple[float, float, float]], gpus: int, share: int) -> float:
    """Wall seconds of ``units`` ``(start-up s, training s, busy fraction)`` on ``gpus``
    GPUs with ``share`` units per GPU (see the module's notes: optimistic)."""
    slots = [[0.0, 0.0] for _ in range(gpus * share)]  # [wall, kernel seconds] per slot
    for start, train, busy in sorted(units, key=lambda u: -(u[0] + u[1])):
        slot = min(slots, key=lambda s: s[0])
        slot[0] += start + train
        slot[1] += train * busy
    per_gpu = [slots[g * share:(g + 1) * share] for g in range(gpus)]
    return max(max(max(s[0] for s in g), sum(s[1] for s in g)) for g in per_gpu)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu-check", type=Path, default=None,
                    help="a gpu_check.py results file (default: the newest one measured on a "
                         "GPU in benchmarks/results/, if any)")
    ap.add_argument("--train-results", type=Path, default=None,
                    help="a bench_train.py --device cuda result (measured img/s)")
    ap.add_argument("--unit-start", type=float, default=20.0,
                    help="assumed seconds a unit spends before its first step, where not "
                         "measured (default 20)")
    ap.add_argument("--out", type=Path, default=RESULTS / "table1_estimate.json",
                    help="the JSON to write (default: results/table1_estimate.json)")
    args = ap.parse_args(argv)
    check_path = args.gpu_check or newest_gpu_check()
    measured, gpu_name = measured_units(check_path)
    rates = measured_throughput(args.train_results)
    units, per_model = [], {}
    for model in MODELS:
        m = measured.get(model, {})
        rate = m.get("img_per_s", rates.get(model, ASSUMED_IMG_PER_S[model]))
        start = m.get("start_s", args.unit_start)
        busy = m.get("busy", ASSUMED_BUSY[model])
        trains = [unit_images(d, s) / rate for d in CLIPS for s in SETTINGS
                  for _ in range(FOLDS)]
        per_model[model] = {
            "img_per_s": rate, "start_s": start, "busy_fraction": busy,
            "source": {"img_per_s": "measured" if model in measured or model in rates
                       else "assumed", "start_s": "measured" if "start_s" in m else "assumed",
                       "busy_fraction": "measured" if "busy" in m else "assumed"},
            "peak_memory_mib": m.get("peak_mib"),
            "unit_seconds_max": start + max(trains),
            "gpu_hours": sum(start + t for t in trains) / 3600}
        units += [(start, t, busy) for t in trains]
    walls = {f"{n} GPU x {k}": shared_wall(units, n, k) for n in GPU_COUNTS for k in SHARES}
    estimated = any(v == "assumed" for m in per_model.values() for v in m["source"].values())
    peaks = [m["peak_memory_mib"] for m in per_model.values() if m["peak_memory_mib"]]
    gpu_mib = max((m.get("gpu_mib", 0) for m in measured.values()), default=0)
    result = {"estimated": estimated, "gpu_check": str(check_path) if measured else None,
              "gpu": gpu_name, "units": len(units), "epochs": EPOCHS,
              "unit_start_seconds_assumed": args.unit_start, "models": per_model,
              "wall_seconds": walls,
              "memory_note": (f"largest unit peak {max(peaks):.0f} MiB of {gpu_mib:.0f} MiB: "
                              f"up to {int(gpu_mib // max(peaks))} units fit on one GPU"
                              if peaks and gpu_mib else "peak memory not measured")}
    write_results(args.out, result)
    label = (f"measured on {gpu_name}" if not estimated else
             "ESTIMATED (assumed figures where not measured; no GPU measured)" if not measured
             else f"partly measured on {gpu_name}, the rest assumed")
    print(f"Table I, one seed, {len(units)} units, up to {EPOCHS} epochs: {label}\n")
    print("| model | loop img/s | start-up s | GPU busy | longest unit | GPU-hours |")
    print("|---|---:|---:|---:|---:|---:|")
    for model, m in per_model.items():
        src = m["source"]
        print(f"| {model} | {m['img_per_s']:.0f} ({src['img_per_s']}) | {m['start_s']:.1f} "
              f"({src['start_s']}) | {m['busy_fraction']:.2f} ({src['busy_fraction']}) | "
              f"{m['unit_seconds_max'] / 60:.1f} min | {m['gpu_hours']:.2f} |")
    print("\n| GPUs | " + " | ".join(f"{k} unit{'s' if k > 1 else ''} per GPU" for k in SHARES)
          + " |")
    print("|---:|" + "---:|" * len(SHARES))
    for n in GPU_COUNTS:
        print(f"| {n} | " + " | ".join(f"{walls[f'{n} GPU x {k}'] / 60:.0f} min"
                                       for k in SHARES) + " |")
    print(f"\n{result['memory_note']}; sharing assumes the units' kernels fill each other's "
          "idle GPU time (optimistic).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
