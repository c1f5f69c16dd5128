"""The wall time of the paper's whole Table I on 1, 4 and 32 GPUs: measured throughput
where a ``bench_train.py --device cuda`` result gives it, otherwise an ESTIMATE from
assumed throughputs (labelled as such in the output).

Usage::

    python benchmarks/estimate_table1.py [--train-results results/train_<host>_cuda.json]

The workload is counted, not guessed: Table I is 6 models x 4 augmentation settings x 2
datasets x 5 folds = 240 units per seed; a unit trains on 4/5 of the dataset's clips less
the 20 % validation split (CASME II: 245 clips of the five classes, SAMM: 136), three
samples per clip under the dual-phase settings, for at most 50 epochs (early stopping
usually ends sooner: this is an upper bound), and each epoch also predicts the validation
clips (forward only, counted as a third of a training image). A unit's time is its
images / the model's training throughput at batch 25 plus a fixed start-up (building the
model, preparing the images: ``--unit-start``). Units are placed on N GPUs longest first
(each GPU runs one unit at a time); the wall time is the last GPU's finish.

Writes ``benchmarks/results/table1_estimate.json`` and prints a markdown table.
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

# ASSUMED training throughput (images/s, AMP, batch 25, one H100/H200-class GPU), from
# public figures for these architectures scaled to a small batch; not measured here.
ASSUMED_IMG_PER_S = {"vggface": 1200.0, "vgg19": 1000.0, "resnet34": 2500.0,
                     "efficientnet_b0": 2000.0, "vit_base_patch16_224": 1000.0,
                     "learnet": 8000.0}


def unit_images(dataset: str, setting: str) -> float:
    """Training images of one unit (all epochs), validation forwards counted at 1/3."""
    train = CLIPS[dataset] * (FOLDS - 1) / FOLDS
    fit, val = train * (1 - VAL_FRACTION), train * VAL_FRACTION
    return EPOCHS * (fit * SETTINGS[setting] + val / 3)


def measured_throughput(path: Path | None) -> dict[str, float]:
    """Loop img/s per model of a ``bench_train.py --device cuda`` result, where present."""
    if path is None or not path.is_file():
        return {}
    records = json.loads(path.read_text()).get("records", [])
    return {r["model"]: float(r["real_images_per_s"]) for r in records
            if str(r.get("device", "")).startswith("cuda") and "real_images_per_s" in r}


def schedule(durations: list[float], gpus: int) -> float:
    """Longest-first placement of unit durations on ``gpus`` GPUs; the finish time."""
    load = [0.0] * gpus
    for d in sorted(durations, reverse=True):
        i = load.index(min(load))
        load[i] += d
    return max(load)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-results", type=Path, default=None,
                    help="a bench_train.py --device cuda result (measured img/s)")
    ap.add_argument("--unit-start", type=float, default=20.0,
                    help="seconds a unit spends before its first step (default 20)")
    args = ap.parse_args(argv)
    measured = measured_throughput(args.train_results)
    units, per_model = [], {}
    for model in MODELS:
        rate = measured.get(model, ASSUMED_IMG_PER_S[model])
        seconds = [args.unit_start + unit_images(d, s) / rate
                   for d in CLIPS for s in SETTINGS for _ in range(FOLDS)]
        per_model[model] = {"img_per_s": rate, "source": "measured" if model in measured
                            else "assumed", "unit_seconds_max": max(seconds),
                            "gpu_hours": sum(seconds) / 3600}
        units += seconds
    walls = {n: schedule(units, n) for n in (1, 4, 32)}
    estimated = len(measured) < len(MODELS)
    result = {"estimated": estimated, "units": len(units), "epochs": EPOCHS,
              "unit_start_seconds": args.unit_start, "models": per_model,
              "wall_seconds": walls}
    write_results(RESULTS / "table1_estimate.json", result)
    label = "ESTIMATED (assumed throughputs, no GPU measured)" if estimated else "measured"
    print(f"Table I, one seed, {len(units)} units, up to {EPOCHS} epochs: {label}\n")
    print("| model | img/s (source) | longest unit | GPU-hours |")
    print("|---|---:|---:|---:|")
    for model, m in per_model.items():
        print(f"| {model} | {m['img_per_s']:.0f} ({m['source']}) | "
              f"{m['unit_seconds_max'] / 60:.1f} min | {m['gpu_hours']:.2f} |")
    print("\n| GPUs | wall time |")
    print("|---:|---:|")
    for n, s in walls.items():
        print(f"| {n} | {s / 3600:.2f} h ({s / 60:.0f} min) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
