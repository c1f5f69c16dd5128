"""``--apex-jitter K`` (issue 19.4a): the cache's phase images at shifted apexes and at the
spotted apex, made in the build's one pass; training's per-epoch draw of them for the
training clips of the dual-phase configurations and DIANet, never for validation or test
clips; older caches (no ``apex_jitter``) load, train and keep their clips."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mer_di.data_manifest import build_manifest
from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import CacheError, DataError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.pipeline.cache_reader import open_cache
from mer_di.pipeline.cli import main as mer_prep
from mer_di.pipeline.dynamic_image import clip_dynamic_images
from mer_di.pipeline.frames import finish_image, load_clip
from mer_di.pipeline.store import JITTER_PHASES, SPOTTED_PHASES
from mer_di.training import trainer
from mer_di.training.cli import main as mer_train
from mer_di.training.plan import CVSpec, plan_run
from mer_di.training.samples import jitter_draw, model_bank
from mer_di.training.units import Unit

K = 2


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """A small CASME II look-alike built twice at 32 px: without and with --apex-jitter 2;
    and its 'old' copy, a K=0 cache without the apex_jitter attribute (built before it)."""
    base = tmp_path_factory.mktemp("jitter")
    root = generate_dataset("casme2", base / "casme2", subjects=3, clips_per_class=2,
                            frame_size=(48, 48), length=(6, 10), seed=5).root
    k0 = build_cache("casme2", root, base / "k0.h5", options=BuildOptions(size=32)).cache
    k2 = build_cache("casme2", root, base / "k2.h5",
                     options=BuildOptions(size=32, apex_jitter=K)).cache
    old = base / "old.h5"
    shutil.copy(k0, old)
    with h5py.File(old, "a") as f:
        del f.attrs["apex_jitter"]
    return {"root": root, "k0": k0, "k2": k2, "old": old}


def _groups(path: Path):
    with h5py.File(path, "r") as f:
        for s in f:
            for c in f[s]:
                g = f[s][c]
                yield f"{s}/{c}", {n: g[n][()] for n in g}, dict(g.attrs)


def test_entry_k_is_the_onset_and_offset_and_invalid_shifts_are_zero(data):
    k0 = {key: images for key, images, _ in _groups(data["k0"])}
    for key, images, attrs in _groups(data["k2"]):
        for name in ("full", "onset", "offset", "apex_frame"):  # K changes none of them
            assert (name in images) == (name in k0[key])
            if name in images:
                assert images[name].tobytes() == k0[key][name].tobytes(), (key, name)
        t = int(attrs["offset"]) - int(attrs["onset"]) + 1
        apex = int(attrs["apex_used"]) - int(attrs["onset"])
        want = [s for s in range(-K, K + 1) if 0 < apex + s < t - 1]
        assert list(attrs["jitter_shifts"]) == want and attrs["jitter_shifts"].dtype == np.int64
        for name in JITTER_PHASES:
            stack = images[name]
            assert stack.shape == (2 * K + 1, 32, 32, 3) and stack.dtype == np.float32
            for j in range(2 * K + 1):
                assert (j - K in want) == bool(np.any(stack[j])), (key, name, j)
        if 0 in want:  # entry K: the onset and offset images, byte for byte
            assert images["jitter_onset"][K].tobytes() == images["onset"].tobytes()
            assert images["jitter_offset"][K].tobytes() == images["offset"].tobytes()
        spotted = int(attrs["spotted_apex"]) - int(attrs["onset"])
        inside = 0 < spotted < t - 1
        assert all((p in images) == inside for p in SPOTTED_PHASES), key
        if inside and spotted - apex in want:
            assert images["spotted_onset"].tobytes() == \
                images["jitter_onset"][spotted - apex + K].tobytes()
    with open_cache(data["k2"]) as c:  # the reader knows them
        assert c.apex_jitter == K and c.params["apex_jitter"] == str(K)
        clip = next(iter(c))
        assert set(JITTER_PHASES) <= set(clip.variants) and clip.jitter_shifts
    with open_cache(data["k0"]) as c:
        assert c.apex_jitter == 0 and all(not x.variants and not x.jitter_shifts for x in c)


def test_a_shifted_entry_is_the_phase_images_at_that_apex(data):
    """Entry j is the onset->(apex+j-K) and (apex+j-K)->offset image made as the cache's
    own phase images are (same kernel, finish_image's resize and channel order)."""
    rows = {r.key: r for r in build_manifest("casme2", data["root"]).rows if r.full_ok}
    key, images, attrs = next(g for g in _groups(data["k2"]) if -1 in g[2]["jitter_shifts"])
    row = rows[key]
    with ThreadPoolExecutor(1) as pool:
        clip = load_clip([(n, row.frame_path(n)) for n in range(row.onset, row.offset + 1)],
                         32, "none", pool)
    a = int(attrs["apex_used"]) - row.onset - 1
    made = clip_dynamic_images(clip.frames, a)
    assert finish_image(made.onset, 32, clip.grey).tobytes() == \
        images["jitter_onset"][K - 1].tobytes()
    assert finish_image(made.offset, 32, clip.grey).tobytes() == \
        images["jitter_offset"][K - 1].tobytes()


def test_old_cache_loads_keeps_its_clips_and_refuses_another_k(data, tmp_path):
    old = tmp_path / "old.h5"
    shutil.copy(data["old"], old)
    with open_cache(old) as c:
        assert c.apex_jitter == 0 and c.params["apex_jitter"] == "0"
    again = build_cache("casme2", data["root"], old, options=BuildOptions(size=32))
    assert again.built == 0 and again.reused == again.total  # its clips are kept as they are
    with pytest.raises(CacheError, match=r"apex_jitter: cache has 0, asked 2.*--rebuild"):
        build_cache("casme2", data["root"], old, options=BuildOptions(size=32, apex_jitter=2))
    with pytest.raises(CacheError, match="--apex-jitter 11"):
        build_cache("casme2", data["root"], old, options=BuildOptions(size=32, apex_jitter=11))
    result = CliRunner().invoke(mer_prep, ["build-cache", "--dataset", "casme2", "--root",
                                           str(data["root"]), "--out", str(old), "--size",
                                           "32", "--apex-jitter", "11"])
    assert result.exit_code == 2 and "0<=x<=10" in result.output


def _cv(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(mer_train, ["cv", "--quiet", "--tiny", "--epochs", "1",
                                            "--folds", "2", "--no-checkpoints", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_old_cache_trains_and_k0_runs_are_the_same_on_every_cache(data, tmp_path):
    """K = 0 (the default) leaves every run as it was: the same predictions on the old
    cache, the K=0 cache and the K=2 cache (whose dynamic images are the same bytes)."""
    preds = {}
    for name in ("old", "k0", "k2"):
        code, output = _cv("--cache", str(data[name]), "--model", "learnet", "--config",
                           "dualdi", "--out", str(tmp_path / name))
        assert code == 0, output
        preds[name] = pd.read_csv(tmp_path / name / "predictions.csv")
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["spec"]["apex_jitter"] == 0
        assert "apex jitter" not in config["setup"]["learnet"]
    pd.testing.assert_frame_equal(preds["old"], preds["k0"])
    pd.testing.assert_frame_equal(preds["old"], preds["k2"])


def test_a_cache_with_a_smaller_k_is_refused(data, tmp_path):
    for name, built in (("k0", "without --apex-jitter"), ("old", "without --apex-jitter"),
                        ("k2", "with --apex-jitter 2")):
        ask = 1 if name != "k2" else 3
        code, output = _cv("--cache", str(data[name]), "--model", "learnet", "--config",
                           "dualdi", "--apex-jitter", str(ask), "--out",
                           str(tmp_path / name))
        assert code == 1 and str(data[name]) in output and built in output, output
        assert not (tmp_path / name).exists()
    with pytest.raises(DataError, match="built with --apex-jitter 2"):
        plan_run(CVSpec([str(data["k2"])], ["learnet"], ["dualdi"], tiny=True, apex_jitter=3))


def _unit_inputs(cache: Path, model: str, config: str, k: int, monkeypatch):
    """What ``run_unit`` feeds fold 0 of seed 0: the training samples' images at epochs 1
    to 3, the validation and the test samples' images (as bytes of the model's input)."""
    plan = plan_run(CVSpec([str(cache)], [model], [config], folds=2, tiny=True,
                           apex_jitter=k, checkpoints=False))
    bank = model_bank(plan, plan.cfgs[model])
    seen = {}

    def fake_fit(model_, images, train, val, *args, **kwargs):
        seen["train"] = [images[(train.draw(e) if train.draw else train.index)].numpy()
                         for e in (1, 2, 3)]
        seen["val"] = images[val.index].numpy()
        return _Fit()

    def fake_predict(model_, images, samples, **kwargs):
        seen["test"] = images[samples.index].numpy()
        return np.zeros((len(samples), len(plan.clips.classes)), np.float32)

    monkeypatch.setattr(trainer, "fit", fake_fit)
    monkeypatch.setattr(trainer, "predict", fake_predict)
    trainer.run_unit(plan, Unit(model, config, 0, 0), bank)
    return seen


class _Fit:
    best_epoch = epochs_run = 1
    stopped_early = False
    history = [{"epoch": 1, "train_loss": 1.0, "lr": 1e-4, "val_loss": 1.0,
                "val_accuracy": 0.0}]


@pytest.mark.parametrize("model, config", [("learnet", "dualdi"), ("dianet", "baseline")])
def test_jitter_changes_only_training_samples(data, monkeypatch, model, config):
    plain = _unit_inputs(data["k2"], model, config, 0, monkeypatch)
    jittered = _unit_inputs(data["k2"], model, config, K, monkeypatch)
    # the test fold's and the validation split's inputs: byte-identical
    assert plain["test"].tobytes() == jittered["test"].tobytes()
    assert plain["val"].tobytes() == jittered["val"].tobytes()
    # the training samples: the same for K = 0 every epoch; with K, drawn anew each epoch
    assert all(x.tobytes() == plain["train"][0].tobytes() for x in plain["train"])
    assert all(x.shape == plain["train"][0].shape for x in jittered["train"])
    assert jittered["train"][0].tobytes() != plain["train"][0].tobytes()
    assert jittered["train"][1].tobytes() != jittered["train"][2].tobytes()
    again = _unit_inputs(data["k2"], model, config, K, monkeypatch)  # reproducible
    assert all(a.tobytes() == b.tobytes() for a, b in zip(again["train"], jittered["train"],
                                                          strict=True))


def test_jitter_leaves_baseline_of_single_image_models_alone(data, monkeypatch):
    plain = _unit_inputs(data["k2"], "learnet", "baseline", 0, monkeypatch)
    jittered = _unit_inputs(data["k2"], "learnet", "baseline", K, monkeypatch)
    for part in ("val", "test"):
        assert plain[part].tobytes() == jittered[part].tobytes()
    assert jittered["train"][1].tobytes() == plain["train"][0].tobytes()


def test_the_draw_takes_valid_shifts_only_and_is_seeded():
    valid = np.array([[0, 1, 1, 1, 0], [1, 0, 0, 0, 0], [0, 0, 1, 1, 1]], bool)
    draws = np.stack([jitter_draw(valid, 7, e) for e in range(1, 200)])
    assert valid[np.arange(3), draws].all()
    assert {int(x) for x in draws[:, 0]} == {1, 2, 3} and set(draws[:, 1]) == {0}
    assert np.array_equal(jitter_draw(valid, 7, 5), jitter_draw(valid, 7, 5))
    assert not np.array_equal(draws[:, 2], np.stack([jitter_draw(valid, 8, e)
                                                     for e in range(1, 200)])[:, 2])


def test_a_jittered_run_trains_and_says_so(data, tmp_path):
    out = tmp_path / "run"
    code, output = _cv("--cache", str(data["k2"]), "--model", "learnet", "--config",
                       "baseline", "--config", "dualdi", "--apex-jitter", "1",
                       "--out", str(out))
    assert code == 0, output
    assert "--apex-jitter 1: the training clips of learnet x dualdi" in output
    config = json.loads((out / "config.json").read_text())
    assert config["spec"]["apex_jitter"] == 1
    assert "apex jitter ±1 (dual-phase configs)" in config["setup"]["learnet"]
    assert "apex jitter ±1" in (out / "summary.md").read_text()
    assert len(pd.read_csv(out / "predictions.csv")) > 0


def test_jitter_flow_is_opencvs_at_each_shift_whole_build_or_added(tmp_path):
    """With --flow and --apex-jitter, jitter_flow_onset_apex entry j is the onset ->
    (apex + j - K) flow (DIS called directly on the frames), entry K the clip's own
    flow_onset_apex, invalid shifts zero; adding --flow to a jittered cache later makes
    the same bytes and keeps the dynamic images'."""
    import cv2

    from mer_di.pipeline.store import JITTER_FLOW

    size = 32
    root = generate_dataset("casme2", tmp_path / "casme2", subjects=2, clips_per_class=1,
                            frame_size=(size, size), length=(6, 9), seed=3).root
    whole = build_cache("casme2", root, tmp_path / "whole.h5", options=BuildOptions(
        size=size, flow="dis", apex_jitter=K)).cache
    added = tmp_path / "added.h5"
    build_cache("casme2", root, added, options=BuildOptions(size=size, apex_jitter=K))
    with h5py.File(added, "r") as f:
        before = {f"{s}/{c}/{n}": f[s][c][n][()].tobytes() for s in f for c in f[s]
                  for n in f[s][c]}
    report = build_cache("casme2", root, added, options=BuildOptions(
        size=size, flow="dis", apex_jitter=K))
    assert report.flow_added == report.flowed > 0
    rows = {r.key: r for r in build_manifest("casme2", root, classes="all").rows}

    def grey(row, n):
        return cv2.cvtColor(cv2.imread(str(row.frame_path(n))), cv2.COLOR_BGR2GRAY)

    checked = 0
    with h5py.File(whole, "r") as w, h5py.File(added, "r") as a:
        for s in w:
            for c in w[s]:
                gw, ga = w[s][c], a[s][c]
                for n in ga:  # the dynamic images (all that was there) kept as they were
                    if f"{s}/{c}/{n}" in before:
                        assert ga[n][()].tobytes() == before[f"{s}/{c}/{n}"], n
                if "flow_onset_apex" not in gw:
                    assert JITTER_FLOW not in gw
                    continue
                stack = gw[JITTER_FLOW][()]
                assert stack.shape == (2 * K + 1, size, size, 3)
                assert stack.tobytes() == ga[JITTER_FLOW][()].tobytes()
                np.testing.assert_array_equal(stack[K], gw["flow_onset_apex"][()])
                row, apex = rows[f"{s}/{c}"], int(gw.attrs["apex_used"])
                shifts = list(np.atleast_1d(gw.attrs["jitter_shifts"]))
                for j in range(2 * K + 1):
                    if j - K not in shifts:
                        assert not stack[j].any()
                        continue
                    ref = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(
                        grey(row, row.onset), grey(row, apex + j - K), None)
                    np.testing.assert_allclose(stack[j][..., :2], ref, atol=1e-5)
                    checked += 1
    assert checked >= 6
