"""Section 5 of ``gpu_check.py``: each full-size Table I model at batch 25, random init, on
the GPU: the training loop's img/s and the floor's (forward + backward + Adam step on
resident batches; both ``bench_train.bench_case``), their ratio (target >= 90 %), peak
memory (``torch.cuda.max_memory_allocated`` over the timed fits), the best-epoch snapshot
cost (``bench_snapshot.snapshot_cost``, before/after issue 17.1), the GPU's kernel-busy
fraction and a unit's start-up (the model built and moved to the GPU).

Kernel-busy fraction: one epoch of :func:`mer_di.training.loop.fit` under
``torch.profiler`` (CUDA activity, CUPTI); the union of the CUDA kernels' and copies' time
intervals over the epoch's wall time. The profiler's own overhead lengthens the wall
time, so this is a lower bound; ``1 - busy`` is the share of the GPU that units sharing it
(``--unit-gpus 0.5``) can fill.

Without a GPU, each model's snapshot cost on the CPU alone (the GPU figures marked not
measured); with ``rehearse``, the whole section on the CPU, on a tiny case.
"""

from __future__ import annotations

import time

from bench_snapshot import snapshot_cost
from bench_train import Case, bench_case, real_fit, sync

TABLE1_MODELS = ("vggface", "vgg19", "resnet34", "efficientnet_b0", "vit_base_patch16_224",
                 "learnet")
NO_GPU = "not measured: no GPU"
GPU_CASE = {"samples": 200, "epochs": 2, "repeats": 2}  # per model: 8 steps an epoch
TINY_CASE = {"samples": 50, "epochs": 1, "repeats": 1}
SNAPSHOT_REPEATS = 3


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``(start, end)`` intervals (same units)."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def kernel_busy_fraction(model, images, train, seed: int = 0) -> dict:
    """The GPU's busy fraction over one epoch of ``fit`` (see the module's notes)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    sync(images.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        real_fit(model, images, train, 1, seed)
        wall = time.perf_counter() - t0
    spans = [(e.time_range.start, e.time_range.end) for e in prof.events()
             if e.device_type == DeviceType.CUDA]
    if spans:
        busy = _union_seconds(spans) / 1e6
        method = "torch.profiler: union of CUDA kernel/copy intervals / wall (profiler on)"
    else:  # a profiler build without device events: the kernels' summed self time
        busy = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6
        method = "torch.profiler: summed self device time / wall (profiler on)"
    return {"busy_fraction": min(busy / wall, 1.0), "kernel_seconds": busy,
            "wall_seconds": wall, "method": method}


def startup_seconds(name: str, device) -> float:
    """Seconds to build ``name`` (random init, five classes) and move it to ``device``."""
    import torch

    from mer_di.training.models import build_model

    t0 = time.perf_counter()
    model, _ = build_model(name, 5)
    model.to(device)
    sync(device)
    seconds = time.perf_counter() - t0
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return seconds


def _timed(name: str, device, case: dict) -> dict:
    import torch

    cuda = device.type == "cuda"

    def extra(model, images, train) -> dict:
        rec: dict = {}
        if cuda:
            rec["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
            rec["gpu_memory_mib"] = torch.cuda.get_device_properties(device).total_memory / 2**20
            rec.update(kernel_busy_fraction(model, images, train))
        else:
            rec["peak_memory_mib"] = rec["busy_fraction"] = NO_GPU
        rec["snapshot"] = snapshot_cost(model, device, SNAPSHOT_REPEATS)
        return rec

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    record = bench_case(Case(name, **case), device, 0.0, False, extra=extra)
    record["startup_s"] = startup_seconds(name, device)
    return record


def _snapshot_only(name: str, device) -> dict:
    import torch

    from mer_di.training.models import build_model

    torch.manual_seed(0)
    model, info = build_model(name, 5)
    record = {"model": name, "device": device.type, "input_size": info.input_size,
              "n_params": info.n_params,
              "snapshot": snapshot_cost(model.to(device), device, SNAPSHOT_REPEATS)}
    for key in ("real_images_per_s", "floor_images_per_s", "real_vs_floor",
                "peak_memory_mib", "busy_fraction", "startup_s"):
        record[key] = NO_GPU
    return record


def _cell(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "n/m"


def markdown_table(records: list[dict]) -> str:
    lines = ["| model | device | loop img/s | floor img/s | loop / floor | peak MiB | snapshot "
             "before -> after ms | GPU busy | start-up s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['model']} | {r.get('device', '')} | failed: "
                         f"{r['error'][:80]} | | | | | | |")
            continue
        s, ratio = r["snapshot"], r["real_vs_floor"]
        lines.append(
            f"| {r['model']} | {r['device']} | {_cell(r['real_images_per_s'], '.0f')} | "
            f"{_cell(r['floor_images_per_s'], '.0f')} | "
            f"{_cell(100 * ratio, '.0f') + ' %' if isinstance(ratio, float) else 'n/m'} | "
            f"{_cell(r['peak_memory_mib'], '.0f')} | {s['before_ms']['best']:.1f} -> "
            f"{s['after_ms']['best']:.2f} | {_cell(r['busy_fraction'], '.2f')} | "
            f"{_cell(r['startup_s'], '.1f')} |")
    return "\n".join(lines) + "\n\n(n/m: not measured)"


def measure_models(device: str, gpu: bool, tiny: bool, rehearse: bool = False) -> dict:
    """Section 5: one record per model (a model that fails is recorded and the next runs)."""
    import torch

    dev = torch.device(device)
    names = ("learnet",) if tiny else TABLE1_MODELS
    timed = gpu or rehearse
    case = TINY_CASE if (tiny or not gpu) else GPU_CASE
    records = []
    for name in names:
        try:
            records.append(_timed(name, dev, case) if timed else _snapshot_only(name, dev))
        except Exception as exc:  # recorded; the next model runs
            records.append({"model": name, "device": device,
                            "error": f"{type(exc).__name__}: {exc}"[:1000]})
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    failed = [r["model"] for r in records if "error" in r]
    status = ("ok" if not failed else "failed: " + ", ".join(failed)) + (
        "" if gpu else f" ({NO_GPU}: " + ("rehearsed on the CPU)" if rehearse
                                         else "the snapshot cost on the CPU only)"))
    ratios = [r["real_vs_floor"] for r in records
              if r.get("model") in ("resnet34", "vgg19", "vit_base_patch16_224",
                                    "efficientnet_b0")
              and isinstance(r.get("real_vs_floor"), float)]
    return {"status": status, "case": case if timed else None, "batch_size": 25,
            "records": records, "table_markdown": markdown_table(records),
            "target_loop_vs_floor": 0.90,
            "target_met": (min(ratios) >= 0.90) if (gpu and ratios) else NO_GPU}
