"""Issue 18: run folders on a shared workstation. Two ``cv`` into one ``--out`` (one writer
at a time; ``report`` on a run being written says it is incomplete); every file of a
finished run damaged in turn (empty, cut short, random bytes: ``report`` refuses naming
the file and the repair, ``--resume`` redoes it); a checkpoint of another unit or class
set under ``predict``; Ctrl-C and SIGTERM (``interrupted``, exit 130, nothing half-written
under a final name); a run folder moved before ``--resume``; caches rebuilt since."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from mer_di.training.cli import main as mer_train
from mer_di.training.results import PRED_COLUMNS
from mer_di.training.units import Unit

REPO = Path(__file__).resolve().parents[1]
PARTIAL = ".partial-"  # a temporary file beside its final name: .NAME.partial-PID
CV = ["--quiet", "--tiny", "--model", "learnet", "--config", "baseline", "--protocol", "kfold",
      "--folds", "2", "--epochs", "1", "--batch-size", "8",
      "--unit-cpus", "1"]
UNIT = "learnet__baseline__seed0__fold{:02d}"


def invoke(*args: str):
    result = CliRunner().invoke(mer_train, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders (ours, and the names used before issue 18), a lock."""
    return [p for p in folder.rglob("*") if PARTIAL in p.name or p.name.startswith(".tmp-")
            or p.suffix in (".tmp", ".partial") or p.name == ".lock"]


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_cache) -> Path:
    """A finished tiny run with checkpoints."""
    run = tmp_path_factory.mktemp("folders") / "run"
    result = invoke("cv", *CV, "--cache", str(tiny_cache), "--out", str(run))
    assert result.exit_code == 0, result.output
    return run


def _copy(clean: Path, to: Path) -> Path:
    shutil.copytree(clean, to)
    return to


def _same_predictions(run: Path, clean: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(run / "predictions.csv"),
                                  pd.read_csv(clean / "predictions.csv"))


# --- 1. two writers ------------------------------------------------------------------------

def test_a_unit_another_writer_finished_first_is_kept(tmp_path):
    """Before: the second write died in os.rename (Directory not empty) and left its
    .tmp-<unit>-<pid> folder behind."""
    from mer_di.training.trainer import UnitResult, write_unit

    unit = Unit("learnet", "baseline", 0, 0)
    result = UnitResult(unit, pd.DataFrame({"epoch": [1]}),
                        pd.DataFrame(columns=list(PRED_COLUMNS)),
                        {"model": "learnet", "test_clips": 0}, None)
    assert write_unit(tmp_path, result) is True
    first = (tmp_path / unit.name / "scores.json").read_bytes()
    assert write_unit(tmp_path, result) is False
    assert (tmp_path / unit.name / "scores.json").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == [unit.name]


def test_one_writer_at_a_time_and_report_says_incomplete(clean, tiny_cache, tmp_path):
    from mer_di.training.run_folder import run_lock

    run = _copy(clean, tmp_path / "run")
    shutil.rmtree(run / "units" / UNIT.format(1))
    (run / "predictions.csv").unlink()
    with run_lock(run):  # another mer-train cv is writing it
        result = invoke("cv", *CV, "--cache", str(tiny_cache), "--out", str(run), "--resume")
        assert result.exit_code == 1
        assert f"{run} is being written by another mer-train cv (pid {os.getpid()})" in (
            result.output)
        result = invoke("report", str(run), "--out", str(tmp_path / "r"))
        assert result.exit_code == 1
        assert "the run is incomplete, still being written by mer-train cv" in result.output
        assert "1 of 2 units finished so far" in result.output
    assert not (run / ".lock").exists()
    result = invoke("cv", *CV, "--cache", str(tiny_cache), "--out", str(run), "--resume")
    assert result.exit_code == 0, result.output
    _same_predictions(run, clean)


def test_two_cv_started_together_into_one_out(tiny_cache, tmp_path):
    """Both with --resume (so neither refuses the other's config.json), each long enough
    (10 epochs) for the two to overlap: before, both trained the same units and one died
    renaming its unit folder, with a traceback."""
    run = tmp_path / "run"
    args = [*CV[:8], "--folds", "2", "--epochs", "10", "--val-fraction", "0", "--unit-cpus",
            "1"]
    cmd = [sys.executable, "-m", "mer_di.training.cli", "cv", *args, "--cache", str(tiny_cache),
           "--out", str(run), "--resume"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO) for _ in range(2)]
    outs = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for rc, out, err in outs:
        assert "Traceback" not in err, err
        assert rc == 0 or "is being written by another mer-train cv" in err, (rc, out, err)
    assert any(rc == 0 for rc, _, _ in outs)
    assert not leftovers(run)
    result = invoke("cv", "--resume", "--unit-cpus", "1", "--out", str(run))
    assert result.exit_code == 0 and "2 of 2 folds already done" in result.output
    assert invoke("report", str(run), "--no-figures", "--bootstrap", "50").exit_code == 0


# --- 3. damaged run folders ----------------------------------------------------------------

DAMAGE = {"empty": lambda b: b"", "cut short": lambda b: b[: len(b) // 2],
          "random bytes": lambda b: np.random.default_rng(len(b)).bytes(max(len(b), 8))}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_file_of_a_run_damaged_in_turn(clean, tmp_path, damage):
    """``report`` refuses naming the file and the command that repairs it (a checkpoint
    it does not read excepted); ``--resume`` redoes the unit or rewrites the tables and
    ends with the undisturbed predictions; a damaged config.json is named, not guessed."""
    files = sorted((p.relative_to(clean) for p in clean.rglob("*")  # fold 1's are alike
                    if p.is_file() and p.parent.name != UNIT.format(1)),
                   key=lambda rel: (rel.name == "config.json", str(rel)))
    assert len(files) >= 10
    for i, rel in enumerate(files):
        run = _copy(clean, tmp_path / f"run{i}")
        (run / rel).write_bytes(DAMAGE[damage]((run / rel).read_bytes()))
        result = invoke("report", str(run), "--no-figures", "--bootstrap", "50", "--out",
                        str(tmp_path / f"rep{i}"))
        if rel.name == "model.pt":
            assert result.exit_code == 0, (rel, result.output)
        else:
            assert result.exit_code == 1, (rel, result.output)
            assert str(rel.name) in result.output, (rel, result.output)
            if rel.name != "config.json":
                assert f"mer-train cv --resume --out {run}" in result.output, result.output
        result = invoke("cv", "--resume", "--unit-cpus", "1", "--out", str(run))
        if rel.name == "config.json":
            assert result.exit_code == 1 and f"{run / rel} is damaged" in result.output
            continue
        assert result.exit_code == 0, (rel, result.output)
        if rel.parent.name.startswith("learnet"):
            assert f"redoing {rel.parent.name}: its folder is damaged ({rel.name}" in (
                result.output), result.output
        _same_predictions(run, clean)
        assert invoke("report", str(run), "--no-figures", "--bootstrap", "50", "--out",
                      str(tmp_path / f"rep{i}")).exit_code == 0
        shutil.rmtree(run)


def _rerecord(unit_dir: Path) -> None:
    """Make scores.json record model.pt as it is now (a foreign file that checks out)."""
    from mer_di._files import file_sha256
    from mer_di.training.units import FILES

    scores = json.loads((unit_dir / "scores.json").read_text())
    ck = unit_dir / "model.pt"
    scores[FILES]["model.pt"] = {"bytes": ck.stat().st_size, "sha256": file_sha256(ck)}
    (unit_dir / "scores.json").write_text(json.dumps(scores))


def test_predict_refuses_a_checkpoint_that_is_not_its_units(clean, tiny_cache, tmp_path):
    run = _copy(clean, tmp_path / "run")
    fold0, fold1 = (run / "units" / UNIT.format(f) for f in (0, 1))
    args = ["predict", "--run", str(run), "--cache", str(tiny_cache), "--fold", "1", "--out",
            str(tmp_path / "p.csv")]
    shutil.copy(fold0 / "model.pt", fold1 / "model.pt")  # another fold's checkpoint
    result = invoke(*args)
    assert result.exit_code == 1 and f"unit {fold1.name} is damaged (model.pt is not what" in (
        result.output)
    assert f"mer-train cv --resume --out {run}" in result.output
    _rerecord(fold1)  # even when the unit's record was made to agree
    result = invoke(*args)
    assert result.exit_code == 1 and "is another unit's or run's checkpoint (fold 0" in (
        result.output)
    ck = torch.load(fold0 / "model.pt", weights_only=True)
    for change, words in (({"fold": 1, "classes": ck["classes"][::-1]}, "classes ["),
                          ({"fold": 1, "state_dict": {"w": torch.zeros(3)}},
                           "its weights are not those of learnet")):
        torch.save({**ck, **change}, fold1 / "model.pt")
        _rerecord(fold1)
        result = invoke(*args)
        assert result.exit_code == 1 and words in result.output, result.output
    for damage in DAMAGE.values():
        shutil.copy(clean / "units" / fold1.name / "model.pt", fold1 / "model.pt")
        (fold1 / "model.pt").write_bytes(damage((fold1 / "model.pt").read_bytes()))
        (fold1 / "scores.json").write_bytes((clean / "units" / fold1.name / "scores.json")
                                            .read_bytes())
        result = invoke(*args)
        assert result.exit_code == 1 and "model.pt" in result.output, result.output
    assert not (tmp_path / "p.csv").exists()
    result = invoke("cv", "--resume", "--unit-cpus", "1", "--out", str(run))
    assert result.exit_code == 0 and f"redoing {fold1.name}" in result.output
    assert invoke(*args).exit_code == 0


# --- 4. interrupts -------------------------------------------------------------------------

LONGER = [*CV[:8], "--folds", "3", "--epochs", "5", "--batch-size", "8", "--unit-cpus", "1"]


def _start(run: Path, cache: Path, args: list[str] = CV) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mer_di.training.cli", "cv", *args,
                             "--cache", str(cache), "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def _wait_for(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None, f"the command ended before {what}"
        assert time.monotonic() < deadline, f"no {what} in 120 s"
        time.sleep(0.002)


def _interrupted(proc: subprocess.Popen, sig: int) -> str:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), (proc.returncode,
                                                                            err)
    return err


def test_ctrl_c_while_torch_is_being_imported(tiny_cache, tmp_path):
    run = tmp_path / "run"
    proc = _start(run, tiny_cache)

    def importing_torch() -> bool:
        try:
            return "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False

    _wait_for(proc, importing_torch, "torch import")
    _interrupted(proc, signal.SIGINT)
    assert not run.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_keeps_whole_units_and_resumes(tiny_cache, tmp_path, sig):
    """Interrupted once its first unit is written (two more to go)."""
    run = tmp_path / "run"
    proc = _start(run, tiny_cache, LONGER)
    _wait_for(proc, lambda: (run / "units").is_dir() and any(
        not p.name.startswith(".") for p in (run / "units").iterdir()), "finished unit")
    _interrupted(proc, sig)
    assert not leftovers(run), leftovers(run)
    assert not (run / "predictions.csv").exists()
    from mer_di.training.units import unit_damage

    kept = [p for p in (run / "units").iterdir()]
    assert kept and not any(unit_damage(run / "units", Unit.parse(p.name)) for p in kept)
    # the numbers after a resume: test_run_faults
    result = invoke("cv", "--resume", "--unit-cpus", "1", "--out", str(run))
    assert result.exit_code == 0, result.output
    assert f"resuming: {len(kept)} of 3 folds already done" in result.output


def test_ctrl_c_during_a_build_keeps_its_finished_clips(tmp_path, monkeypatch):
    """mer-prep too: the interrupt unwinds the build (no temporary cache is left, the old
    cache untouched) and the clips finished so far stay in <cache>.parts/ for the next."""
    from mer_di.data_manifest.synth import generate_dataset
    from mer_di.pipeline.cli import main as mer_prep
    from mer_di.pipeline.writer import PartStore

    root = generate_dataset("casme2", tmp_path / "casme2", subjects=2, clips_per_class=1,
                            frame_size=(32, 32), length=(6, 8), seed=2).root
    real_save, saved = PartStore.save, []

    def save(self, record):
        if len(saved) == 3:
            raise KeyboardInterrupt
        real_save(self, record)
        saved.append(record.key)

    monkeypatch.setattr(PartStore, "save", save)
    cache = tmp_path / "c.h5"
    result = CliRunner().invoke(mer_prep, ["build-cache", "--dataset", "casme2", "--root",
                                           str(root), "--out", str(cache), "--size", "32",
                                           "--quiet"])
    assert result.exit_code == 130 and result.output.strip().endswith("interrupted")
    assert "Traceback" not in result.output and not cache.exists()
    assert not list(tmp_path.glob("c.h5.tmp-*")) and not (tmp_path / "c.h5.lock").exists()
    assert len(list((tmp_path / "c.h5.parts").glob("*.part"))) == 3


# --- neighbours ----------------------------------------------------------------------------

def test_a_run_folder_moved_before_resume(clean, tmp_path):
    run = _copy(clean, tmp_path / "a")
    shutil.rmtree(run / "units" / UNIT.format(1))
    (run / "units" / f".tmp-{UNIT.format(1)}-999999").mkdir()  # a killed writer's
    (run / f".predictions.csv{PARTIAL}999999").write_text("half")
    (tmp_path / "elsewhere").mkdir()
    moved = run.rename(tmp_path / "elsewhere" / "b")
    result = invoke("cv", "--resume", "--unit-cpus", "1", "--out", str(moved))
    assert result.exit_code == 0 and "1 of 2 folds already done" in result.output
    assert not leftovers(moved)
    _same_predictions(moved, clean)


def test_caches_rebuilt_since_the_run(clean, tiny_cache, tmp_path):
    from mer_di.data_manifest.synth import generate_dataset
    from mer_di.pipeline.build import BuildOptions, build_cache

    cache = Path(shutil.copy(tiny_cache, tmp_path / "c.h5"))
    run = tmp_path / "run"
    assert invoke("cv", *CV, "--cache", str(cache), "--out", str(run)).exit_code == 0
    root = generate_dataset("casme2", tmp_path / "casme2", subjects=3, clips_per_class=1,
                            frame_size=(32, 32), length=(6, 8), seed=5).root
    build_cache("casme2", root, cache, options=BuildOptions(size=32, rebuild=True))
    result = invoke("report", str(run), "--no-figures", "--bootstrap", "50")
    assert result.exit_code == 0
    assert f"warning: {cache} has changed since {run} was trained on it" in result.output
    result = invoke("cv", *CV, "--cache", str(cache), "--out", str(run), "--resume")
    assert result.exit_code == 1 and f"--resume: {cache} changed since" in result.output
