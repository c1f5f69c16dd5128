"""Issue 17 on the CPU: Table I as a GPU run will meet it. Best weights kept on the device,
table1 without checkpoints by default and saying what it writes, the determinism mode in
every row, the paper's protocol (--select-epoch test-fold) labelled optimistic with its
inflation measured, every row saying what differs from the paper, the weights' tag, the
crop warning, and each pretrained model built once per process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from mer_di.data_manifest.synth import generate_dataset
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.loop import OPTIMISTIC, BestWeights
from mer_di.training.models import build_model, model_cfg
from mer_di.training.models.prototype import _PROTOTYPES, build_for_unit

FAST = ["--tiny", "--epochs", "2", "--folds", "2", "--config", "baseline", "--quiet"]


@pytest.fixture(scope="module")
def casme2(tmp_path_factory) -> Path:
    """A look-alike CASME II whose sheet goes by the 2014 name (the paper's clips)."""
    base = tmp_path_factory.mktemp("pp")
    root = generate_dataset("casme2", base / "casme2", subjects=3, clips_per_class=2,
                            frame_size=(48, 48), length=(6, 8), seed=41).root
    sheet = next(root.glob("CASME2-coding-*.xlsx"))
    sheet.rename(root / "CASME2-coding-20140508.xlsx")
    return build_cache("casme2", root, base / "casme2.h5", options=BuildOptions(size=32)).cache


@pytest.fixture(scope="module")
def samm(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pps")
    root = generate_dataset("samm", base / "samm", subjects=3, clips_per_class=2,
                            frame_size=(64, 48), length=(6, 8), seed=42).root
    return build_cache("samm", root, base / "samm.h5", options=BuildOptions(size=32)).cache


def _mer(*args: str):
    return CliRunner().invoke(mer_train, list(args))


# --- 1: the best epoch's weights stay on the device, copied in place ---------------------

def test_best_weights_are_kept_in_place_on_the_models_device():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    best = BestWeights()
    best.save(model)
    ptrs = {k: v.data_ptr() for k, v in best.state.items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    best.save(model)  # a second improvement: the same buffers, no new allocation
    assert {k: v.data_ptr() for k, v in best.state.items()} == ptrs
    assert all(v.device == model[0].weight.device for v in best.state.values())
    kept = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.zero_()
    best.restore(model)
    assert torch.equal(model[0].weight, kept)


def test_the_loop_no_longer_copies_weights_to_the_host():
    import mer_di.training.loop as loop

    assert not hasattr(loop, "copy"), "fit deep-copied a host copy of the weights per epoch"


# --- 2, 3, 7, 8: table1 as the GPU run will use it ---------------------------------------

def test_table1_writes_no_checkpoints_by_default_and_says_what_it_writes(casme2, tmp_path):
    out = tmp_path / "t"
    r = _mer("table1", "--cache", str(casme2), "--allow-random-init", "--model", "learnet",
             "--model", "resnet34", "--out", str(out), *FAST)
    assert r.exit_code == 0, r.output
    assert "Table I (1 dataset(s) x 2 models x 1 configurations x 2 folds x 1 seed(s), " \
           "without checkpoints) will write about" in r.output
    assert not list(out.glob("casme2/units/*/model.pt"))
    config = json.loads((out / "casme2" / "config.json").read_text())
    assert config["determinism"]["mode"] == "reproducible"
    tag = config["setup"]["resnet34"]
    for part in ("tiny", "random init", "2 epochs", "val split 20%", "patience 10", "fp32",
                 "reproducible mode"):
        assert part in tag, (part, tag)
    n = config["clips"]
    assert config["data_setup"].startswith(f"{n} clips (paper: 245), ")
    assert "validation clips per fold" in config["data_setup"]
    assert config["data_setup"].endswith("crop none")
    table = pd.read_csv(out / "report" / "table.csv")
    assert all("reproducible mode" in m and "val split" in m for m in table["model"])
    assert f"Over: {config['data_setup']}." in (out / "report" / "table.md").read_text()
    import socket

    assert f"ran on: {socket.gethostname()} cpu: 4 units" in r.output  # 2 models x 2 folds


def test_table1_checkpoints_on_request_and_a_full_disk_refused(casme2, tmp_path, monkeypatch):
    out = tmp_path / "t"
    r = _mer("table1", "--cache", str(casme2), "--allow-random-init", "--model", "learnet",
             "--checkpoints", "--out", str(out), *FAST)
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("casme2/units/*/model.pt"))) == 2

    import mer_di.training.disk as disk

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk.shutil, "disk_usage",
                        lambda p: usage._replace(free=100_000))
    out2 = tmp_path / "t2"
    r = _mer("table1", "--cache", str(casme2), "--allow-random-init", "--model", "learnet",
             "--checkpoints", "--out", str(out2), *FAST)
    assert r.exit_code == 1
    assert "not enough space" in r.output and "leave out --checkpoints" in r.output
    assert "Traceback" not in r.output and not (out2 / "casme2").exists()


def test_the_papers_protocol_is_labelled_and_its_inflation_measured(casme2, tmp_path):
    out = tmp_path / "t"
    r = _mer("table1", "--cache", str(casme2), "--allow-random-init", "--model", "learnet",
             "--select-epoch", "both", "--out", str(out), *FAST)
    assert r.exit_code == 0, r.output
    honest, optimistic = out / "casme2", out / "casme2-test-fold"
    scores = [json.loads(p.read_text()) for p in optimistic.glob("units/*/scores.json")]
    assert scores and all(s["val_clips"] == s["test_clips"] for s in scores)
    assert all(s["select_epoch"] == "test-fold" for s in scores)
    # labelled in the run's summary, the report's table and its run list
    assert OPTIMISTIC in (optimistic / "summary.md").read_text()
    assert OPTIMISTIC not in (honest / "summary.md").read_text()
    table_md = (out / "report" / "table.md").read_text()
    assert table_md.count(OPTIMISTIC) >= 3  # the run, and the rows of both tables
    inflation = pd.read_csv(out / "report" / "inflation.csv")
    assert set(inflation["metric"]) == {"uf1", "accuracy"} and len(inflation) == 2
    row = inflation[inflation["metric"] == "uf1"].iloc[0]
    assert row["inflation"] == pytest.approx(row["optimistic"] - row["honest"])
    assert "The paper's protocol beside ours" in r.output


def test_cv_select_epoch_test_fold_and_final_refused(casme2, tmp_path):
    r = _mer("cv", "--cache", str(casme2), "--model", "learnet", "--select-epoch",
             "test-fold", "--final", "--out", str(tmp_path / "r"), *FAST)
    assert r.exit_code == 1 and "a final model has no test fold" in r.output


def test_paper_clip_set_by_name(casme2, tmp_path):
    from mer_di.data_manifest.classes import map_label
    from mer_di.pipeline.cache_reader import open_cache

    with open_cache(casme2) as c:
        want = sum(1 for clip in c if map_label("casme2", "five", clip.emotion)
                   and isinstance(clip.attrs.get("apex"), int))
        total = len(c)
    assert want < total  # the look-alike plants an apex of '/'
    out = tmp_path / "t"
    r = _mer("table1", "--cache", str(casme2), "--allow-random-init", "--model", "learnet",
             "--clips", "paper-casme2", "--out", str(out), *FAST)
    assert r.exit_code == 0, r.output
    config = json.loads((out / "casme2" / "config.json").read_text())
    assert config["clips"] == want
    assert config["data_setup"].startswith(f"{want} clips (paper: 245)")


def test_paper_clip_set_refuses_the_2019_sheet(tmp_path):
    root = generate_dataset("casme2", tmp_path / "c", subjects=2, clips_per_class=1,
                            frame_size=(48, 48), length=(6, 7), seed=3).root
    cache = build_cache("casme2", root, tmp_path / "c.h5", options=BuildOptions(size=32)).cache
    r = _mer("table1", "--cache", str(cache), "--allow-random-init", "--model", "learnet",
             "--clips", "paper-casme2", "--out", str(tmp_path / "t"), *FAST)
    assert r.exit_code == 1
    assert "rows of CASME2-coding-20140508" in r.output and "20190701" in r.output


# --- 9: which pretrained weights a file holds -------------------------------------------

def _weights(tmp_path: Path, name: str) -> Path:
    model, _ = build_model(name, 5, tiny=True)
    path = tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return path


def test_a_weights_file_that_records_its_tag_is_normalised_by_it(casme2, tmp_path):
    path = _weights(tmp_path, "resnet34")
    (tmp_path / "resnet34.pth.json").write_text(json.dumps({"timm_name": "resnet34.tv_in1k",
                                                            "mean": [0.5, 0.5, 0.5],
                                                            "std": [0.5, 0.5, 0.5]}))
    out = tmp_path / "r"
    r = _mer("cv", "--cache", str(casme2), "--model", "resnet34", "--pretrained", str(path),
             "--no-checkpoints", "--out", str(out), *FAST)
    assert r.exit_code == 0, r.output
    config = json.loads((out / "config.json").read_text())
    assert "weights resnet34.tv_in1k" in config["setup"]["resnet34"]
    assert any("normalised with the mean [0.5, 0.5, 0.5]" in n for n in config["notes"])


def test_a_weights_file_that_records_nothing_is_said_and_another_arch_refused(casme2,
                                                                              tmp_path):
    path = _weights(tmp_path, "resnet34")
    out = tmp_path / "r"
    r = _mer("cv", "--cache", str(casme2), "--model", "resnet34", "--pretrained", str(path),
             "--no-checkpoints", "--out", str(out), *FAST)
    assert r.exit_code == 0, r.output
    config = json.loads((out / "config.json").read_text())
    assert "weights tag not recorded (normalised as resnet34.a1_in1k)" in \
        config["setup"]["resnet34"]
    assert "does not record which weights it holds" in r.output
    (tmp_path / "resnet34.pth.json").write_text('{"timm_name": "vgg19.tv_in1k"}')
    r = _mer("cv", "--cache", str(casme2), "--model", "resnet34", "--pretrained", str(path),
             "--out", str(tmp_path / "r2"), *FAST)
    assert r.exit_code == 1 and "another architecture than resnet34" in r.output


def test_pretrained_cfg_inside_the_file_is_read(tmp_path):
    from mer_di.training.models.provenance import provenance

    model, _ = build_model("vit_base_patch16_224", 5, tiny=True)
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": model.state_dict(),
                "pretrained_cfg": {"architecture": "vit_base_patch16_224",
                                   "tag": "augreg_in21k_ft_in1k", "mean": [0.1, 0.2, 0.3],
                                   "std": [0.4, 0.5, 0.6]}}, path)
    cfg = model_cfg("vit_base_patch16_224", tiny=True)
    found = provenance("vit", str(path), cfg, "vit_base_patch16_224.augreg2_in21k_ft_in1k")
    assert found.cfg.mean == (0.1, 0.2, 0.3) and found.cfg.std == (0.4, 0.5, 0.6)
    assert found.tag == "weights vit_base_patch16_224.augreg_in21k_ft_in1k"


# --- 10: datasets whose frames are not face crops ----------------------------------------

def test_samm_without_a_face_crop_is_warned(samm, tmp_path):
    out = tmp_path / "r"
    r = _mer("cv", "--cache", str(samm), "--model", "learnet", "--no-checkpoints", "--out",
             str(out), *FAST)
    assert r.exit_code == 0, r.output
    assert "a samm cache built with --crop none" in r.output and "--crop haar" in r.output
    config = json.loads((out / "config.json").read_text())
    assert any("--crop haar" in n for n in config["notes"])
    assert config["data_setup"].endswith("crop none")


# --- 4: each pretrained model built and read once per process ---------------------------

def test_pretrained_models_are_built_once_and_only_the_head_drawn_per_unit(tmp_path,
                                                                            monkeypatch):
    import mer_di.training.models.prototype as proto

    path = _weights(tmp_path, "resnet34")
    _PROTOTYPES.clear()
    builds = []
    real = proto.build_model
    monkeypatch.setattr(proto, "build_model",
                        lambda *a, **k: builds.append(a) or real(*a, **k))
    a, _, how = build_for_unit("resnet34", 3, 7, pretrained=str(path), tiny=True)
    b, _, _ = build_for_unit("resnet34", 3, 7, pretrained=str(path), tiny=True)
    c, _, _ = build_for_unit("resnet34", 3, 8, pretrained=str(path), tiny=True)
    assert how == "prototype" and len(builds) == 2  # the prototype, twice; then copies
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    head = [k for k in sa if k.startswith("fc.")]
    assert head and all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed, same model
    assert not all(torch.equal(sa[k], sc[k]) for k in head)  # another seed, another head
    body = [k for k in sa if not k.startswith("fc.")]
    assert all(torch.equal(sa[k], sc[k]) for k in body)  # the body is the file's
    state = torch.load(path, weights_only=True)
    assert all(torch.equal(sa[k], state[k]) for k in body)


# --- 6: a run prepares only the images its units read ------------------------------------

def test_a_run_prepares_only_the_images_it_reads(casme2):
    from types import SimpleNamespace

    from mer_di.training.data import load_caches
    from mer_di.training.samples import ImageBank, needed_images

    def plan(configs, input_="di", pair=False):
        spec = SimpleNamespace(input=input_, configs=configs)
        return SimpleNamespace(spec=spec, cfgs={"m": SimpleNamespace(pair=pair)})

    assert needed_images(plan(["baseline", "fliprot"])) == ("full",)
    assert needed_images(plan(["dualdi"])) == ("full", "onset", "offset")
    assert needed_images(plan(["baseline"], pair=True)) == ("full", "onset", "offset")
    assert needed_images(plan(["baseline"], input_="apex")) == ("apex_frame",)
    clips = load_caches([str(casme2)], "five")
    every = ImageBank(clips, 16, (0.5,) * 3, (0.5,) * 3)
    full = ImageBank(clips, 16, (0.5,) * 3, (0.5,) * 3, names=("full",))
    assert len(full.tensor) == len(clips) < len(every.tensor)
    assert torch.equal(full.tensor, every.tensor[:len(clips)])


# --- 5: --device is the local executor's -------------------------------------------------

def test_device_with_ray_is_refused_not_ignored(casme2, tmp_path):
    r = _mer("cv", "--cache", str(casme2), "--model", "learnet", "--executor", "ray",
             "--device", "cpu", "--out", str(tmp_path / "r"), *FAST)
    assert r.exit_code == 2 and "--device cpu applies to --executor local" in r.output
    assert not (tmp_path / "r").exists()


def test_a_flow_model_over_a_cache_without_flow_is_refused(casme2, tmp_path):
    r = _mer("cv", "--cache", str(casme2), "--model", "ststnet", "--out", str(tmp_path / "r"),
             *FAST)
    assert r.exit_code == 1 and "fed optical flow" in r.output
    assert not (tmp_path / "r").exists()
