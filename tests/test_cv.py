"""``mer-train cv`` end to end on a generated CASME II-layout cache (tiny models, random
initialisation): every model and configuration, the three protocols, honest folds, the
saved predictions against scikit-learn, and clear errors before any training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from mer_di.data_manifest.synth import generate_dataset
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.configs import CONFIG_NAMES
from mer_di.training.models import MODEL_NAMES


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cv")
    root = generate_dataset("casme2", base / "casme2", subjects=4, clips_per_class=2,
                            frame_size=(48, 48), length=(6, 9), seed=11).root
    return build_cache("casme2", root, base / "casme2.h5", options=BuildOptions(size=32)).cache


def _cv(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(mer_train, ["cv", "--quiet", "--tiny", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _check_predictions(out: Path, n_clips: int, subject_disjoint: bool) -> pd.DataFrame:
    config = json.loads((out / "config.json").read_text())
    k = len(config["classes"])
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    summary = pd.read_csv(out / "summary.csv")
    for (model, cfg), run in preds.groupby(["model", "config"]):
        row = summary[(summary["model"] == model) & (summary["config"] == cfg)].iloc[0]
        uf1 = [f1_score(f["label"], f["pred"], average="macro", zero_division=0)
               for _, f in run.groupby(["seed", "fold"])]
        assert row["uf1_mean"] == pytest.approx(np.mean(uf1))
        acc, uar = [], []
        for _, g in run.groupby("seed"):
            assert len(g) == n_clips and not g.duplicated(["subject", "clip"]).any()
            if subject_disjoint:  # no subject in two test folds
                assert (g.groupby("subject")["fold"].nunique() == 1).all()
            acc.append(accuracy_score(g["label"], g["pred"]))
            uar.append(balanced_accuracy_score(g["label"], g["pred"]))
        assert row["pooled_accuracy"] == pytest.approx(np.mean(acc))
        assert row["pooled_uar"] == pytest.approx(np.mean(uar))
        assert len(run["label"].unique()) <= k
    return preds


def _n_clips(cache: Path) -> int:
    with h5py.File(cache, "r") as f:
        return sum(1 for s in f for c in f[s]
                   if f[s][c].attrs["emotion"] in ("happiness", "disgust", "surprise",
                                                   "repression", "others"))


@pytest.mark.slow
def test_every_model_and_configuration_trains(cache, tmp_path):
    out = tmp_path / "run"
    models = [a for m in MODEL_NAMES for a in ("--model", m)]
    configs = [a for c in CONFIG_NAMES for a in ("--config", c)]
    code, output = _cv("--cache", str(cache), *models, *configs, "--protocol",
                       "subject-kfold", "--folds", "2", "--epochs", "1", "--batch-size", "8",
                       "--out", str(out))
    assert code == 0, output
    preds = _check_predictions(out, _n_clips(cache), subject_disjoint=True)
    pairs = set(zip(preds["model"], preds["config"], strict=True))
    for m in MODEL_NAMES:
        want = ("baseline", "fliprot") if m == "dianet" else CONFIG_NAMES
        assert {c for mm, c in pairs if mm == m} == set(want), m
    assert "skipped dianet x dualdi" in output
    assert "random initialisation" in output
    epochs = pd.read_csv(out / "epochs.csv")
    assert len(epochs) == len(pairs) * 2  # one epoch per fold
    assert len(list((out / "units").glob("*/model.pt"))) == len(pairs) * 2
    summary_md = (out / "summary.md").read_text()
    # every row says what differs from the paper's settings (issue 10.6)
    setup = json.loads((out / "config.json").read_text())["setup"]
    assert f"| learnet ({setup['learnet']}) | dualdi+fliprot | 2 |" in summary_md
    assert f"| resnet34 ({setup['resnet34']}) | baseline | 2 |" in summary_md
    common = ("1 epoch, batch 8, val split 20%", "patience 10", "fp32", "reproducible mode")
    assert setup["learnet"].startswith("tiny, 1 epoch, batch 8, val split ")
    over = json.loads((out / "config.json").read_text())["data_setup"]
    assert over.startswith("40 clips (paper: 245), ") and over.endswith("crop none")
    assert f"over: {over}" in summary_md
    assert setup["learnet"].endswith("input upsampled 32->56")
    assert setup["resnet34"].startswith("tiny, random init, 1 epoch")
    assert all(t in setup[m] for t in common for m in ("learnet", "resnet34"))


@pytest.mark.parametrize("protocol", ["kfold", "loso"])
def test_protocols(cache, tmp_path, protocol):
    out = tmp_path / protocol
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--config", "baseline",
                       "--config", "dualdi+fliprot", "--protocol", protocol, "--folds", "3",
                       "--epochs", "2", "--batch-size", "8", "--seeds", "0,1",
                       "--no-checkpoints", "--out", str(out))
    assert code == 0, output
    preds = _check_predictions(out, _n_clips(cache), subject_disjoint=protocol == "loso")
    n_folds = 4 if protocol == "loso" else 3
    assert preds.groupby("seed")["fold"].nunique().tolist() == [n_folds, n_folds]
    if protocol == "kfold":  # a seed draws its own folds
        by_seed = [g.sort_values(["subject", "clip"])["fold"].to_numpy()
                   for _, g in preds[preds["config"] == "baseline"].groupby("seed")]
        assert not np.array_equal(*by_seed)
    assert not list((out / "units").glob("*/model.pt"))


def test_same_seed_same_numbers_and_resume_keeps_finished_folds(cache, tmp_path):
    args = ["--cache", str(cache), "--model", "learnet", "--config", "fliprot", "--protocol",
            "subject-kfold", "--folds", "2", "--epochs", "2", "--batch-size", "8"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert _cv(*args, "--out", str(a))[0] == 0
    assert _cv(*args, "--out", str(b))[0] == 0
    pa, pb = (pd.read_csv(p / "predictions.csv") for p in (a, b))
    pd.testing.assert_frame_equal(pa, pb)
    code, output = _cv(*args, "--out", str(a))
    assert code != 0 and "already holds a run" in output and "--resume" in output
    code, output = _cv(*args, "--out", str(a), "--resume")
    assert code == 0 and "2 of 2 folds already done" in output
    code, output = _cv(*args[:-2], "--batch-size", "5", "--out", str(a), "--resume")
    assert code != 0 and "other settings" in output


def test_apex_frame_control_runs(cache, tmp_path):
    out = tmp_path / "apex"
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--input", "apex",
                       "--protocol", "subject-kfold", "--folds", "2", "--epochs", "1",
                       "--out", str(out))
    assert code == 0, output
    assert "apex frame alone" in output and "skipped learnet x dualdi" in output
    preds = pd.read_csv(out / "predictions.csv")
    assert set(preds["config"]) == {"baseline", "fliprot"}


def _foreign(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    return path


@pytest.mark.parametrize("case", ["missing", "foreign", "model", "config", "folds",
                                  "pretrained"])
def test_bad_input_fails_before_training(cache, tmp_path, case):
    out = tmp_path / "run"
    args = {"cache": str(cache), "model": "learnet", "config": "baseline", "folds": "2"}
    want = {"missing": "cache not found", "foreign": "not a dynamic-image cache",
            "model": "unknown model(s) resnet-35", "config": "unknown configuration 'dual'",
            "folds": "4 subjects cannot make 5", "pretrained": "no weights file"}[case]
    if case == "missing":
        args["cache"] = str(tmp_path / "nope.h5")
    elif case == "foreign":
        args["cache"] = str(_foreign(tmp_path))
    elif case == "model":
        args["model"] = "resnet-35"
    elif case == "config":
        args["config"] = "dual"
    elif case == "folds":
        args["folds"] = "5"
    extra = ["--pretrained", str(tmp_path / "w.pth")] if case == "pretrained" else []
    code, output = _cv("--cache", args["cache"], "--model", args["model"], "--config",
                       args["config"], "--protocol", "subject-kfold", "--folds",
                       args["folds"], "--epochs", "1", *extra, "--out", str(out))
    assert code != 0
    assert want in output, output
    assert not (out / "units").exists()


def test_a_class_set_that_empties_a_class_is_refused(tmp_path):
    root = generate_dataset("casme2", tmp_path / "d", subjects=2, clips_per_class=1,
                            frame_size=(32, 32), length=(5, 6), seed=3).root
    cache = build_cache("casme2", root, tmp_path / "c.h5", options=BuildOptions(size=16)).cache
    with h5py.File(cache, "a") as f:  # drop every 'surprise' clip
        for s in list(f):
            for c in list(f[s]):
                if f[s][c].attrs["emotion"] == "surprise":
                    del f[s][c]
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--out",
                       str(tmp_path / "r"))
    assert code != 0 and "leaves no clips in class(es) surprise" in output


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_numbers(cache, tmp_path):
    args = ["--cache", str(cache), "--model", "learnet", "--config", "baseline", "--config",
            "dualdi+fliprot", "--protocol", "subject-kfold", "--folds", "2", "--epochs", "4",
            "--batch-size", "8", "--tiny", "--quiet"]
    clean = tmp_path / "clean"
    assert _cv(*[a for a in args if a not in ("--tiny", "--quiet")], "--out", str(clean))[0] == 0
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mer_di.training.cli", "cv", *args, "--out",
                             str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if len([p for p in (run / "units").glob("*") if not p.name.startswith(".")]) >= 2:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run / "predictions.csv").exists()  # no table passes for a whole run
    code, output = _cv(*[a for a in args if a not in ("--tiny", "--quiet")], "--out",
                       str(run), "--resume")
    assert code == 0, output
    assert "folds already done" in output
    for table in ("predictions.csv", "summary.csv", "folds.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(run / table), pd.read_csv(clean / table))
    ea, eb = (pd.read_csv(p / "epochs.csv").drop(columns="seconds") for p in (run, clean))
    pd.testing.assert_frame_equal(ea, eb)


def test_pretrained_weights_per_model(cache, tmp_path):
    from mer_di.training.models import build_model

    weights = tmp_path / "resnet34.pth"
    model, _ = build_model("resnet34", 1000, tiny=True)
    torch.save(model.state_dict(), weights)
    out = tmp_path / "run"
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--model", "resnet34",
                       "--config", "baseline", "--pretrained", f"resnet34={weights}",
                       "--protocol", "subject-kfold", "--folds", "2", "--epochs", "1",
                       "--out", str(out))
    assert code == 0, output
    assert "random initialisation" not in output  # learnet is from scratch by design
    saved = json.loads((out / "config.json").read_text())["spec"]["pretrained"]
    assert saved == {"resnet34": str(weights)}
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--pretrained",
                       f"vgg19={weights}", "--out", str(tmp_path / "r2"))
    assert code != 0 and "vgg19 is not a --model of this run" in output


def test_options_keep_what_the_user_asked(cache, tmp_path):
    """Repeated --seeds add up; a seed twice and --size 8 are refused; --folds under loso is
    named as ignored;
    a model fed images larger than the cache's says so in the output, config.json and
    summary.md."""
    out = tmp_path / "run"
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--config", "baseline",
                       "--protocol", "subject-kfold", "--folds", "2", "--epochs", "1",
                       "--seeds", "0", "--seeds", "1", "--no-checkpoints", "--out", str(out))
    assert code == 0, output
    config = json.loads((out / "config.json").read_text())
    assert config["spec"]["seeds"] == [0, 1]
    note = "the caches' 32x32 images are upsampled to the model's 56x56 input"
    assert note in output and note in config["notes"][0]
    assert note in (out / "summary.md").read_text()
    assert "input upsampled 32->56" in config["setup"]["learnet"]  # the row says so too
    assert "input upsampled 32->56) | baseline |" in (out / "summary.md").read_text()
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--seeds", "0,1",
                       "--seeds", "1", "--out", str(tmp_path / "r2"))
    assert code == 2 and "seed 1 given twice" in output
    assert not (tmp_path / "r2").exists()
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--protocol", "loso",
                       "--folds", "3", "--config", "baseline", "--epochs", "1",
                       "--no-checkpoints", "--out", str(tmp_path / "r3"))
    assert code == 0 and "--folds 3 is ignored: --protocol loso has one fold per" in output
    from mer_di.pipeline.cli import main as mer_prep

    result = CliRunner().invoke(mer_prep, ["build-cache", "--dataset", "casme2", "--root",
                                           str(tmp_path), "--out", str(tmp_path / "c.h5"),
                                           "--size", "8"])
    assert result.exit_code == 2 and "at least 32 pixels" in result.output


def test_a_diverged_unit_fails_and_no_table_prints_a_number(cache, tmp_path):
    """--lr 1e12: the loss turns NaN. Before, the run printed a chance-level score with
    exit 0; now the unit fails, the tables say so without a number, and the exit is 1."""
    out = tmp_path / "run"
    code, output = _cv("--cache", str(cache), "--model", "learnet", "--config", "baseline",
                       "--protocol", "kfold", "--folds", "2", "--epochs", "3", "--lr", "1e12",
                       "--no-checkpoints", "--out", str(out))
    assert code == 1, output
    assert "training diverged" in output and "failures.csv" in output
    summary_md = (out / "summary.md").read_text()
    tag = json.loads((out / "config.json").read_text())["setup"]["learnet"]
    assert tag.startswith("tiny, 3 epochs, lr 1e+12, ") and tag.endswith("32->56")
    row = f"| learnet ({tag}) | baseline | 2 |"
    assert f"{row} failed |" in summary_md
    assert not any(ch.isdigit() for ch in summary_md.split(row)[1].split("\n")[0])
    summary = pd.read_csv(out / "summary.csv")
    assert summary.filter(like="uf1").isna().all().all()
    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == 2 and failures["failed"].str.contains("became nan").all()
    assert len(pd.read_csv(out / "predictions.csv")) == 0
    result = CliRunner().invoke(mer_train, ["report", str(out), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    label = f"learnet ({tag})"
    assert f"| {label} | baseline | failed | failed | failed |" in result.output
    assert f"Failed, no score: {label} x baseline" in result.output


def test_resume_redoes_damaged_units_and_knows_its_own_settings(cache, tmp_path):
    """A unit cut short or without its scores is redone (and said so); `--resume --out`
    alone uses the run's settings; the same cache under another path is the same cache;
    a refusal names each differing option with both values."""
    import shutil

    args = ["--cache", str(cache), "--model", "learnet", "--config", "baseline", "--protocol",
            "subject-kfold", "--folds", "2", "--epochs", "1", "--batch-size", "8"]
    run = tmp_path / "run"
    assert _cv(*args, "--out", str(run))[0] == 0
    clean = pd.read_csv(run / "predictions.csv")
    units = sorted(p for p in (run / "units").iterdir())
    cut = units[0] / "predictions.csv"
    cut.write_text("".join(cut.read_text().splitlines(keepends=True)[:2]))  # cut short
    (units[1] / "scores.json").unlink()  # a unit folder without its scores
    code, output = _cv("--resume", "--out", str(run))
    assert code == 0, output
    assert f"redoing {units[0].name}" in output and f"redoing {units[1].name}" in output
    pd.testing.assert_frame_equal(pd.read_csv(run / "predictions.csv"), clean)
    moved = shutil.copy(cache, tmp_path / "elsewhere.h5")  # same content, another path
    code, output = _cv(*[str(moved) if a == str(cache) else a for a in args], "--out",
                       str(run), "--resume")
    assert code == 0 and "2 of 2 folds already done" in output
    code, output = _cv(*args[:-2], "--batch-size", "5", "--out", str(run), "--resume")
    assert code != 0 and "train.batch_size: run has 8, asked 5" in output
