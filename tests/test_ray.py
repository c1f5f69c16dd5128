"""``mer-train cv --executor ray`` (issue 13.1): a grid on Ray equals the local grid
prediction for prediction, a worker killed mid-unit is retried and the run still equals
the local one, ``--resume`` works across executors, and the clear refusals. Issue 17.5 (on
the CPU, torch.cuda and Ray faked): workers reused on purpose, a fractional-GPU worker
bounded by its fraction, its cache freed after each unit, the run's determinism mode set
in the worker, and where each unit ran reported to the driver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner

from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import RunError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train

pytest.importorskip("ray")

GRID = ["--model", "learnet", "--tiny", "--config", "baseline", "--config", "dualdi",
        "--folds", "2", "--epochs", "4", "--batch-size", "8", "--no-checkpoints",
        "--unit-cpus", "1", "--quiet"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ray")
    root = generate_dataset("casme2", base / "casme2", subjects=4, clips_per_class=2,
                            frame_size=(48, 48), length=(6, 9), seed=13).root
    return build_cache("casme2", root, base / "c.h5", options=BuildOptions(size=32)).cache


@pytest.fixture(scope="module")
def local_run(cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    result = CliRunner().invoke(mer_train, ["cv", "--cache", str(cache), *GRID,
                                            "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _tables(run: Path) -> dict[str, pd.DataFrame]:
    keys = ["model", "config", "seed", "fold"]
    preds = pd.read_csv(run / "predictions.csv", dtype={"subject": str, "clip": str})
    epochs = pd.read_csv(run / "epochs.csv").drop(columns=["seconds"])  # wall time differs
    return {"predictions": preds.sort_values(keys + ["subject", "clip"], ignore_index=True),
            "epochs": epochs.sort_values(keys + ["epoch"], ignore_index=True)}


def _same(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True, obj=name)
    assert ta["predictions"]["pred"].nunique() > 1  # a grid that learned something


def _ray_cli(cache: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mer_di.training.cli", "cv", "--cache",
                             str(cache), *GRID, "--executor", "ray", "--out", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_a_grid_on_ray_equals_the_local_grid(cache, local_run, tmp_path):
    out = tmp_path / "ray"
    proc = _ray_cli(cache, out)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    _same(local_run, out)
    assert not list((out / "units").glob(".tmp-*"))


def _unit_workers() -> list[int]:
    """PIDs of Ray workers running a unit now (their process title names the task)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::mer_di_unit"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_a_worker_killed_mid_unit_is_retried(cache, local_run, tmp_path):
    out = tmp_path / "ray"
    proc = _ray_cli(cache, out)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        workers = _unit_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.02)
    output, _ = proc.communicate(timeout=600)
    assert killed is not None, "no unit worker was seen to kill: " + output
    assert proc.returncode == 0, output
    _same(local_run, out)


def test_resume_across_executors(cache, local_run, tmp_path):
    # a local run with two units unfinished, finished on Ray
    half = tmp_path / "half"
    shutil.copytree(local_run, half)
    units = sorted(p for p in (half / "units").iterdir())
    for unit in units[:2]:
        shutil.rmtree(unit)
    proc = _ray_cli(cache, half, "--resume")
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "resuming: 2 of 4 folds already done" in output
    _same(local_run, half)
    # and a run with units missing finished locally
    for unit in units[2:]:
        shutil.rmtree(half / "units" / unit.name)
    result = CliRunner().invoke(mer_train, ["cv", "--cache", str(cache), *GRID, "--resume",
                                            "--out", str(half)])
    assert result.exit_code == 0, result.output
    _same(local_run, half)


def test_options_of_ray_alone_are_refused_under_local(cache, tmp_path):
    for extra in (["--ray-address", "auto"], ["--unit-gpus", "0.5"]):
        result = CliRunner().invoke(mer_train, ["cv", "--cache", str(cache), *GRID, *extra,
                                                "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and "applies to --executor ray only" in result.output
    assert not (tmp_path / "r").exists()


def test_without_ray_the_install_command(cache, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = CliRunner().invoke(mer_train, ["cv", "--cache", str(cache), *GRID, "--executor",
                                            "ray", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert 'pip install "mer-di[ray]"' in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_a_worker_that_cannot_write_the_run_folder_says_so(tmp_path):
    from mer_di.training.ray_executor import mer_di_unit

    with pytest.raises(RunError, match="must be on a filesystem every node sees"):
        mer_di_unit(None, None, str(tmp_path / "not-there"), 1, 0, "t")


# -- issue 17.5: worker reuse, GPU memory, determinism and where a unit ran (on the CPU) --

def _fake_worker(monkeypatch, cuda: bool, fail: bool = False) -> dict[str, list]:
    """mer_di_unit's collaborators replaced: a fake plan and unit trainer, and torch.cuda
    as a GPU machine's (``cuda``); returns the calls made."""
    import torch

    from mer_di.training import ray_executor, samples, trainer

    calls: dict[str, list] = {"fraction": [], "empty_cache": [], "determinism": [],
                              "bank": []}

    def run_unit(plan, unit, bank):
        if fail:
            raise RuntimeError("CUDA out of memory")
        return SimpleNamespace(scores={"uf1": 0.5})

    monkeypatch.setattr(trainer, "run_unit", run_unit)
    monkeypatch.setattr(trainer, "write_unit", lambda folder, result: None)
    monkeypatch.setattr(samples, "ImageBank", lambda clips, size, mean, std, device, *names:
                        calls["bank"].append(device))
    monkeypatch.setattr(samples, "needed_images", lambda plan: ("full",))
    monkeypatch.setattr(ray_executor, "_BANK", {})
    monkeypatch.setattr(ray_executor, "apply_determinism",
                        lambda mode, device: calls["determinism"].append((mode, device)))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device=None: calls["fraction"].append(
                            (fraction, device)))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls["empty_cache"].append(1))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    return calls


def _fake_plan(determinism: str = "fast") -> SimpleNamespace:
    cfg = SimpleNamespace(input_size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    return SimpleNamespace(spec=SimpleNamespace(determinism=determinism), cfgs={"m": cfg},
                           clips=None)


def test_a_fractional_gpu_worker_is_bounded_by_its_fraction_and_frees_its_cache(
        monkeypatch, tmp_path):
    import socket

    import torch

    from mer_di.training.ray_executor import mer_di_unit

    calls = _fake_worker(monkeypatch, cuda=True)
    unit = SimpleNamespace(model="m", name="m__baseline__seed0__fold00")
    result = mer_di_unit(_fake_plan("fast"), unit, str(tmp_path), 1, 0.5, "t")
    cuda0 = torch.device("cuda", 0)
    assert calls["fraction"] == [(0.5, cuda0)]  # the unit's share of the GPU's memory
    assert calls["determinism"] == [("fast", cuda0)]  # the run's mode, in the worker
    assert calls["bank"] == [cuda0] and calls["empty_cache"] == [1]
    assert result["where"] == {"host": socket.gethostname(), "device": "cuda:0",
                               "gpu_name": "Fake GPU", "gpu_ids": "3"}
    assert result["scores"] == {"uf1": 0.5} and result["started"] <= result["ended"]
    # a whole GPU is not bounded; the cache is freed after every unit, a failed one too
    mer_di_unit(_fake_plan(), unit, str(tmp_path), 1, 1.0, "t")
    assert calls["fraction"] == [(0.5, cuda0)] and calls["empty_cache"] == [1, 1]
    calls = _fake_worker(monkeypatch, cuda=True, fail=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        mer_di_unit(_fake_plan(), unit, str(tmp_path), 1, 0.5, "t")
    assert calls["empty_cache"] == [1]


def test_a_cpu_worker_reports_the_cpu_and_leaves_cuda_alone(monkeypatch, tmp_path):
    import socket

    import torch

    from mer_di.training.ray_executor import mer_di_unit

    calls = _fake_worker(monkeypatch, cuda=True)  # a GPU on the node, but none given
    unit = SimpleNamespace(model="m", name="u")
    plan = _fake_plan()
    del plan.spec.determinism  # a spec from before the determinism field: reproducible
    result = mer_di_unit(plan, unit, str(tmp_path), 1, 0, "t")
    assert result["where"] == {"host": socket.gethostname(), "device": "cpu"}
    assert calls["determinism"] == [("reproducible", torch.device("cpu"))]
    assert calls["fraction"] == calls["empty_cache"] == []


class _Ref:
    def __init__(self, value: dict):
        self.value = value


class _FakeRay:
    """Just enough of ``ray`` for RayExecutor's driver: tasks 'run' when submitted, as
    the worker would report them."""

    class exceptions:
        RayError = type("RayError", (Exception,), {})
        RayTaskError = type("RayTaskError", (RayError,), {})

    def __init__(self, gpus: float):
        self.resources = {"CPU": 4.0, "GPU": gpus}
        self.decorated: dict = {}
        self.options: dict = {}
        self.calls: list[tuple] = []

    def cluster_resources(self):
        return self.resources

    def remote(self, **decoration):
        self.decorated = decoration

        def wrap(fn):
            outer = self

            class Task:
                def options(self, **options):
                    outer.options = options
                    return self

                def remote(self, plan, unit, units_dir, threads, gpus, token):
                    outer.calls.append((unit.name, gpus))
                    t = float(len(outer.calls))
                    return _Ref({
                        "scores": {}, "seconds": {"images": 0.0, "unit": 1.0},
                        "where": {"host": "node1", "device": "cuda:0", "gpu_name": "H200",
                                  "gpu_ids": "0"},
                        "started": t // 2, "ended": t // 2 + 0.9})  # two at a time

            return Task()

        return wrap

    def put(self, value):
        return value

    def wait(self, refs, num_returns, timeout):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.value

    def cancel(self, ref, force):
        pass


def test_the_driver_reuses_workers_on_purpose_and_says_where_units_ran(tmp_path):
    from mer_di.training.ray_executor import WORKER_MAX_CALLS, RayExecutor
    from mer_di.training.units import Unit

    ray = _FakeRay(gpus=1.0)
    units = [Unit("learnet", "baseline", 0, f) for f in range(4)]
    plan = SimpleNamespace(clips=[0] * 10, folds={0: {f: [f] for f in range(4)}},
                           spec=SimpleNamespace(determinism="reproducible"))
    executor = RayExecutor(unit_gpus=0.5, progress=False)
    executor._run(ray, plan, units, tmp_path)
    assert WORKER_MAX_CALLS == 0 and ray.decorated == {"max_calls": WORKER_MAX_CALLS}
    assert ray.options["num_gpus"] == 0.5 and ray.options["max_retries"] >= 1
    # reproducible on GPUs: the workers start with cuBLAS's deterministic workspace
    assert ray.options["runtime_env"]["env_vars"]["CUBLAS_WORKSPACE_CONFIG"]
    assert {gpus for _, gpus in ray.calls} == {0.5}  # each task knows its share
    assert sorted(executor.where) == sorted(u.name for u in units)
    assert executor.placement() == "node1 cuda:0 (H200, GPU 0): 4 units"
    assert executor.most_at_once() == 2
    # fast mode, or the CPU: no environment of their own
    plan.spec.determinism = "fast"
    assert "runtime_env" not in RayExecutor(unit_gpus=0.5).task_options(plan)
    assert "runtime_env" not in RayExecutor(unit_gpus=0.0).task_options(_fake_plan(
        "reproducible"))
