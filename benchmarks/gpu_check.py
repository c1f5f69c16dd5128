"""THE prepared GPU check (issue 17): one command, under 5 minutes on one GPU, everything
into one results file named for the device.

Usage::

    python benchmarks/gpu_check.py [--tiny] [--rehearse-on-cpu] [--sections a,b] [--out FILE]

Sections (a section that fails is recorded with its error and the script goes on):

1. ``gpu_tests``: ``pytest -m gpu`` (every gpu-marked test, ``tests/test_gpu.py`` among them).
2. ``cv_determinism``: a look-alike CASME II (``mer-prep synth``, ``build-cache --size
   64``), a tiny ``mer-train cv`` on the GPU (learnet, resnet34 and ViT-B/16 tiny, two
   subject folds, 2 epochs) run twice in each ``--determinism`` mode, each run in its own
   process as a user runs it; the two runs' predictions and epoch losses compared
   (reproducible: identical is the expectation; fast: the fraction of equal predictions).
3. ``predict_devices``: ``mer-train predict`` from the first reproducible run's GPU
   checkpoints with ``--device cpu`` and ``--device cuda``, compared.
4. ``ray_shared_gpu``: the same cv on Ray, two units sharing the GPU (``--unit-gpus 0.5``),
   compared with the local reproducible run; ``nvidia-smi`` polled for how many unit
   processes were on the GPU at once (where the container lets it see them).
5. ``models`` (:mod:`gpu_models`): each of the six full-size Table I models at batch 25,
   random init: loop and floor img/s (``bench_train.bench_case``), their ratio, peak
   memory, the best-epoch snapshot cost (``bench_snapshot.snapshot_cost``), the GPU's
   kernel-busy fraction and the per-unit start-up (build + move to the GPU), under
   ``--mode`` (default reproducible, the default of ``mer-train cv`` and ``table1``).

Without a GPU it runs its CPU half: section 5's snapshot cost on the CPU, and sections 1-4
and the GPU figures of 5 marked "not measured: no GPU". ``--rehearse-on-cpu`` runs sections
2-5 on the CPU all the same (the script's own check before device time is spent; CPU
numbers, labelled so); ``--tiny`` makes every section minimal (learnet only, one short
case: the test of this script). Writes ``benchmarks/results/gpu_check_<device>.json``
(``<device>``: the GPU's name as a slug, e.g. ``nvidia-h200``, or ``cpu``) and a short
``.md`` beside it, and prints the .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from tempfile import TemporaryDirectory

import pandas as pd
from _common import RESULTS, load_average, machine_base

SECTIONS = ("gpu_tests", "cv_determinism", "predict_devices", "ray_shared_gpu", "models")
NO_GPU = "not measured: no GPU"
MODES = ("reproducible", "fast")
PREP = [sys.executable, "-m", "mer_di.pipeline.cli"]
TRAIN = [sys.executable, "-m", "mer_di.training.cli"]
ROOT = Path(__file__).resolve().parents[1]


def run_cmd(args: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run ``args``; ``{rc, seconds, tail}`` (the last 3000 characters of its output)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, **(env or {})})
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}{exc.stderr or ''}"
    return {"rc": rc, "seconds": time.perf_counter() - t0, "tail": str(out)[-3000:]}


def must(result: dict, what: str) -> dict:
    if result["rc"] != 0:
        raise RuntimeError(f"{what} failed (rc {result['rc']}): {result['tail'][-1500:]}")
    return result


class Check:
    """The check's settings and scratch folder: ``device`` ('cuda' or 'cpu'), ``gpu``
    (whether the GPU sections measure), ``tiny``, ``rehearse`` (on the CPU all the same)."""

    def __init__(self, device: str, gpu: bool, tiny: bool, work: Path, rehearse: bool = False):
        self.device, self.gpu, self.tiny, self.work = device, gpu, tiny, work
        self.rehearse = rehearse
        self.mode = "reproducible"  # of section 5 (the default of mer-train cv and table1)
        # torch threads of every cv unit, local or on Ray: the CPU's sums depend on them, so
        # runs compared for equality use the same
        self.threads = "2" if gpu else "1"
        self.models = ["learnet"] if tiny else ["learnet", "resnet34", "vit_base_patch16_224"]
        self._cache: Path | None = None

    def cache(self) -> Path:
        """The look-alike CASME II's cache (made once)."""
        if self._cache is None:
            root, cache = self.work / "casme2", self.work / "casme2.h5"
            subjects, clips, frame, size = (("4", "1", "48x48", "32") if self.tiny
                                            else ("4", "2", "96x96", "64"))
            must(run_cmd(PREP + ["synth", "--dataset", "casme2", "--out", str(root),
                                 "--subjects", subjects, "--clips-per-class", clips,
                                 "--frame-size", frame, "--length", "6:9"], 300), "synth")
            must(run_cmd(PREP + ["build-cache", "--dataset", "casme2", "--root", str(root),
                                 "--out", str(cache), "--size", size, "--workers", "2"], 300),
                 "build-cache")
            self._cache = cache
        return self._cache

    def cv_args(self, out: Path, mode: str, *extra: str) -> list[str]:
        models = [a for m in self.models for a in ("--model", m)]
        return TRAIN + ["cv", "--cache", str(self.cache()), *models, "--tiny", "--config",
                        "baseline", "--protocol", "subject-kfold", "--folds", "2", "--epochs",
                        "1" if self.tiny else "2", "--batch-size", "8", "--device",
                        self.device, "--determinism", mode, "--unit-cpus", self.threads,
                        "--quiet", "--out", str(out), *extra]

    def run_dir(self, name: str) -> Path:
        return self.work / "runs" / name


def compare_runs(a: Path, b: Path) -> dict:
    """Two runs' predictions and epoch losses: ``identical`` (predictions and losses equal
    to the bit), ``pred_equal_fraction``, ``loss_max_abs_diff``."""
    keys = ["model", "config", "seed", "fold"]
    pa, pb = (pd.read_csv(r / "predictions.csv", dtype={"subject": str, "clip": str})
              .sort_values(keys + ["subject", "clip"], ignore_index=True) for r in (a, b))
    ea, eb = (pd.read_csv(r / "epochs.csv").sort_values(keys + ["epoch"], ignore_index=True)
              for r in (a, b))
    losses = [c for c in ("train_loss", "val_loss") if c in ea]
    diff = float((ea[losses] - eb[losses]).abs().max().max()) if len(ea) == len(eb) else None
    same_rows = pa[keys + ["subject", "clip"]].equals(pb[keys + ["subject", "clip"]])
    equal = float((pa["pred"] == pb["pred"]).mean()) if same_rows else None
    return {"predictions": len(pa), "pred_equal_fraction": equal, "loss_max_abs_diff": diff,
            "identical": bool(same_rows and equal == 1.0 and diff == 0.0)}


def unit_places(run: Path) -> dict[str, int]:
    """``'host device': units`` from the units' scores.json (where run_unit records them)."""
    places: dict[str, int] = {}
    for scores in sorted((run / "units").glob("*/scores.json")):
        s = json.loads(scores.read_text())
        key = f"{s.get('host', '?')} {s.get('device', '?')}"
        places[key] = places.get(key, 0) + 1
    return places


def gpu_tests(check: Check) -> dict:
    if not check.gpu:
        return {"status": NO_GPU}
    result = run_cmd([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p",
                      "no:cacheprovider", "tests"], 240)
    last = [line for line in result["tail"].splitlines() if line.strip()][-1:]
    return {"status": "ok" if result["rc"] == 0 else "failed", "summary": "".join(last),
            **result}


def cv_determinism(check: Check) -> dict:
    out = {"status": "ok", "device": check.device, "models": check.models, "modes": {}}
    for mode in MODES:
        runs = []
        for i in (1, 2):
            run = check.run_dir(f"{mode}-{i}")
            extra = () if (mode, i) == ("reproducible", 1) else ("--no-checkpoints",)
            runs.append(must(run_cmd(check.cv_args(run, mode, *extra), 600),
                             f"cv {mode} {i}")["seconds"])
        cmp = compare_runs(check.run_dir(f"{mode}-1"), check.run_dir(f"{mode}-2"))
        out["modes"][mode] = {"seconds": runs, **cmp,
                              "places": unit_places(check.run_dir(f"{mode}-1"))}
    if not out["modes"]["reproducible"]["identical"]:
        out["status"] = "failed: two reproducible runs differ"
    return out


def predict_devices(check: Check) -> dict:
    run = check.run_dir("reproducible-1")
    if not (run / "config.json").is_file():
        raise RuntimeError("no reproducible run with checkpoints (cv_determinism failed?)")
    devices = ["cpu", "cuda"] if check.gpu else ["cpu"]
    out: dict = {"status": "ok", "run_device": check.device, "models": {}}
    for model in check.models:
        tables = {}
        for dev in devices:
            csv = check.work / f"predict_{model}_{dev}.csv"
            must(run_cmd(TRAIN + ["predict", "--run", str(run), "--cache", str(check.cache()),
                                  "--model", model, "--device", dev, "--out", str(csv)], 300),
                 f"predict {model} --device {dev}")
            tables[dev] = pd.read_csv(csv, dtype={"subject": str, "clip": str}).sort_values(
                ["subject", "clip"], ignore_index=True)
        if len(tables) < 2:
            out["models"][model] = {"clips": len(tables["cpu"]), "cuda": NO_GPU}
            continue
        cpu, gpu = tables["cpu"], tables["cuda"]
        probs = [c for c in cpu if c.startswith("prob_")]
        out["models"][model] = {
            "clips": len(cpu), "pred_equal_fraction": float((cpu["pred"] == gpu["pred"]).mean()),
            "prob_max_abs_diff": float((cpu[probs] - gpu[probs]).abs().max().max())}
    return out


def _poll_gpu_processes(stop: threading.Event, seen: list[int]) -> None:
    """Every 0.5 s, how many compute processes nvidia-smi lists on the GPU (-1: unknown)."""
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=10).stdout
            seen.append(len([line for line in out.splitlines() if line.strip()]))
        except (OSError, subprocess.SubprocessError):
            seen.append(-1)
        stop.wait(0.5)


def ray_shared_gpu(check: Check) -> dict:
    run = check.run_dir("ray")
    share = ["--unit-gpus", "0.5" if check.gpu else "0"]
    seen: list[int] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll_gpu_processes, args=(stop, seen), daemon=True)
    if check.gpu:
        poller.start()
    try:
        result = must(run_cmd(check.cv_args(run, "reproducible", "--executor", "ray",
                                            "--no-checkpoints", *share), 600), "cv on Ray")
    finally:
        stop.set()
    out = {"status": "ok", "options": share, "seconds": result["seconds"],
           "places": unit_places(run),
           "gpu_processes_at_once": (max(seen) if seen and min(seen) >= 0 else
                                     "unknown (nvidia-smi lists no processes here)")
           if check.gpu else NO_GPU}
    local = check.run_dir("reproducible-1")
    if (local / "predictions.csv").is_file():
        out["vs_local"] = compare_runs(local, run)
        if not out["vs_local"]["identical"]:
            out["status"] = "failed: Ray differs from the local reproducible run"
    return out


def models(check: Check) -> dict:
    """Section 5, in this process, under ``check.mode``: set here, before this process's
    first CUDA kernel (the earlier sections ran in their own processes, and inherit no
    cuBLAS setting from this one: section 5 runs last)."""
    import gpu_models
    import torch

    from mer_di.training.determinism import apply_determinism

    mode = apply_determinism(check.mode, torch.device(check.device))
    return {**gpu_models.measure_models(check.device, check.gpu, check.tiny, check.rehearse),
            "determinism": mode}


def markdown(report: dict) -> str:
    """The short .md beside the results file."""
    lines = [f"# GPU check: {report['device_name']}", "",
             f"`{report['command']}` ({report['timestamp']}, {report['seconds']:.0f} s)", ""]
    if not report["gpu"]:
        lines += ["**No GPU: the GPU numbers are not measured.** What ran, ran on the CPU.", ""]
    for name, sec in report["sections"].items():
        lines.append(f"- **{name}**: {sec.get('status')} ({sec.get('seconds', 0):.0f} s)")
    cv = report["sections"].get("cv_determinism", {}).get("modes", {})
    for mode, m in cv.items():
        lines.append(f"  - {mode}: identical {m['identical']}, predictions equal "
                     f"{m['pred_equal_fraction']}, max loss diff {m['loss_max_abs_diff']}")
    table = report["sections"].get("models", {}).get("table_markdown")
    if table:
        lines += ["", table]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="minimal sections (this script's test)")
    ap.add_argument("--rehearse-on-cpu", action="store_true",
                    help="without a GPU, run sections 2-5 on the CPU all the same")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated, of: " + ", ".join(SECTIONS))
    ap.add_argument("--mode", choices=MODES, default="reproducible",
                    help="the determinism mode of section 5 (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help="the JSON (default: results/"
                    "gpu_check_<device>.json)")
    args = ap.parse_args(argv)
    import torch
    from bench_snapshot import device_slug

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    rehearse = args.rehearse_on_cpu and not gpu
    report: dict = {
        "command": " ".join(["python benchmarks/gpu_check.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "gpu": gpu,
        "device_name": torch.cuda.get_device_name(device) if gpu else "cpu (no GPU)",
        "machine": {**machine_base(), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "load_average": load_average()},
        "note": "" if gpu else NO_GPU + ("; sections 2-5 rehearsed on the CPU (CPU numbers)"
                                         if rehearse else ""),
        "sections": {}}
    t0 = time.perf_counter()
    wanted = [s.strip() for s in args.sections.split(",")]
    with TemporaryDirectory(prefix="gpu_check_") as tmp:
        check = Check(device.type, gpu, args.tiny, Path(tmp), rehearse)
        check.mode = args.mode
        for name in SECTIONS:
            if name not in wanted:
                continue
            start = time.perf_counter()
            if not gpu and not rehearse and name != "models":
                result = {"status": NO_GPU}
            else:
                try:
                    result = globals()[name](check)
                except Exception as exc:  # recorded; the next section runs
                    result = {"status": f"failed: {type(exc).__name__}: {exc}"[:2000],
                              "traceback": traceback.format_exc()[-3000:]}
            result["seconds"] = time.perf_counter() - start
            report["sections"][name] = result
            print(f"# {name}: {result['status']} ({result['seconds']:.0f} s)", flush=True)
    report["seconds"] = time.perf_counter() - t0
    path = args.out or RESULTS / f"gpu_check_{device_slug(device)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    path.with_suffix(".md").write_text(md)
    print(md + f"wrote {path} and {path.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
