"""``mer-train cv --executor ray`` (issue 13.1): a grid on Ray equals the local grid
prediction for prediction, a worker killed mid-unit is retried and the run still equals
the local one, ``--resume`` works across executors, and the clear refusals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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
        mer_di_unit(None, None, str(tmp_path / "not-there"), 1, False, "t")
