"""``mer-train cv --apex-robustness`` and the report's robustness section (issue 19.4b): a
tiny DIANet run on a look-alike cache with shifted apexes predicts its test clips at each
shift and at the spotted apex with each fold's own model; at shift 0 those predictions are
the run's own; the report writes the table and the plot; a cache without shifted apexes is
refused before training; a full-image model is reported as not apex-dependent."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mer_di.data_manifest.synth import generate_dataset
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.robustness import PREDICTIONS
from tests.jitter_cache import add_jitter

K = 2
SIZE = 32


# the build's own --apex-jitter where this checkout has it, else the tests' stand-in
BUILD_JITTERS = "apex_jitter" in {f.name for f in dataclasses.fields(BuildOptions)}


def _jittered(base: Path, flow: bool = False, jitter: bool = True) -> Path:
    root = generate_dataset("casme2", base / "casme2", subjects=3, clips_per_class=1,
                            frame_size=(48, 48), length=(9, 12), seed=5).root
    options = BuildOptions(size=SIZE, workers=1, flow="farneback" if flow else None)
    if BUILD_JITTERS and jitter:
        options = dataclasses.replace(options, apex_jitter=K)
    cache = build_cache("casme2", root, base / "c.h5", options=options).cache
    if jitter and not (BUILD_JITTERS and (not flow or _has(cache, "jitter_flow_onset_apex"))):
        add_jitter(cache, "casme2", root, K, SIZE, flow=flow)  # what the build does not make
    return cache


def _has(cache: Path, name: str) -> bool:
    with h5py.File(cache, "r") as f:
        return any(name in f[s][c] for s in f for c in f[s])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return _jittered(tmp_path_factory.mktemp("jitter"))


def _train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(mer_train, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


TINY = ("--quiet", "--tiny", "--epochs", "1", "--batch-size", "8", "--protocol", "kfold",
        "--folds", "2", "--config", "baseline", "--device", "cpu")


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("runs") / "run"
    code, output = _train("cv", *TINY, "--cache", str(cache), "--model", "dianet",
                          "--model", "learnet", "--apex-robustness", "--out", str(out))
    assert code == 0, output
    return out, output


def test_tiny_dianet_run_writes_robustness_predictions(run, cache):
    out, output = run
    units = sorted((out / "units").glob("dianet__*"))
    assert len(units) == 2
    for unit in units:  # each fold's model, on that fold's test clips only
        rows = pd.read_csv(unit / PREDICTIONS, dtype={"subject": str, "clip": str})
        preds = pd.read_csv(unit / "predictions.csv", dtype={"subject": str, "clip": str})
        assert set(rows["clip"]) <= set(preds["clip"]) and len(rows)
        scores = json.loads((unit / "scores.json").read_text())
        info = scores["apex_robustness"]
        assert info["measured"] and info["jitter"] == K
        assert PREDICTIONS in scores["files"]  # recorded like every file of the unit
        counts = rows.groupby(rows["input"] + rows["apex_error"].astype(str)).size()
        for shift in range(-K, K + 1):
            assert info["clips"][str(shift)] == counts.get(f"shifted{shift}", 0)
    gathered = pd.read_csv(out / PREDICTIONS, dtype={"subject": str, "clip": str})
    assert set(gathered["model"]) == {"dianet"}
    assert set(gathered.loc[gathered["input"] == "shifted", "apex_error"]) == set(
        range(-K, K + 1))
    assert (gathered["input"] == "spotted").any()
    with h5py.File(cache, "r") as f:  # a shift counts only the clips where it is valid
        for r in gathered[gathered["input"] == "shifted"].itertuples():
            g = f[f"{r.subject}/{r.clip}"]
            assert r.apex_error in g.attrs["jitter_shifts"]
            assert r.apex == r.apex_annotated + r.apex_error == g.attrs["apex_used"] + \
                r.apex_error
        spotted = gathered[gathered["input"] == "spotted"]
        for r in spotted.itertuples():
            assert r.apex == f[f"{r.subject}/{r.clip}"].attrs["spotted_apex"]
    assert "learnet is not apex-dependent" in output


def test_shift_zero_predictions_are_the_runs_own(run):
    out, _ = run
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    robust = pd.read_csv(out / PREDICTIONS, dtype={"subject": str, "clip": str})
    zero = robust[(robust["input"] == "shifted") & (robust["apex_error"] == 0)]
    both = zero.merge(preds, on=["model", "config", "seed", "fold", "subject", "clip"],
                      suffixes=("", "_run"))
    assert len(both) == len(zero) > 0
    assert (both["pred"] == both["pred_run"]).all()
    assert (both["label"] == both["label_run"]).all()


def test_report_writes_the_robustness_table_and_plot(run, tmp_path):
    out, _ = run
    code, output = _train("report", str(out), "--out", str(tmp_path / "rep"), "--bootstrap",
                          "50")
    assert code == 0, output
    rep = tmp_path / "rep"
    table = pd.read_csv(rep / "robustness.csv")
    dianet = table[table["model"].str.startswith("dianet")].iloc[0]
    assert dianet["measured"]
    for c in (*(f"{s:+d}" if s else "0" for s in range(-K, K + 1)), "spotted"):
        for m in ("uf1", "uar"):
            assert 0 <= dianet[f"{m}_{c}"] <= 1
        assert dianet[f"n_{c}"] >= 1
        assert 0 <= dianet[f"unchanged_{c}"] <= 1
    assert dianet["unchanged_0"] == 1  # shift 0 against itself
    robust = pd.read_csv(out / PREDICTIONS)
    assert dianet["n_0"] == ((robust["input"] == "shifted") & (robust["apex_error"] == 0)).sum()
    learnet = table[table["model"].str.startswith("learnet")].iloc[0]
    assert not learnet["measured"] and "not apex-dependent" in learnet["note"]
    assert "full dynamic image" in learnet["note"]
    md = (rep / "robustness.md").read_text()
    assert "| -2 | -1 | 0 | +1 | +2 | spotted |" in md
    assert "not apex-dependent" in md and "mean |error|" in md
    assert "Predictions unchanged from those at the annotated apex" in md
    assert (rep / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Apex robustness" in output


def test_a_cache_without_shifted_apexes_is_refused_before_training(tmp_path):
    cache = _jittered(tmp_path, jitter=False)
    code, output = _train("cv", *TINY, "--cache", str(cache), "--model", "dianet",
                          "--apex-robustness", "--out", str(tmp_path / "run"))
    assert code == 1
    assert "--apex-robustness needs caches built with shifted apexes" in output
    assert "--apex-jitter" in output and "apex_jitter 0" in output
    assert not (tmp_path / "run").exists()  # nothing trained, no run folder left


def test_a_full_image_model_alone_is_reported_not_apex_dependent(cache, tmp_path):
    out = tmp_path / "run"
    code, output = _train("cv", *TINY, "--cache", str(cache), "--model", "learnet",
                          "--apex-robustness", "--no-checkpoints", "--out", str(out))
    assert code == 0, output
    assert "learnet is not apex-dependent (tested on the full dynamic image" in output
    assert not (out / PREDICTIONS).exists()
    assert not list((out / "units").glob(f"*/{PREDICTIONS}"))
    code, output = _train("report", str(out), "--out", str(tmp_path / "rep"), "--bootstrap",
                          "50", "--no-figures")
    assert code == 0, output
    table = pd.read_csv(tmp_path / "rep" / "robustness.csv")
    assert list(table["measured"]) == [False]
    assert not (tmp_path / "rep" / "robustness.png").exists()


def test_a_run_without_the_option_has_no_robustness_section(cache, tmp_path):
    out = tmp_path / "run"
    code, output = _train("cv", *TINY, "--cache", str(cache), "--model", "learnet",
                          "--no-checkpoints", "--out", str(out))
    assert code == 0, output
    code, output = _train("report", str(out), "--out", str(tmp_path / "rep"), "--bootstrap",
                          "50", "--no-figures")
    assert code == 0 and not (tmp_path / "rep" / "robustness.md").exists()


def test_flow_models_at_shifted_apexes_and_a_cache_without_jittered_flow(tmp_path):
    cache = _jittered(tmp_path / "a", flow=True)
    out = tmp_path / "run"
    code, output = _train("cv", *TINY, "--cache", str(cache), "--model", "ststnet",
                          "--apex-robustness", "--no-checkpoints", "--out", str(out))
    assert code == 0, output
    assert "no flow at the spotted apex" in output
    robust = pd.read_csv(out / PREDICTIONS, dtype={"subject": str, "clip": str})
    assert set(robust["input"]) == {"shifted"}
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    zero = robust[robust["apex_error"] == 0].merge(
        preds, on=["seed", "fold", "subject", "clip"], suffixes=("", "_run"))
    assert len(zero) and (zero["pred"] == zero["pred_run"]).all()
    with h5py.File(cache, "r+") as f:  # the same cache without the jittered flow
        for s in f:
            for c in f[s]:
                if "jitter_flow_onset_apex" in f[s][c]:
                    del f[s][c]["jitter_flow_onset_apex"]
    code, output = _train("cv", *TINY, "--cache", str(cache), "--model", "ststnet",
                          "--apex-robustness", "--out", str(tmp_path / "run2"))
    assert code == 1 and "no optical flow at shifted apexes" in output
    assert "jitter_flow_onset_apex" in output


def test_shifted_inputs_differ_from_the_annotated_ones(cache):
    """The look-alike's jitter is real: a shifted apex gives other phase images."""
    with h5py.File(cache, "r") as f:
        diffs = []
        for s in f:
            for c in f[s]:
                g = f[s][c]
                if "jitter_onset" not in g:
                    continue
                j = g["jitter_onset"][()]
                if "onset" in g:  # entry K: the annotated apex's, byte for byte
                    assert np.array_equal(j[K], g["onset"][()])
                for shift in g.attrs["jitter_shifts"]:
                    if shift:
                        diffs.append(np.abs(j[K + shift] - j[K]).mean())
    assert diffs and min(diffs) > 0


@pytest.mark.slow
def test_on_ray_the_robustness_predictions_equal_the_local_ones(cache, tmp_path):
    """The option passes through the Ray executor: each unit's task measures it, as a
    local unit does (the worker reads the shifted apexes from the cache's path)."""
    pytest.importorskip("ray")
    args = ("cv", *TINY[:-2], "--cache", str(cache), "--model", "dianet", "--apex-robustness",
            "--no-checkpoints", "--unit-cpus", "1")
    code, output = _train(*args, "--out", str(tmp_path / "local"))
    assert code == 0, output
    code, output = _train(*args, "--executor", "ray", "--out", str(tmp_path / "ray"))
    assert code == 0, output
    keys = ["fold", "input", "apex_error", "subject", "clip"]
    a, b = (pd.read_csv(tmp_path / r / PREDICTIONS, dtype={"subject": str, "clip": str})
            .sort_values(keys, ignore_index=True) for r in ("local", "ray"))
    pd.testing.assert_frame_equal(a, b)


def test_damaged_robustness_predictions_are_named(run, tmp_path):
    """A unit's or the run's robustness predictions edited since the run wrote them: the
    report refuses, naming the file (they are recorded like every file of a run)."""
    import shutil

    out, _ = run
    for where in ("unit", "run"):
        copy = tmp_path / where
        shutil.copytree(out, copy)
        path = (sorted((copy / "units").glob(f"dianet__*/{PREDICTIONS}"))[0] if where == "unit"
                else copy / PREDICTIONS)
        text = path.read_text()
        path.write_text(text.replace(",shifted,", ",spotted,", 1))
        code, output = _train("report", str(copy), "--out", str(tmp_path / f"rep-{where}"),
                              "--no-figures", "--bootstrap", "50")
        assert code == 1 and PREDICTIONS in output and "damaged" in output, output
