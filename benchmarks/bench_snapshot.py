"""The cost of keeping the best epoch's weights, per improvement of the validation loss:
before (issue 17.1: the loop copied the whole state to the host and deep-copied it again)
and after (:class:`mer_di.training.loop.BestWeights`: buffers on the model's own device,
allocated at the first save, copied into in place at every later one).

Usage::

    python benchmarks/bench_snapshot.py [--device auto|cpu|cuda] [--models vgg19] [--repeats 5]

For each model (full size, random initialisation, as :func:`mer_di.training.models.build_model`
makes it for five classes) on each device, times, best and median of ``--repeats``:

- ``before``: ``copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})``,
  the previous snapshot kept alive until the new one exists, as the old loop held it (on
  the CPU ``.cpu()`` is a no-op, so this is one host copy into fresh memory; on a GPU a
  device-to-host transfer and then a host copy);
- ``after``: ``BestWeights.save(model)``, the second and later saves (the first, which
  allocates the buffers, is reported alone as ``after_first_ms``).

A GPU is synchronised before and after each timed call. Writes
``benchmarks/results/snapshot_<device>.json`` (``cpu``, or the GPU's name as a slug, e.g.
``snapshot_nvidia-h200.json``) and prints a markdown table. On a shared machine the CPU
figures depend on what else runs: the file records the load average and the CPUs' busy
fraction before and after.
"""

from __future__ import annotations

import argparse
import copy
import re
import statistics
import sys
import time
from pathlib import Path

from _common import RESULTS, cpu_busy_fraction, load_average, machine_base, write_results

CLASSES = 5
DEFAULT_MODELS = ("vgg19",)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_copy(model) -> dict:
    """The snapshot the loop took before issue 17.1: every tensor to the host, deep-copied."""
    return copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})


def _times_ms(fn, device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
    return times


def snapshot_cost(model, device, repeats: int = 5) -> dict:
    """Milliseconds per snapshot of ``model`` (already on ``device``), before and after:
    ``before_ms``/``after_ms`` {best, median, all}, ``after_first_ms``, ``state_mib``,
    ``speedup`` (best before / best after) and ``kept_on_device`` (every saved tensor is
    on the model's device)."""
    import torch

    from mer_di.training.loop import BestWeights

    state_mib = sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 2**20
    held = {"snapshot": host_copy(model)}  # the previous improvement's copy, alive

    def before() -> None:
        held["snapshot"] = host_copy(model)

    before_ms = _times_ms(before, device, repeats)
    held.clear()
    best = BestWeights()
    after_first = _times_ms(lambda: best.save(model), device, 1)[0]
    after_ms = _times_ms(lambda: best.save(model), device, repeats)
    on_device = all(t.device == next(model.parameters()).device for t in best.state.values())
    best.state = None  # the buffers freed
    if device.type == "cuda":
        torch.cuda.empty_cache()
    summary = {
        "state_mib": state_mib,
        "repeats": repeats,
        "before_ms": {"best": min(before_ms), "median": statistics.median(before_ms),
                      "all": before_ms},
        "after_first_ms": after_first,
        "after_ms": {"best": min(after_ms), "median": statistics.median(after_ms),
                     "all": after_ms},
        "kept_on_device": on_device,
    }
    summary["speedup"] = summary["before_ms"]["best"] / max(summary["after_ms"]["best"], 1e-9)
    summary["after_gib_per_s"] = state_mib / 1024 / max(summary["after_ms"]["best"] / 1e3,
                                                        1e-12)
    return summary


def device_slug(device) -> str:
    """``cpu``, or the GPU's name as a file-name slug (``nvidia-h200``)."""
    import torch

    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cuda"


def measure(model_name: str, device, repeats: int) -> dict:
    """Build ``model_name`` (full size, random weights) on ``device`` and time its snapshot."""
    import torch

    from mer_di.training.models import build_model

    torch.manual_seed(0)
    model, info = build_model(model_name, CLASSES)
    model.to(device)
    record = {"model": model_name, "device": str(device), "n_params": info.n_params,
              **snapshot_cost(model, device, repeats)}
    del model
    return record


def markdown_table(records: list[dict]) -> str:
    lines = ["| device | model | state MiB | before ms (best / median) | after ms (best / "
             "median) | first save ms | before / after |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['device']} | {r['model']} | {r['state_mib']:.0f} | "
                     f"{r['before_ms']['best']:.1f} / {r['before_ms']['median']:.1f} | "
                     f"{r['after_ms']['best']:.2f} / {r['after_ms']['median']:.2f} | "
                     f"{r['after_first_ms']:.1f} | {r['speedup']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated model names (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="",
                        help="a line recorded with the results (e.g. who else used the CPUs)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON to write (default: results/snapshot_<device>.json)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    devices = [torch.device("cpu")] if args.device == "cpu" else (
        [torch.device("cuda")] if args.device == "cuda" else
        [torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")])
    for device in devices:
        before = {"load_average": load_average(), "cpus_busy": cpu_busy_fraction()}
        records = [measure(m.strip(), device, args.repeats) for m in args.models.split(",")]
        after = {"load_average": load_average(), "cpus_busy": cpu_busy_fraction()}
        table = markdown_table(records)
        print(table)
        payload = {
            "command": " ".join(["python benchmarks/bench_snapshot.py",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {**machine_base(), "torch": torch.__version__,
                        "torch_threads": torch.get_num_threads(),
                        **({"gpu": torch.cuda.get_device_name(device)}
                           if device.type == "cuda" else {})},
            "load": {"before": before, "after": after},
            "note": args.note,
            "records": records,
            "table_markdown": table,
        }
        write_results(args.out or RESULTS / f"snapshot_{device_slug(device)}.json", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
