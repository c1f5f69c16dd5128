"""``mer-train table1`` (issue 13.2) end to end with tiny models and fake weights files;
missing weights named before anything trains; ``--allow-random-init`` marks the rows;
``--pretrained hub`` offline (a pre-filled hub cache is used, an empty one says so)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import ModelError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.models import build_model, model_cfg
from mer_di.training.table1 import TABLE1_MODELS

FAST = ["--tiny", "--epochs", "1", "--folds", "2", "--config", "baseline", "--quiet"]


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("t1")
    out = []
    for i, dataset in enumerate(("casme2", "samm")):
        root = generate_dataset(dataset, base / dataset, subjects=3, clips_per_class=2,
                                frame_size=(48, 48), length=(6, 8), seed=30 + i).root
        out.append(build_cache(dataset, root, base / f"{dataset}.h5",
                               options=BuildOptions(size=32)).cache)
    return out


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """Fake pretrained files: each tiny model's own random weights under its file name."""
    folder = tmp_path_factory.mktemp("weights")
    for name in TABLE1_MODELS:
        cfg = model_cfg(name, tiny=True)
        if cfg.weights_file:
            model, _ = build_model(name, 7, tiny=True)
            torch.save(model.state_dict(), folder / cfg.weights_file)
    return folder


def _table1(*args: str):
    return CliRunner().invoke(mer_train, ["table1", *args])


def test_table1_end_to_end_with_fake_weights(caches, weights_dir, tmp_path):
    out = tmp_path / "table1"
    result = _table1("--cache", str(caches[0]), "--cache", str(caches[1]), "--weights-dir",
                     str(weights_dir), "--out", str(out), *FAST)
    assert result.exit_code == 0, result.output
    for dataset in ("casme2", "samm"):
        config = json.loads((out / dataset / "config.json").read_text())
        assert config["spec"]["models"] == list(TABLE1_MODELS)
        assert config["spec"]["protocol"] == "kfold" and config["spec"]["classes"] == "five"
        assert set(config["spec"]["pretrained"]) == set(TABLE1_MODELS) - {"learnet"}
        preds = pd.read_csv(out / dataset / "predictions.csv")
        assert set(preds["model"]) == set(TABLE1_MODELS)
    table = pd.read_csv(out / "report" / "table.csv")
    assert len(table) == len(TABLE1_MODELS)
    assert {c.split(".")[0] for c in table.columns if "." in c} == {"casme2", "samm"}
    assert not any("random init" in m for m in table["model"])
    # the same command again finishes nothing more and reports the same table
    again = _table1("--cache", str(caches[0]), "--cache", str(caches[1]), "--weights-dir",
                    str(weights_dir), "--out", str(out), *FAST)
    assert again.exit_code == 0, again.output
    assert "already done" in again.output


def test_missing_weights_are_named_before_training(caches, weights_dir, tmp_path):
    partial = tmp_path / "w"
    partial.mkdir()
    for f in weights_dir.iterdir():
        if f.name != "resnet34.pth" and f.name != "vgg_face_dag.pth":
            (partial / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "t"
    result = _table1("--cache", str(caches[0]), "--weights-dir", str(partial), "--out",
                     str(out), *FAST)
    assert result.exit_code == 1
    assert f"no weights file {partial / 'resnet34.pth'}" in result.output
    assert f"no weights file {partial / 'vgg_face_dag.pth'}" in result.output
    assert "albanie" in result.output and "resnet34.a1_in1k" in result.output
    assert "vgg19" not in result.output.split("Error:")[1].split("(put")[0]
    assert not out.exists()

    result = _table1("--cache", str(caches[0]), "--weights-dir", str(partial), "--out",
                     str(out), "--allow-random-init", "--model", "resnet34", "--model",
                     "learnet", *FAST)
    assert result.exit_code == 0, result.output
    assert "random initialisation: resnet34" in result.output
    table = pd.read_csv(out / "report" / "table.csv")
    marked = {m.split(" ")[0]: m for m in table["model"]}
    assert "random init" in marked["resnet34"] and "random init" not in marked["learnet"]


def test_two_caches_of_one_dataset_are_refused(caches, tmp_path):
    copy = tmp_path / "again.h5"
    copy.write_bytes(caches[0].read_bytes())
    result = _table1("--cache", str(caches[0]), "--cache", str(copy), "--out",
                     str(tmp_path / "t"), "--allow-random-init", *FAST)
    assert result.exit_code == 1 and "two caches of casme2" in result.output


def _hub_cache(tmp_path, monkeypatch, filled: bool) -> None:
    import huggingface_hub.constants
    from safetensors.torch import save_file

    hf = tmp_path / "hf"
    hf.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.hub.set_dir(str(tmp_path / "torch"))
    if filled:
        repo = hf / "models--timm--resnet34.a1_in1k"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("abc123")
        (repo / "snapshots" / "abc123").mkdir(parents=True)
        model, _ = build_model("resnet34", 1000, tiny=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(repo / "snapshots" / "abc123" / "model.safetensors"))


def test_pretrained_hub_offline(tmp_path, monkeypatch):
    try:
        _hub_cache(tmp_path, monkeypatch, filled=False)
        with pytest.raises(ModelError, match="could not be downloaded .* offline"):
            build_model("resnet34", 3, pretrained="hub", tiny=True)
        _hub_cache(tmp_path / "filled", monkeypatch, filled=True)
        _, info = build_model("resnet34", 3, pretrained="hub", tiny=True)
        assert info.pretrained.endswith("model.safetensors")
        with pytest.raises(ModelError, match="learnet has no published weights"):
            build_model("learnet", 3, pretrained="hub", tiny=True)
    finally:
        torch.hub.set_dir(str(Path.home() / ".cache" / "torch" / "hub"))
