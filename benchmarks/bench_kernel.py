"""Benchmark of the fused dynamic-image kernel against memory bandwidth and plain NumPy.

Usage::

    python benchmarks/bench_kernel.py [--quick]

Measures in one run:

(a) memory-copy bandwidth: ``np.copyto`` of a large uint8 buffer (GB/s counted as bytes
    read, i.e. buffer size / seconds); for context also a read-only bandwidth (a Numba
    parallel sum over the same buffer);
(b) the fused kernel (:func:`mer_di.pipeline.dynamic_image.clip_dynamic_images` with a reused
    ``out`` buffer): input throughput in GB/s = uint8 frame bytes / seconds, best of
    several repeats after a warm-up ("warm": the same clip again, so clips smaller than
    the last-level cache are read from it) and best of repeats after evicting the clip
    from the caches ("cold": read from DRAM);
(c) plain NumPy: ``frames.astype(np.float32)`` then one ``np.tensordot`` per image
    (full, onset, offset);
(d) a per-frame Python loop as in the public ports: for each frame and each image it
    belongs to, ``img += w * frame.astype(np.float64)``.

Sizes 224x224x3 and the native CASME II size 640x480x3, T = 40, 80, 140, apex at 40 % of
the clip. Writes ``benchmarks/results/kernel_<host>_py<ver>_numba<ver>.json`` and prints a
markdown table.

On a shared machine other processes steal time slices from the kernel's threads (a
2-thread parallel region then waits for the preempted thread), so each configuration is
measured in rounds (3, or 1 with ``--quick``); before each round the script waits, up to
``--idle-wait`` seconds, until the CPUs are idle (Linux only), records the busy fraction it
saw, and every number is the best over all rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from _common import (  # benchmarks/ is on sys.path when a script here runs
    ROOT,
    machine_base,
    results_path,
    wait_for_idle,
    write_results,
)

SIZES = ((224, 224), (480, 640))  # (H, W)
FRAME_COUNTS = (40, 80, 140)
CHANNELS = 3
APEX_FRACTION = 0.4
TARGET_VS_NUMPY = 20.0
TARGET_VS_COPY = 0.30


def _time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _read_kernel():
    import numba

    @numba.njit(cache=False)
    def chunk_sum(src):
        s = np.int32(0)
        for j in range(src.size):
            s += np.int32(src[j])
        return s

    @numba.njit(parallel=True, cache=False)
    def read_all(a, chunk):
        n_chunks = (a.size + chunk - 1) // chunk
        out = np.zeros(n_chunks, dtype=np.int32)
        for c in numba.prange(n_chunks):
            out[c] = chunk_sum(a[c * chunk : min(c * chunk + chunk, a.size)])
        return out

    return read_all


def read_bandwidth(n_bytes: int, repeats: int) -> dict:
    """Best read-only bandwidth: a Numba parallel sum over a buffer of ``n_bytes``."""
    read_all = _read_kernel()
    src = np.ones(n_bytes, dtype=np.uint8)
    times = _time(lambda: read_all(src, 1 << 20), repeats)
    best = min(times)
    return {"bytes": n_bytes, "repeats": repeats, "best_s": best, "gbps": n_bytes / best / 1e9}


def copy_bandwidth(n_bytes: int, repeats: int) -> dict:
    """Best ``np.copyto`` bandwidth over a buffer of ``n_bytes`` (GB/s as bytes read)."""
    src = np.ones(n_bytes, dtype=np.uint8)
    dst = np.zeros(n_bytes, dtype=np.uint8)  # pages touched by the warm-up copy
    times = _time(lambda: np.copyto(dst, src), repeats)
    best = min(times)
    return {
        "bytes": n_bytes,
        "repeats": repeats,
        "best_s": best,
        "median_s": statistics.median(times),
        "gbps": n_bytes / best / 1e9,
    }


def numpy_images(frames: np.ndarray, apex: int, w_full, w_on, w_off):
    """Plain NumPy: float32 conversion, then one weighted sum per image."""
    x = frames.astype(np.float32)
    full = np.tensordot(w_full, x, axes=1)
    onset = np.tensordot(w_on, x[: apex + 1], axes=1)
    offset = np.tensordot(w_off, x[apex:], axes=1)
    return full, onset, offset


def python_loop_images(frames: np.ndarray, apex: int, w_full, w_on, w_off):
    """Per-frame Python loop as in the public ports (float64, one image at a time)."""
    shape = frames.shape[1:]
    full = np.zeros(shape, dtype=np.float64)
    onset = np.zeros(shape, dtype=np.float64)
    offset = np.zeros(shape, dtype=np.float64)
    for t, frame in enumerate(frames):
        full += w_full[t] * frame.astype(np.float64)
        if t <= apex:
            onset += w_on[t] * frame.astype(np.float64)
        if t >= apex:
            offset += w_off[t - apex] * frame.astype(np.float64)
    return full, onset, offset


def machine_info() -> dict:
    import numba

    return {**machine_base(), "numba_threads": numba.get_num_threads(),
            "numba": numba.__version__}


def _time_cold(fn: Callable[[], object], repeats: int, flush: np.ndarray) -> list[float]:
    """Like :func:`_time`, but writes ``flush`` (larger than the caches) before each call."""
    fn()
    times = []
    for _ in range(repeats):
        flush += 1
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench_one(
    rng: np.random.Generator,
    height: int,
    width: int,
    n_frames: int,
    copy_gbps: float,
    repeats: dict,
    flush: np.ndarray,
    idle_wait_s: float,
) -> dict:
    from mer_di.pipeline.dynamic_image import clip_dynamic_images, rank_pool_weights

    frames = rng.integers(0, 256, size=(n_frames, height, width, CHANNELS), dtype=np.uint8)
    apex = int(APEX_FRACTION * n_frames)
    n_bytes = frames.nbytes
    out = np.empty((3, height, width, CHANNELS), dtype=np.float32)

    def kernel():
        return clip_dynamic_images(frames, apex, "linear", out=out)

    w_full = rank_pool_weights(n_frames).astype(np.float32)
    w_on = rank_pool_weights(apex + 1).astype(np.float32)
    w_off = rank_pool_weights(n_frames - apex)[::-1].astype(np.float32)

    def plain_numpy():
        return numpy_images(frames, apex, w_full, w_on, w_off)

    def python_loop():
        return python_loop_images(frames, apex, w_full, w_on, w_off)

    # several rounds, each after waiting for idle CPUs; best over all rounds
    k_times, c_times, n_times, l_times, busy = [], [], [], [], []
    for _ in range(repeats["rounds"]):
        busy.append(wait_for_idle(idle_wait_s))
        k_times += _time(kernel, repeats["kernel"])
        c_times += _time_cold(kernel, repeats["kernel"], flush)
        n_times += _time(plain_numpy, repeats["numpy"])
        l_times += _time(python_loop, repeats["loop"], warmup=0)
    k_best, c_best, n_best, l_best = min(k_times), min(c_times), min(n_times), min(l_times)

    # sanity: the kernel agrees with the NumPy result
    got = clip_dynamic_images(frames, apex, "linear", out=out)
    want = numpy_images(frames, apex, w_full, w_on, w_off)
    max_rel = max(
        float(np.abs(g - w).max() / max(np.abs(w).max(), 1.0))
        for g, w in zip((got.full, got.onset, got.offset), want, strict=True)
    )

    kernel_gbps = n_bytes / k_best / 1e9
    cold_gbps = n_bytes / c_best / 1e9
    return {
        "height": height,
        "width": width,
        "channels": CHANNELS,
        "frames": n_frames,
        "apex_index": apex,
        "input_bytes": n_bytes,
        "kernel_best_s": k_best,
        "kernel_median_s": statistics.median(k_times),
        "rounds": repeats["rounds"],
        "kernel_repeats": len(k_times),
        "kernel_gbps": kernel_gbps,
        "kernel_cold_best_s": c_best,
        "kernel_cold_gbps": cold_gbps,
        "cpu_busy_before_rounds": busy,
        "numpy_best_s": n_best,
        "numpy_repeats": len(n_times),
        "numpy_gbps": n_bytes / n_best / 1e9,
        "loop_best_s": l_best,
        "loop_repeats": len(l_times),
        "loop_gbps": n_bytes / l_best / 1e9,
        "copy_gbps": copy_gbps,
        "kernel_vs_numpy": n_best / k_best,
        "kernel_vs_loop": l_best / k_best,
        "kernel_fraction_of_copy": kernel_gbps / copy_gbps,
        "kernel_cold_fraction_of_copy": cold_gbps / copy_gbps,
        "kernel_cold_vs_numpy": n_best / c_best,
        "max_rel_diff_vs_numpy": max_rel,
    }


def markdown_table(records: list[dict], copy: dict, read: dict) -> str:
    lines = [
        "| size | T | input MB | kernel ms | kernel GB/s warm / cold | % of copy warm / cold "
        "| NumPy ms | kernel / NumPy | loop ms | kernel / loop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['width']}x{r['height']}x{r['channels']} | {r['frames']} "
            f"| {r['input_bytes'] / 1e6:.1f} | {r['kernel_best_s'] * 1e3:.2f} "
            f"| {r['kernel_gbps']:.1f} / {r['kernel_cold_gbps']:.1f} "
            f"| {100 * r['kernel_fraction_of_copy']:.0f} / "
            f"{100 * r['kernel_cold_fraction_of_copy']:.0f} % "
            f"| {r['numpy_best_s'] * 1e3:.1f} | {r['kernel_vs_numpy']:.0f}x "
            f"| {r['loop_best_s'] * 1e3:.0f} | {r['kernel_vs_loop']:.0f}x |"
        )
    lines.append("")
    lines.append(
        f"Copy bandwidth (np.copyto of {copy['bytes'] / 2**20:.0f} MiB, bytes read): "
        f"{copy['gbps']:.1f} GB/s; read-only bandwidth (Numba parallel sum): "
        f"{read['gbps']:.1f} GB/s. Kernel ms is the warm best; ratios use warm bests."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats and smaller bandwidth buffers"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=120.0,
        help="seconds to wait, before each measurement, for other processes to go quiet",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import numba

    import mer_di.pipeline.dynamic_image  # noqa: F401  (import, and compile or load the kernels)

    if args.quick:
        bw_bytes, bw_repeats = 128 * 2**20, 5
        repeats = {"rounds": 1, "kernel": 5, "numpy": 1, "loop": 1}
    else:
        bw_bytes, bw_repeats = 512 * 2**20, 10
        repeats = {"rounds": 3, "kernel": 10, "numpy": 1, "loop": 1}

    info = machine_info()
    print(
        f"# {info['hostname']}: {info['cpu_model']}, {info['cpu_count']} CPUs, "
        f"numba threads {info['numba_threads']}, Python {info['python']}, "
        f"NumPy {info['numpy']}, Numba {info['numba']}",
        flush=True,
    )
    wait_for_idle(args.idle_wait)
    copy = copy_bandwidth(bw_bytes, bw_repeats)
    read = read_bandwidth(bw_bytes, bw_repeats)
    print(
        f"# copy bandwidth {copy['gbps']:.1f} GB/s (bytes read), "
        f"read-only bandwidth {read['gbps']:.1f} GB/s",
        flush=True,
    )

    flush = np.zeros(4 * 2**20 * max(16, (os.cpu_count() or 1)), dtype=np.uint8)  # > LLC
    rng = np.random.default_rng(0)
    records = []
    for height, width in SIZES:
        for n_frames in FRAME_COUNTS:
            record = bench_one(
                rng, height, width, n_frames, copy["gbps"], repeats, flush, args.idle_wait
            )
            records.append(record)
            print(
                f"# {width}x{height}x{CHANNELS} T={n_frames}: kernel "
                f"{record['kernel_gbps']:.1f} GB/s warm, {record['kernel_cold_gbps']:.1f} cold, "
                f"{record['kernel_vs_numpy']:.0f}x NumPy, {record['kernel_vs_loop']:.0f}x loop",
                flush=True,
            )

    # bandwidths again at the end: the machine may be shared, keep the better ones (which
    # makes the kernel's fraction of copy bandwidth the more conservative)
    wait_for_idle(args.idle_wait)
    copy_end = copy_bandwidth(bw_bytes, bw_repeats)
    read_end = read_bandwidth(bw_bytes, bw_repeats)
    read = max(read, read_end, key=lambda r: r["gbps"])
    if copy_end["gbps"] > copy["gbps"]:
        copy = copy_end
        for r in records:
            r["copy_gbps"] = copy["gbps"]
            r["kernel_fraction_of_copy"] = r["kernel_gbps"] / copy["gbps"]
            r["kernel_cold_fraction_of_copy"] = r["kernel_cold_gbps"] / copy["gbps"]

    info["numba_threading_layer"] = numba.threading_layer()
    min_vs_numpy = min(r["kernel_vs_numpy"] for r in records)
    min_vs_copy = min(r["kernel_fraction_of_copy"] for r in records)
    min_cold_vs_copy = min(r["kernel_cold_fraction_of_copy"] for r in records)
    summary = {
        "min_kernel_vs_numpy": min_vs_numpy,
        "min_kernel_cold_vs_numpy": min(r["kernel_cold_vs_numpy"] for r in records),
        "target_kernel_vs_numpy": TARGET_VS_NUMPY,
        "min_kernel_fraction_of_copy": min_vs_copy,
        "min_kernel_cold_fraction_of_copy": min_cold_vs_copy,
        "target_kernel_fraction_of_copy": TARGET_VS_COPY,
        "targets_met": bool(min_vs_numpy >= TARGET_VS_NUMPY and min_vs_copy >= TARGET_VS_COPY),
    }
    table = markdown_table(records, copy, read)
    print()
    print(table)
    print()
    print(
        f"min kernel/NumPy {min_vs_numpy:.0f}x (target >= {TARGET_VS_NUMPY:.0f}x), "
        f"min kernel/copy {100 * min_vs_copy:.0f} % warm, {100 * min_cold_vs_copy:.0f} % cold "
        f"(target >= {100 * TARGET_VS_COPY:.0f} %): "
        + ("targets met" if summary["targets_met"] else "TARGET MISSED")
    )

    if not args.no_write:
        payload = {
            "command": "python benchmarks/bench_kernel.py" + (" --quick" if args.quick else ""),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": info,
            "copy": copy,
            "read": read,
            "apex_fraction": APEX_FRACTION,
            "weights": "linear",
            "records": records,
            "summary": summary,
            "table_markdown": table,
        }
        write_results(results_path("kernel", info, f"numba{info['numba']}", args.quick),
                      payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
