"""Flow models trained and applied end to end (issue 19.2): a cache built with --flow, STSTNet
under baseline and the phase-aware configurations, its checkpoints, and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from mer_di.data_manifest.synth import generate_dataset
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training import trainer
from mer_di.training.cli import main as mer_train
from mer_di.training.data import load_caches
from mer_di.training.flow_input import (
    FLOW_APEX_OFFSET,
    FLOW_ONSET_APEX,
    clip_set_flow_bank,
    flow_flip_rotate,
    flow_unit_samples,
)
from mer_di.training.inference import predict
from mer_di.training.units import CHECKPOINT


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("flowrun")
    root = generate_dataset("casme2", base / "casme2", subjects=3, clips_per_class=2,
                            frame_size=(48, 48), length=(6, 9), seed=4).root
    cache = build_cache("casme2", root, base / "c.h5",
                        options=BuildOptions(size=32, flow="farneback")).cache
    run = base / "run"
    result = CliRunner().invoke(mer_train, [
        "cv", "--quiet", "--tiny", "--cache", str(cache), "--model", "ststnet", "--config",
        "baseline", "--config", "dualdi+fliprot", "--folds", "2", "--epochs", "2",
        "--batch-size", "8", "--out", str(run)])
    assert result.exit_code == 0, result.output
    return {"root": root, "cache": cache, "run": run, "output": result.output}


def test_ststnet_trains_on_the_flow_of_a_cache(flow_run):
    assert "input: optical flow" in flow_run["output"]
    scores = {}
    for path in (flow_run["run"] / "units").glob("*/scores.json"):
        s = json.loads(path.read_text())
        scores[(s["config"], s["fold"])] = s
    assert len(scores) == 4
    clips = load_caches([flow_run["cache"]], "five")
    has_offset = clips.has_flow[FLOW_APEX_OFFSET]
    for fold in (0, 1):
        base, dual = scores[("baseline", fold)], scores[("dualdi+fliprot", fold)]
        # the phase-aware configuration adds each training clip's apex->offset flow
        assert base["train_samples"] < dual["train_samples"] <= 2 * base["train_samples"]
        assert base["test_clips"] == dual["test_clips"]
    assert has_offset.sum() >= len(clips) - 2
    ck = torch.load(next((flow_run["run"] / "units").glob(f"*/{CHECKPOINT}")),
                    weights_only=True)
    assert ck["input_kind"] == "flow" and ck["model"] == "ststnet"


@pytest.mark.parametrize("source", ["cache", "folder"])
def test_predict_reproduces_a_flow_fold(flow_run, source):
    saved = pd.read_csv(flow_run["run"] / "predictions.csv", dtype={"subject": str,
                                                                    "clip": str})
    saved = saved[(saved["fold"] == 1) & (saved["config"] == "baseline")].sort_values(
        ["subject", "clip"], ignore_index=True)
    where = ({"cache": flow_run["cache"]} if source == "cache"
             else {"root": flow_run["root"], "dataset": "casme2"})
    got = predict(flow_run["run"], config="baseline", fold=1,
                  clips=[f"{s}/{c}" for s, c in zip(saved["subject"], saved["clip"],
                                                    strict=True)], **where)
    got = got.sort_values(["subject", "clip"], ignore_index=True)
    assert got["pred"].tolist() == saved["pred"].tolist()


def test_a_flow_model_is_augmented_as_flow(flow_run, monkeypatch):
    """fliprot on a flow model turns the vectors (flow_flip_rotate), not only the pixels."""
    seen = []

    def fake_fit(*args, augment=None, **kwargs):
        seen.append(augment)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "fit", fake_fit)
    from mer_di.training.plan import CVSpec, plan_run
    from mer_di.training.samples import model_bank

    spec = CVSpec(caches=[str(flow_run["cache"])], models=["ststnet"],
                   configs=["dualdi+fliprot"], folds=2, tiny=True)
    plan = plan_run(spec)
    bank = model_bank(plan, plan.cfgs["ststnet"])
    with pytest.raises(KeyboardInterrupt):
        trainer.run_unit(plan, plan.units[0], bank)
    assert seen == [flow_flip_rotate]


def test_the_flow_bank_of_a_clip_set(flow_run):
    clips = load_caches([flow_run["cache"]], "five")
    bank = clip_set_flow_bank(clips, ["dualdi"], 28)
    assert bank.names == (FLOW_ONSET_APEX, FLOW_APEX_OFFSET)
    assert bank.tensor.shape == (2 * len(clips), 3, 28, 28)
    idx = np.arange(len(clips))
    dual = flow_unit_samples(clips.labels, bank, idx, True)
    assert len(dual) == len(clips) + clips.has_flow[FLOW_APEX_OFFSET].sum()
    assert clip_set_flow_bank(clips, ["baseline"], 28).names == (FLOW_ONSET_APEX,)


def test_a_flow_model_under_the_apex_frame_control_is_refused(flow_run, tmp_path):
    result = CliRunner().invoke(mer_train, [
        "cv", "--quiet", "--tiny", "--cache", str(flow_run["cache"]), "--model", "ststnet",
        "--config", "baseline", "--input", "apex", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "fed optical flow" in result.output


def test_caches_whose_flow_methods_differ_are_refused(flow_run, tmp_path):
    other = generate_dataset("samm", tmp_path / "samm", subjects=2, clips_per_class=1,
                             frame_size=(48, 48), length=(6, 9), seed=1).root
    samm = build_cache("samm", other, tmp_path / "samm.h5",
                       options=BuildOptions(size=32, flow="dis")).cache
    result = CliRunner().invoke(mer_train, [
        "cv", "--quiet", "--tiny", "--cache", str(flow_run["cache"]), "--cache", str(samm),
        "--classes", "megc", "--model", "ststnet", "--config", "baseline", "--protocol",
        "loso", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "different methods" in result.output, result.output
    assert "farneback" in result.output and "dis" in result.output
