"""``mer-train predict`` and the self-contained checkpoints it reads: on a cache and on a
dataset folder, its predictions on a fold's clips equal that fold's saved predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import PredictError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.inference import predict
from mer_di.training.trainer import CHECKPOINT_FORMAT


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A generated CASME II folder, its cache, and a tiny run with checkpoints and --final."""
    base = tmp_path_factory.mktemp("predict")
    root = generate_dataset("casme2", base / "casme2", subjects=3, clips_per_class=2,
                            frame_size=(48, 48), length=(6, 9), seed=4).root
    cache = build_cache("casme2", root, base / "c.h5", options=BuildOptions(size=32)).cache
    run = base / "run"
    result = CliRunner().invoke(mer_train, [
        "cv", "--quiet", "--tiny", "--cache", str(cache), "--model", "learnet", "--config",
        "baseline", "--protocol", "kfold", "--folds", "2", "--epochs", "2", "--batch-size",
        "8", "--final", "--out", str(run)])
    assert result.exit_code == 0, result.output
    return {"root": root, "cache": cache, "run": run}


def _fold_predictions(run: Path, fold: int) -> pd.DataFrame:
    saved = pd.read_csv(run / "predictions.csv", dtype={"subject": str, "clip": str})
    return saved[saved["fold"] == fold].sort_values(["subject", "clip"], ignore_index=True)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["subject", "clip"], ignore_index=True)


@pytest.mark.parametrize("source", ["cache", "folder"])
def test_fold_model_reproduces_the_fold_predictions(trained, source):
    run = trained["run"]
    for fold in (0, 1):
        saved = _fold_predictions(run, fold)
        keys = [f"{s}/{c}" for s, c in zip(saved["subject"], saved["clip"], strict=True)]
        where = ({"cache": trained["cache"]} if source == "cache"
                 else {"root": trained["root"], "dataset": "casme2"})
        got = _sorted(predict(run, clips=keys, fold=fold, **where))
        assert got["clip"].tolist() == saved["clip"].tolist()
        assert got["pred"].tolist() == saved["pred"].tolist()
        assert got["label"].tolist() == saved["label"].tolist()
        probs = got.filter(like="prob_").to_numpy()
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
        assert (probs.argmax(1) == got["pred"]).all()


def test_cli_on_a_folder_writes_one_row_per_clip(trained, tmp_path):
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(mer_train, ["predict", "--run", str(trained["run"]),
                                            "--root", str(trained["root"]), "--dataset",
                                            "casme2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False)
    assert "(final)" in result.output  # the final model is the default
    assert set(table["fold"]) == {"final"}
    # every usable clip of the folder, the one outside the five classes unlabelled
    assert len(table) == len(table.drop_duplicates(["subject", "clip"]))
    assert (table["label"] == "").sum() == 1  # the clip outside the five classes
    assert [c for c in table.columns if c.startswith("prob_")] == [
        "prob_happiness", "prob_disgust", "prob_surprise", "prob_repression", "prob_others"]


def test_every_fold_averaged(trained):
    table = predict(trained["run"], cache=trained["cache"], fold="all")
    assert set(table["fold"]) == {"mean:0+1"}


def test_checkpoint_stands_alone_and_loads_weights_only(trained):
    path = next((trained["run"] / "units").glob("*fold00/model.pt"))
    ck = torch.load(path, map_location="cpu", weights_only=True)
    assert ck["format"] == CHECKPOINT_FORMAT
    assert ck["model"] == "learnet" and ck["tiny"] is True and ck["input_size"] == 56
    assert ck["classes"] == ["happiness", "disgust", "surprise", "repression", "others"]
    assert ck["caches"][0]["size"] == "32" and ck["caches"][0]["crop"] == "none"
    assert all(isinstance(v, torch.Tensor) for v in ck["state_dict"].values())


@pytest.mark.parametrize("case", ["both", "neither", "no-dataset", "clip", "fold", "size",
                                  "not-a-run"])
def test_bad_requests_are_refused(trained, tmp_path, case):
    run, cache = trained["run"], trained["cache"]
    kwargs: dict = {"cache": cache}
    want = {"both": "either a cache", "neither": "either a cache",
            "no-dataset": "--root needs --dataset", "clip": "no clip sub01/nope",
            "fold": "has no fold 7", "size": "built otherwise", "not-a-run": "not a finished"}
    if case == "both":
        kwargs["root"] = trained["root"]
    elif case == "neither":
        kwargs = {}
    elif case == "no-dataset":
        kwargs = {"root": trained["root"]}
    elif case == "clip":
        kwargs["clips"] = ["sub01/nope"]
    elif case == "fold":
        kwargs["fold"] = 7
    elif case == "size":
        kwargs["cache"] = build_cache("casme2", trained["root"], tmp_path / "c16.h5",
                                      options=BuildOptions(size=16)).cache
    elif case == "not-a-run":
        run = tmp_path
    with pytest.raises(PredictError, match=want[case]):
        predict(run, **kwargs)


def test_run_without_checkpoints_says_so(trained, tmp_path):
    run = tmp_path / "nockpt"
    result = CliRunner().invoke(mer_train, [
        "cv", "--quiet", "--tiny", "--cache", str(trained["cache"]), "--model", "learnet",
        "--config", "baseline", "--folds", "2", "--epochs", "1", "--no-checkpoints", "--out",
        str(run)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(mer_train, ["predict", "--run", str(run), "--cache",
                                            str(trained["cache"]), "--out",
                                            str(tmp_path / "p.csv")])
    assert result.exit_code == 1 and "no checkpoints" in result.output
    assert "Traceback" not in result.output
