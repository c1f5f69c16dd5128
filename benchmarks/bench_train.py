"""Benchmark of the training loop against the same model fed pre-made batches.

Usage::

    python benchmarks/bench_train.py [--quick] [--device auto|cpu|cuda] [--models learnet,resnet34]

For each model (full size, random weights; ``learnet`` at 112x112, ``resnet34`` at 224x224)
on a look-alike training set held, as the runner holds it, in one prepared image tensor
(:func:`mer_di.training.augment.prepare_images` of random float32 images standing in for the cache:
the full, onset and offset rows of 150 clips, 10 % of the phase images missing), measures:

(a) the real loop: :func:`mer_di.training.loop.fit` itself, configuration ``dualdi+fliprot`` (the
    samples of :func:`mer_di.training.samples.unit_samples` with ``dual=True``: each training clip's
    full, onset and offset rows; a pair model gets its ``fliprot`` samples), batch 25,
    Adam 1e-4, no validation, a fixed number of epochs, timed around the call: shuffling,
    the rows gathered from the image tensor, the flip/rotate augmentation on every batch,
    forward, backward, the optimiser step, ``loss.item()``, the per-epoch bookkeeping;
(b) the floor: the same model, optimiser, loss, autocast setting, batch sizes and number of
    steps, fed batches gathered and augmented before the clock starts, so that only
    forward, backward and the step run (no ``.item()``; one synchronisation at the end);
(c) for attribution, the real loop without the augmentation (``fit`` with
    ``fliprot=False``, i.e. configuration ``dualdi``), and on a GPU the floor with
    ``loss.item()`` after every step (the loop's per-step sync).

Each is warmed up once (a one-epoch fit, one floor epoch) and timed as the best of several
repeats, the variants' repeats interleaved. Reported: images/s of each (samples seen / wall
seconds), loop/floor (target >= 90 %: the data path costs at most 10 %) and the loop's extra
milliseconds per step. Then, unless ``--no-profile``, the data path's pieces for one batch,
each timed alone (best and median of 10): the gather ``images[index]``,
``random_flip_rotate`` and within it ``affine_grid`` and ``grid_sample``, the label gather,
and the best-epoch snapshot (``BestWeights.save``). Alone they run with warm caches; inside
the loop, after a backward pass, they cost more (compare "loop - floor ms/step").

Devices: ``--device cpu`` measures learnet (200 samples, 3 epochs, 8 repeats) and resnet34
(resnet34 at 224 on 2 CPU cores takes seconds a step: 50 samples, 2 epochs, 2 repeats);
``--device cuda`` the same models on larger sets (400 samples, 5 epochs), plus resnet34 at
224 on 1000 samples; ``--device auto`` (the default) the CPU
and, where there is one, the GPU. Writes
``benchmarks/results/train_<host>_py<ver>_<device>.json`` (one file per device) and prints a
markdown table.

On a shared machine other processes steal time slices from the 2-thread kernels, so before
each case the script waits, up to ``--idle-wait`` seconds, until the CPUs are idle (Linux
only) and records the busy fraction it saw; the variants' repeats are interleaved so drift
hits all alike, and the best of each is kept. The full CPU run takes about 2 minutes on an
idle 2-core machine (``--quick``: about 50 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from _common import (  # benchmarks/ is on sys.path when a script here runs
    ROOT,
    cpu_busy_fraction,
    machine_base,
    results_path,
    wait_for_idle,
    write_results,
)

BATCH = 25
LR = 1e-4
CLASSES = 5
MISSING_PHASE = 0.10  # fraction of clips without an onset (and, independently, offset) image
SEED = 0
TARGET_REAL_VS_FLOOR = 0.90


@dataclass(frozen=True)
class Case:
    model: str
    samples: int  # training samples (rows of the image tensor) per epoch
    epochs: int  # per timed fit
    repeats: int  # timed fits (and floors), interleaved
    clips: int = 150  # clips in the image tensor (3 rows each: full, onset, offset)


CASES = {
    "cpu": (Case("learnet", 200, 3, 8), Case("resnet34", 50, 2, 2)),
    "cuda": (Case("learnet", 400, 5, 3), Case("resnet34", 400, 5, 3),
             Case("resnet34", 1000, 3, 3, clips=400)),
}
QUICK = {
    "cpu": (Case("learnet", 100, 2, 3), Case("resnet34", 25, 2, 1)),
    "cuda": (Case("learnet", 200, 2, 2), Case("resnet34", 200, 2, 2),
             Case("resnet34", 1000, 1, 2, clips=400)),
}


# -- the data -------------------------------------------------------------------------------

def fake_clips(n_clips: int, side: int, seed: int):
    """A :class:`mer_di.training.data.ClipSet` of random raw dynamic images (side x side x 3)."""
    from mer_di.training.data import ClipSet

    rng = np.random.default_rng(seed)

    def images() -> np.ndarray:
        return rng.random((n_clips, side, side, 3), dtype=np.float32)

    return ClipSet(
        datasets=np.array(["casme2"] * n_clips, dtype=object),
        subjects=np.array([f"sub{i % 20:02d}" for i in range(n_clips)], dtype=object),
        clips=np.array([f"clip{i:03d}" for i in range(n_clips)], dtype=object),
        labels=rng.integers(0, CLASSES, n_clips),
        classes=[f"class{k}" for k in range(CLASSES)],
        full=images(), onset=images(), offset=images(),
        has_onset=rng.random(n_clips) >= MISSING_PHASE,
        has_offset=rng.random(n_clips) >= MISSING_PHASE,
    )


def training_clips(clips, samples: int, pair: bool, seed: int) -> np.ndarray:
    """Clips (a random choice) whose ``dualdi`` samples number exactly ``samples``."""
    per_clip = (np.ones(len(clips), int) if pair
                else 1 + clips.has_onset.astype(int) + clips.has_offset.astype(int))
    for attempt in range(100):  # a greedy pick in random order; another order if it misses
        chosen, total = [], 0
        for i in np.random.default_rng(seed + attempt).permutation(len(clips)):
            if total + per_clip[i] <= samples:
                chosen.append(i)
                total += per_clip[i]
            if total == samples:
                return np.sort(np.array(chosen))
    raise ValueError(f"{len(clips)} clips cannot make {samples} samples")


def epoch_batches(n: int, seed: int) -> list[int]:
    """The batch sizes of one epoch of ``fit`` over ``n`` samples (it drops a batch of one)."""
    if n % BATCH == 1 and n > 1:
        n -= 1
    return [min(BATCH, n - i) for i in range(0, n, BATCH)]


# -- what is timed --------------------------------------------------------------------------

def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def real_fit(model, images, train, epochs: int, seed: int, fliprot: bool = True) -> float:
    """Wall seconds of one :func:`mer_di.training.loop.fit` (``dualdi+fliprot``, or ``dualdi``
    without ``fliprot``; no validation)."""
    from mer_di.training.loop import TrainOptions, fit

    options = TrainOptions(epochs=epochs, batch_size=BATCH, lr=LR, patience=0,
                           val_fraction=0.0)
    sync(images.device)
    t0 = time.perf_counter()
    fit(model, images, train, None, options, seed, fliprot=fliprot)
    sync(images.device)
    return time.perf_counter() - t0


def make_batches(images, train, seed: int) -> list[tuple]:
    """One epoch of batches as ``fit`` makes them (shuffled, gathered, flipped and rotated),
    made now, before any timing."""
    import torch

    from mer_di.training.augment import random_flip_rotate
    from mer_di.training.loop import _batch

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)
    batches = []
    start = 0
    for size in epoch_batches(len(train), seed):
        rows = order[start:start + size]
        start += size
        x = random_flip_rotate(_batch(images, train.index[rows]), generator).contiguous()
        batches.append((x, train.labels[rows].to(images.device)))
    sync(images.device)
    return batches


def floor_fit(model, batches: list[tuple], epochs: int, device, item: bool = False) -> float:
    """Wall seconds of ``epochs`` passes over pre-made ``batches``: forward, loss,
    backward, Adam step and nothing else (``item``: also ``loss.item()`` after each step)."""
    import torch
    import torch.nn.functional as F

    from mer_di.training.loop import TrainOptions, _autocast, _forward

    amp = TrainOptions().amp
    model.to(device)
    sync(device)
    t0 = time.perf_counter()
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    scaler = torch.amp.GradScaler("cuda", enabled=(
        amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()))
    for _ in range(epochs):
        for x, y in batches:
            with _autocast(device, amp):
                loss = F.cross_entropy(_forward(model, x), y)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            if item:
                loss.item()
    sync(device)
    return time.perf_counter() - t0


def _best_ms(fn: Callable[[], object], device, repeats: int) -> dict:
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"best_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times)}


def profile_data_path(model, images, train, seed: int, repeats: int = 10) -> dict:
    """The data path's pieces for one full batch, each timed alone (ms, best and median)."""
    import math

    import torch
    import torch.nn.functional as F

    from mer_di.training.augment import MAX_DEGREES, _affine_grid, random_flip_rotate
    from mer_di.training.loop import BestWeights, _batch

    device = images.device
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(train), generator=generator)[:BATCH]
    index = train.index[rows]
    labels = train.labels.to(device)
    x = _batch(images, index)
    paired = x.dim() == 5
    c, h, w = x.shape[-3:]
    angle = (torch.rand(BATCH, generator=generator) * 2 - 1) * math.radians(MAX_DEGREES)
    theta = torch.zeros(BATCH, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle) * h / w
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) * w / h, torch.cos(angle)
    theta = theta.to(device, x.dtype)
    grid = F.affine_grid(theta, [BATCH, c, h, w], align_corners=False)
    plane = x[0] if paired else x
    snapshot = BestWeights()
    snapshot.save(model)  # the first save allocates; the loop's later saves copy in place
    steps = {
        "gather images[index]": lambda: _batch(images, index),
        "random_flip_rotate": lambda: random_flip_rotate(x, generator),
        "  the sampling grid (_affine_grid)": lambda: _affine_grid(theta, h, w),
        "  grid_sample (per image plane)": lambda: F.grid_sample(
            plane, grid, mode="bilinear", padding_mode="zeros", align_corners=False),
        "labels[rows]": lambda: labels[rows.to(device)],
        "per improvement: BestWeights.save": lambda: snapshot.save(model),
    }
    return {label: _best_ms(fn, device, repeats) for label, fn in steps.items()}


# -- one case -------------------------------------------------------------------------------

def bench_case(case: Case, device, idle_wait: float, profile: bool,
               extra: Callable[..., dict] | None = None) -> dict:
    """Time ``case`` on ``device`` (see the module's notes); ``extra(model, images, train)``,
    where given, runs after the timed fits and its dict joins the record (gpu_check.py:
    peak memory, snapshot cost, GPU busy fraction on the same model and data)."""
    import torch

    from mer_di.training.models import build_model
    from mer_di.training.samples import ImageBank, unit_samples

    torch.manual_seed(SEED)
    model, info = build_model(case.model, CLASSES)
    model.to(device)
    clips = fake_clips(case.clips, info.input_size, SEED)
    bank = ImageBank(clips, info.input_size, info.mean, info.std, device)
    images = bank.tensor
    idx = training_clips(clips, case.samples, info.pair, SEED)
    train = unit_samples(clips, bank, idx, info.pair, dual=not info.pair)
    assert len(train) == case.samples, (len(train), case.samples)
    batches = make_batches(images, train, SEED)
    per_epoch = sum(len(y) for _, y in batches)
    seen = per_epoch * case.epochs
    steps = len(batches) * case.epochs

    busy = wait_for_idle(idle_wait, warn=True)
    # warm-up: kernels chosen, allocator primed, Adam's state made once
    real_fit(model, images, train, 1, SEED)
    floor_fit(model, batches, 1, device)
    runs: dict[str, list[float]] = {"real": [], "noaug": [], "floor": [], "floor_item": []}
    for r in range(case.repeats):  # interleaved, so drift hits all alike
        runs["real"].append(real_fit(model, images, train, case.epochs, SEED + 1 + r))
        runs["floor"].append(floor_fit(model, batches, case.epochs, device))
        runs["noaug"].append(real_fit(model, images, train, case.epochs, SEED + 1 + r,
                                      fliprot=False))
        if device.type == "cuda":
            runs["floor_item"].append(floor_fit(model, batches, case.epochs, device, item=True))
    best = {k: min(v) for k, v in runs.items() if v}
    record = {
        "device": device.type,
        "model": case.model,
        "input_size": info.input_size,
        "n_params": info.n_params,
        "config": "fliprot" if info.pair else "dualdi+fliprot",
        "clips_in_tensor": case.clips,
        "image_tensor_rows": int(images.shape[0]),
        "image_tensor_mb": images.numel() * images.element_size() / 2**20,
        "training_clips": int(len(idx)),
        "samples": case.samples,
        "epochs": case.epochs,
        "steps": steps,
        "images_timed": seen,
        "repeats": case.repeats,
        "cpus_busy_before": busy,
        "times_s": {k: v for k, v in runs.items() if v},
        "best_s": best,
        "median_s": {k: statistics.median(v) for k, v in runs.items() if v},
        "real_images_per_s": seen / best["real"],
        "noaug_images_per_s": seen / best["noaug"],
        "floor_images_per_s": seen / best["floor"],
        "floor_ms_per_step": 1e3 * best["floor"] / steps,
        "real_ms_per_step": 1e3 * best["real"] / steps,
        "real_minus_floor_ms_per_step": 1e3 * (best["real"] - best["floor"]) / steps,
        "real_vs_floor": best["floor"] / best["real"],
        "noaug_vs_floor": best["floor"] / best["noaug"],
    }
    if "floor_item" in best:
        record["floor_item_images_per_s"] = seen / best["floor_item"]
        record["floor_item_vs_floor"] = best["floor"] / best["floor_item"]
    if profile:
        record["data_path_ms"] = profile_data_path(model, images, train, SEED)
    if extra is not None:
        record.update(extra(model, images, train))
    del images, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return record


# -- reporting ------------------------------------------------------------------------------

def machine_info(device) -> dict:
    import timm
    import torch

    info = {**machine_base(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "timm": timm.__version__, "device": device.type}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    bf16=torch.cuda.is_bf16_supported())
    return info


def data_path_ms(profile: dict) -> float:
    """Per batch: the gather, the augmentation and the label gather (best times)."""
    return sum(profile[k]["best_ms"] for k in
               ("gather images[index]", "random_flip_rotate", "labels[rows]"))


def markdown_table(records: list[dict]) -> str:
    lines = [
        "| device | model | input | samples x epochs | steps | floor img/s | loop img/s "
        "| loop / floor | loop w/o flip-rotate / floor | floor ms/step | loop - floor ms/step "
        "| data path alone ms/batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        data = r.get("data_path_ms")
        data_ms = "" if data is None else f"{data_path_ms(data):.1f}"
        lines.append(
            f"| {r['device']} | {r['model']} | {r['input_size']} | {r['samples']} x "
            f"{r['epochs']} | {r['steps']} | {r['floor_images_per_s']:.1f} "
            f"| {r['real_images_per_s']:.1f} | {100 * r['real_vs_floor']:.0f} % "
            f"| {100 * r['noaug_vs_floor']:.0f} % | {r['floor_ms_per_step']:.0f} "
            f"| {r['real_minus_floor_ms_per_step']:.1f} | {data_ms} |"
        )
    return "\n".join(lines)


def devices(choice: str) -> list:
    import torch

    if choice == "cpu":
        return [torch.device("cpu")]
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        return [torch.device("cuda")]
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples, epochs and repeats")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cpu, cuda, or auto: the CPU and, where there is one, the GPU")
    parser.add_argument("--models", default=None,
                        help="comma-separated model names (default: those of the device's "
                             "cases: learnet,resnet34)")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip timing the data path's pieces")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    parser.add_argument("--idle-wait", type=float, default=60.0,
                        help="seconds to wait, before each case, for other processes to go "
                             "quiet (default: %(default)s)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    wanted = None if args.models is None else [m.strip() for m in args.models.split(",")]
    for device in devices(args.device):
        cases = list((QUICK if args.quick else CASES)[device.type])
        if wanted is not None:
            known = {c.model for c in cases}
            # a model without a case of its own gets the shape of the device's first case
            cases = [c for c in cases if c.model in wanted] + [
                Case(m, *(getattr(cases[0], f) for f in ("samples", "epochs", "repeats",
                                                         "clips")))
                for m in wanted if m not in known]
        info = machine_info(device)
        print(f"# {info['hostname']}: {info['cpu_model']}, {info['cpu_count']} CPUs "
              f"({info['cpus_usable']} usable), torch {info['torch']} "
              f"({info['torch_threads']} threads), Python {info['python']}"
              + (f", {info['gpu']}" if device.type == "cuda" else ""), flush=True)
        busy_before = cpu_busy_fraction()
        records = []
        for case in cases:
            record = bench_case(case, device, args.idle_wait, not args.no_profile)
            records.append(record)
            times = "; ".join(f"{k} " + ", ".join(f"{t:.2f}" for t in v)
                              for k, v in record["times_s"].items())
            print(f"# {device.type} {case.model} {record['input_size']}: floor "
                  f"{record['floor_images_per_s']:.1f} img/s, loop "
                  f"{record['real_images_per_s']:.1f} img/s, loop/floor "
                  f"{100 * record['real_vs_floor']:.0f} % (seconds: {times})", flush=True)
        busy_after = cpu_busy_fraction()
        summary = {
            "min_real_vs_floor": min(r["real_vs_floor"] for r in records),
            "target_real_vs_floor": TARGET_REAL_VS_FLOOR,
        }
        summary["target_met"] = bool(summary["min_real_vs_floor"] >= TARGET_REAL_VS_FLOOR)
        table = markdown_table(records)
        print()
        print(table)
        print()
        print(f"min loop/floor {100 * summary['min_real_vs_floor']:.0f} % (target >= "
              f"{100 * TARGET_REAL_VS_FLOOR:.0f} %): "
              + ("target met" if summary["target_met"] else "TARGET MISSED"))
        for r in records:
            if "data_path_ms" not in r:
                continue
            print()
            print(f"Data path, {r['device']} {r['model']} {r['input_size']}, one batch of "
                  f"{BATCH} (floor step {r['floor_ms_per_step']:.0f} ms, loop step "
                  f"{r['real_ms_per_step']:.0f} ms):")
            for label, t in r["data_path_ms"].items():
                print(f"  {label:34s} {t['best_ms']:8.2f} ms best  {t['median_ms']:8.2f} ms "
                      "median")
            if "floor_item_images_per_s" in r:
                print(f"  floor with loss.item() every step: {r['floor_item_images_per_s']:.1f} "
                      f"img/s ({100 * r['floor_item_vs_floor']:.0f} % of the floor)")
        if not args.no_write:
            payload = {
                "command": "python benchmarks/bench_train.py" + (" --quick" if args.quick else "")
                           + f" --device {device.type}"
                           + (f" --models {args.models}" if args.models else ""),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "machine": info,
                "cpus_busy_by_others": {"before": busy_before, "after": busy_after},
                "setup": {"batch_size": BATCH, "lr": LR, "optimiser": "Adam",
                          "classes": CLASSES, "missing_phase_fraction": MISSING_PHASE,
                          "seed": SEED, "amp": True, "fliprot": True},
                "records": records,
                "summary": summary,
                "table_markdown": table,
            }
            write_results(results_path("train", info, info["device"], args.quick), payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
