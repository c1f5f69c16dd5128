"""``mer-train report`` and ``mer_di.training.stats`` on run folders written here from seeded random
predictions (no training)."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from mer_di.training.cli import main as mer_train
from mer_di.training.report import ReportError, load_run, make_report, safe_name
from mer_di.training.results import PRED_COLUMNS, summarise
from mer_di.training.stats import (
    by_seed,
    hierarchical_bootstrap_ci,
    hierarchical_mean,
    paired_differences,
    sign_flip_p,
    win_tie_loss,
)

CLASSES = ["happiness", "disgust", "surprise", "repression", "others"]
K = len(CLASSES)


def make_run(path: Path, *, datasets=("casme2",), models=("vggface", "learnet"),
             configs=("baseline", "dualdi"), seeds=(0, 1), n_folds=5, clips=30,
             skill=None, same_as=None, fold_seed=0, protocol="kfold", input="di",
             data_seed=1, classes=CLASSES, class_set="five") -> Path:
    """A finished run folder: config.json, units/*/scores.json, predictions.csv, epochs.csv.

    Clips and their labels depend on ``datasets`` and ``clips`` only; the folds of a seed on
    (``fold_seed``, seed) only; predictions are correct with probability ``skill[config]``;
    ``same_as={"fliprot": "baseline"}`` copies a configuration's predictions."""
    skill, same_as = skill or {}, same_as or {}
    K = len(classes)
    rng = np.random.default_rng(data_seed)
    keys = [(d, f"sub{i % 7:02d}", f"EP{i:02d}_{d}") for d in datasets for i in range(clips)]
    labels = np.arange(len(keys)) % K
    n = len(keys)
    folds = {s: np.random.default_rng(1000 * fold_seed + s).permutation(n) % n_folds
             for s in seeds}
    preds, epochs, units, drawn = [], [], [], {}
    for model, config, seed in itertools.product(models, configs, seeds):
        source = same_as.get(config, config)
        if (model, source, seed) not in drawn:
            right = rng.random(n) < skill.get(source, 0.4)
            wrong = (labels + rng.integers(1, K, n)) % K
            drawn[model, source, seed] = np.where(right, labels, wrong)
        pred = drawn[model, source, seed]
        for i, (d, subject, clip) in enumerate(keys):
            preds.append({"model": model, "config": config, "seed": seed,
                          "fold": int(folds[seed][i]), "dataset": d, "subject": subject,
                          "clip": clip, "label": int(labels[i]), "pred": int(pred[i]),
                          "label_name": classes[labels[i]], "pred_name": classes[pred[i]]})
        for fold in range(n_folds):
            units.append(f"{model}__{config}__seed{seed}__fold{fold:02d}")
            val = 1.6 + rng.normal(0, 0.05, int(rng.integers(3, 7)))
            best = val < np.minimum.accumulate(np.r_[np.inf, val[:-1]])
            for e, v in enumerate(val):
                epochs.append({"model": model, "config": config, "seed": seed, "fold": fold,
                               "epoch": e + 1, "train_loss": 1.6 - 0.05 * e, "lr": 1e-4,
                               "val_loss": v, "val_accuracy": 0.3, "best": int(best[e]),
                               "seconds": 0.1})
    path.mkdir(parents=True)
    caches = [f"{d}.h5" for d in datasets]
    config = {"spec": {"caches": caches, "models": list(models), "configs": list(configs),
                       "protocol": protocol, "folds": n_folds, "seeds": list(seeds),
                       "classes": class_set, "train": {}, "input": input},
              "caches_sha256": {c: f"sha-{c}" for c in caches}, "classes": list(classes),
              "clips": n, "units": units, "skipped": []}
    (path / "config.json").write_text(json.dumps(config))
    for u in units:
        (path / "units" / u).mkdir(parents=True)
        (path / "units" / u / "scores.json").write_text("{}")
    pd.DataFrame(preds)[list(PRED_COLUMNS)].to_csv(path / "predictions.csv", index=False)
    pd.DataFrame(epochs).to_csv(path / "epochs.csv", index=False)
    return path


def _sk(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: y_pred has classes absent from y_true
        return {"accuracy": accuracy_score(y, p), "uf1": f1_score(y, p, average="macro"),
                "uar": balanced_accuracy_score(y, p)}


def _reference(preds: pd.DataFrame) -> dict[str, float]:
    """Mean/std over folds and pooled per seed (mean/std over seeds) by sklearn."""
    per_fold = [_sk(g["label"].to_numpy(), g["pred"].to_numpy())
                for _, g in preds.groupby(["seed", "fold"])]
    pooled = [_sk(g["label"].to_numpy(), g["pred"].to_numpy())
              for _, g in preds.groupby("seed")]
    out = {}
    for m in ("accuracy", "uf1", "uar"):
        v = np.array([s[m] for s in per_fold])
        w = np.array([s[m] for s in pooled])
        out[f"{m}_mean"], out[f"{m}_std"] = v.mean(), v.std(ddof=1)
        out[f"pooled_{m}"] = w.mean()
        out[f"pooled_{m}_std"] = w.std(ddof=1) if len(w) > 1 else 0.0
    return out


def test_table_equals_sklearn_and_summary(tmp_path):
    run = make_run(tmp_path / "run", skill={"baseline": 0.4, "dualdi": 0.6})
    rep = make_report([run], n_boot=200, figures=False)
    preds = pd.read_csv(run / "predictions.csv")
    summary = summarise(preds, K)
    wide = pd.read_csv(run / "report" / "table.csv")
    assert list(wide["model"]) == ["vggface", "vggface", "learnet", "learnet"]
    assert list(wide["config"]) == ["baseline", "dualdi"] * 2
    for r in rep.table.to_dict("records"):
        g = preds[(preds["model"] == r["model"]) & (preds["config"] == r["config"])]
        s = summary[(summary["model"] == r["model"]) & (summary["config"] == r["config"])]
        w = wide[(wide["model"] == r["model"]) & (wide["config"] == r["config"])]
        for col, value in _reference(g).items():
            assert r[col] == pytest.approx(value, abs=1e-12), col
            assert r[col] == s[col].item()  # the same numbers as the run's summary.csv
            assert w[f"casme2.{col}"].item() == pytest.approx(r[col], abs=1e-15)
        assert r["folds"] == 10 and r["seeds"] == 2
    md = (run / "report" / "table.md").read_text()
    assert "| vggface | dualdi |" in md and "CASME II UF1" in md
    r = rep.table.iloc[0]
    assert f"{100 * r['uf1_mean']:.2f} ± {100 * r['uf1_std']:.2f}" in md


def test_per_dataset_columns(tmp_path):
    run = make_run(tmp_path / "megc", datasets=("casme2", "samm"), models=("resnet34",),
                   configs=("baseline",), seeds=(0,), clips=25)
    rep = make_report([run], n_boot=100, figures=False)
    preds = pd.read_csv(run / "predictions.csv")
    assert list(rep.table["dataset"]) == ["casme2", "samm", "all"]
    for r in rep.table.to_dict("records"):
        sub = preds if r["dataset"] == "all" else preds[preds["dataset"] == r["dataset"]]
        for col, value in _reference(sub).items():
            assert r[col] == pytest.approx(value, abs=1e-12), (r["dataset"], col)
    whole = summarise(preds, K).iloc[0]
    assert rep.table.iloc[2]["uf1_mean"] == whole["uf1_mean"]
    wide = pd.read_csv(run / "report" / "table.csv")
    assert {"casme2.uar_mean", "samm.uar_mean", "all.pooled_uar"} <= set(wide.columns)
    assert "SAMM Acc" in rep.markdown and "Composite UAR" in rep.markdown


def test_runs_combine_and_apex_is_tagged(tmp_path):
    casme = make_run(tmp_path / "casme", models=("vggface",), seeds=(0,))
    samm = make_run(tmp_path / "samm", datasets=("samm",), models=("vggface",), seeds=(0,))
    apex = make_run(tmp_path / "apex", models=("vggface",), configs=("baseline",),
                    seeds=(0,), input="apex")
    rep = make_report([casme, samm, apex], out=tmp_path / "rep", n_boot=100, figures=False)
    wide = pd.read_csv(tmp_path / "rep" / "table.csv")
    assert list(zip(wide["model"], wide["config"], strict=True)) == [
        ("vggface", "baseline"), ("vggface", "dualdi"), ("vggface (apex frame)", "baseline")]
    assert wide["casme2.run"].tolist()[:2] == [str(casme)] * 2
    assert wide["samm.run"].tolist()[:2] == [str(samm)] * 2
    assert wide["samm.uf1_mean"].isna().tolist() == [False, False, True]
    samm_preds = pd.read_csv(samm / "predictions.csv")
    ref = _reference(samm_preds[samm_preds["config"] == "dualdi"])
    assert wide["samm.uf1_mean"][1] == pytest.approx(ref["uf1_mean"], abs=1e-12)
    assert "| vggface (apex frame) | baseline |" in rep.markdown
    # each data set's dualdi is paired with its own run's baseline
    ok = rep.paired[rep.paired["status"] == "ok"]
    assert sorted(set(zip(ok["run"], ok["baseline_run"], strict=True))) == sorted(
        [(str(casme), str(casme)), (str(samm), str(samm))])


def test_a_column_says_what_its_rows_are_over(tmp_path):
    a = make_run(tmp_path / "a", models=("vggface",), seeds=(0,))
    b = make_run(tmp_path / "b", models=("learnet",), seeds=(0,))
    rep = make_report([a, b], out=tmp_path / "rep", n_boot=100, figures=False)
    assert "- CASME II: every row over the same 30 clips (set " in rep.markdown
    assert "class set five (happiness, disgust, surprise, repression, others)" in rep.markdown
    assert "[a]" not in rep.markdown and rep.warnings == []
    wide = pd.read_csv(tmp_path / "rep" / "table.csv")
    assert wide["casme2.clips"].tolist() == [30] * 4
    assert wide["casme2.class_set"].tolist() == ["five"] * 4


@pytest.mark.parametrize("other", [
    {"classes": ["negative", "positive", "surprise"], "class_set": "megc"},  # classes
    {"clips": 25},  # clips
])
def test_a_column_of_other_class_sets_or_clips_is_marked(tmp_path, other):
    a = make_run(tmp_path / "a", models=("vggface",), seeds=(0,))
    b = make_run(tmp_path / "b", models=("learnet",), seeds=(0,), **other)
    rep = make_report([a, b], out=tmp_path / "rep", n_boot=100, figures=False)
    assert "**CASME II: not one setup.**" in rep.markdown
    table = rep.markdown.split("Paired comparisons")[0].splitlines()
    vgg = [line for line in table if line.startswith("| vggface | baseline |")]
    learnet = [line for line in table if line.startswith("| learnet | baseline |")]
    assert len(vgg) == len(learnet) == 2  # mean over folds; pooled
    assert all(r.count("[a]") == 3 and "[b]" not in r for r in vgg)
    assert all(r.count("[b]") == 3 and "[a]" not in r for r in learnet)
    assert len(rep.warnings) == 1 and "not comparable" in rep.warnings[0]
    result = CliRunner().invoke(mer_train, ["report", str(a), str(b), "--out",
                                            str(tmp_path / "cli"), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "warning: the CASME II column mixes rows of 2" in result.output


def test_same_model_config_dataset_twice_is_an_error(tmp_path):
    a = make_run(tmp_path / "a", models=("vggface",), seeds=(0,))
    b = make_run(tmp_path / "b", models=("vggface", "learnet"), seeds=(0,))
    with pytest.raises(ReportError, match="vggface x baseline on casme2 is in both") as exc:
        make_report([a, b], n_boot=100, figures=False)
    assert str(a) in str(exc.value) and str(b) in str(exc.value)


# --- statistics -------------------------------------------------------------------------

def test_sign_flip_exact_small_cases():
    assert sign_flip_p([1.0, 2.0, 3.0]) == 0.25  # |T*| >= |T| only for all + and all -
    assert sign_flip_p(np.array([0.3, 0.1, 0.2, 0.05, 0.4])) == 0.0625
    assert sign_flip_p([[0.0, 0.0, 0.0, 0.0, 0.0]]) == 1.0
    # [1, -2, 3]: T = 2/3; patterns with |sum| >= 2: +-(1,-2,3), +-(1,2,3), +-(-1,2,3) -> 6/8
    assert sign_flip_p([1.0, -2.0, 3.0]) == 0.75
    # two seeds, weights 1/4 and 1/2: T = (1+1)/4 + 3/2 = 2; only +-all reach it -> 2/8
    assert sign_flip_p([[1.0, 1.0], [3.0]]) == 0.25


def test_sign_flip_random_above_16():
    d = np.full(20, 0.1)
    assert sign_flip_p(d, n_perm=999, seed=3) == pytest.approx(1 / 1000)
    mixed = np.random.default_rng(0).normal(0, 1, 40)
    p = sign_flip_p(mixed, n_perm=2000, seed=1)
    assert p == sign_flip_p(mixed, n_perm=2000, seed=1) and 0.05 < p <= 1


def test_hierarchical_mean_and_bootstrap():
    groups = [np.array([0.1, 0.2, 0.3]), np.array([0.5, -0.1])]
    assert hierarchical_mean(groups) == pytest.approx((0.2 + 0.2) / 2)
    low, high = hierarchical_bootstrap_ci(groups, 2000, seed=5)
    assert low <= hierarchical_mean(groups) <= high
    assert (low, high) == hierarchical_bootstrap_ci(groups, 2000, seed=5)
    assert (low, high) != hierarchical_bootstrap_ci(groups, 2000, seed=6)
    assert hierarchical_bootstrap_ci([[0.0] * 5], 500) == (0.0, 0.0)
    # one seed: the ordinary bootstrap of a mean, sd ~ sd(d, ddof=0) / sqrt(n)
    d = np.random.default_rng(2).normal(0, 1, 40)
    low, high = hierarchical_bootstrap_ci(d, 20_000, seed=0)
    assert (high - low) / (2 * 1.96 * d.std() / np.sqrt(len(d))) == pytest.approx(1, abs=0.06)
    # seeds that disagree: the seed stage draws (A, A), (A, B), (B, B) -> about [-1, 1]
    low, high = hierarchical_bootstrap_ci([np.full(5, 1.0), np.full(5, -1.0)], 4000, seed=0)
    assert low == pytest.approx(-1) and high == pytest.approx(1)


def test_paired_differences_checks_the_folds():
    a = pd.DataFrame({"seed": [0, 0, 1, 1], "fold": [0, 1, 0, 1], "uf1": [.5, .6, .7, .4]})
    b = pd.DataFrame({"seed": [1, 1, 0, 0], "fold": [1, 0, 1, 0], "uf1": [.3, .6, .6, .2]})
    d = paired_differences(a, b, "uf1")
    assert d["diff"].tolist() == pytest.approx([0.3, 0.0, 0.1, 0.1])
    assert hierarchical_mean(by_seed(d)) == pytest.approx((0.15 + 0.1) / 2)
    assert win_tie_loss(d["diff"].to_numpy()) == (3, 1, 0)
    with pytest.raises(ValueError, match="seed 1 fold 1 only in the baseline"):
        paired_differences(a.iloc[:3], b, "uf1")


# --- paired comparisons in the report ---------------------------------------------------

def _fold_metric(preds: pd.DataFrame, metric: str) -> pd.Series:
    return preds.groupby(["seed", "fold"]).apply(
        lambda g: _sk(g["label"].to_numpy(), g["pred"].to_numpy())[metric])


def test_paired_estimates(tmp_path):
    run = make_run(tmp_path / "run", models=("vggface",),
                   configs=("dualdi", "baseline", "fliprot"), seeds=(0, 1, 2),
                   skill={"baseline": 0.35, "dualdi": 0.7}, same_as={"fliprot": "baseline"})
    rep = make_report([run], n_boot=500, seed=4, figures=False)
    preds = pd.read_csv(run / "predictions.csv")
    res = rep.paired.set_index(["config", "metric"])
    for metric in ("uf1", "accuracy"):
        diff = (_fold_metric(preds[preds["config"] == "dualdi"], metric)
                - _fold_metric(preds[preds["config"] == "baseline"], metric))
        r = res.loc[("dualdi", metric)]
        assert r["estimate"] == pytest.approx(diff.groupby(level="seed").mean().mean(),
                                              abs=1e-12)
        assert r["n"] == 15 and r["seeds"] == 3 and r["p_method"] == "exact"
        assert r["ci_low"] <= r["estimate"] <= r["ci_high"]
        assert (r["won"], r["tied"], r["lost"]) == win_tie_loss(diff.to_numpy())
        same = res.loc[("fliprot", metric)]
        assert (same["estimate"], same["p"], same["tied"]) == (0.0, 1.0, 15)
        assert same["ci_low"] == same["ci_high"] == 0.0
    assert list(rep.paired["config"]) == ["fliprot", "fliprot", "dualdi", "dualdi"]
    again = make_report([run], out=tmp_path / "again", n_boot=500, seed=4, figures=False)
    pd.testing.assert_frame_equal(rep.paired, again.paired)
    md = (run / "report" / "paired.md").read_text()
    assert "2/2^n (0.0625 for 5 folds" in md and "sign-flip" in md
    assert "| vggface | dualdi vs baseline | UF1 | 15 |" in md


def test_unpaired_runs_are_skipped_with_a_reason(tmp_path):
    base = make_run(tmp_path / "base", models=("vggface",), configs=("baseline",), seeds=(0,))
    other = make_run(tmp_path / "other", models=("vggface",), configs=("dualdi",), seeds=(0,),
                     fold_seed=1)
    rep = make_report([base, other], out=tmp_path / "r1", n_boot=100, figures=False)
    (row,) = rep.paired.to_dict("records")
    assert row["status"] == "skipped" and "test clips" in row["reason"]
    assert "Not compared:" in rep.markdown
    loso = make_run(tmp_path / "loso", models=("vggface",), configs=("dualdi",), seeds=(0,),
                    protocol="loso")
    rep = make_report([base, loso], out=tmp_path / "r2", n_boot=100, figures=False)
    assert "protocol differ" in rep.paired["reason"].item()
    same = make_run(tmp_path / "same", models=("vggface",), configs=("dualdi",), seeds=(0,))
    rep = make_report([base, same], out=tmp_path / "r3", n_boot=100, figures=False)
    assert set(rep.paired["status"]) == {"ok"} and set(rep.paired["baseline_run"]) == {
        str(base)}
    with pytest.raises(ReportError, match="--baseline fliprot: no run has"):
        make_report([base, same], baseline="fliprot", figures=False)


# --- figures and the command ------------------------------------------------------------

def test_figures_are_images(tmp_path):
    from matplotlib.image import imread

    run = make_run(tmp_path / "run", models=("learnet",), configs=("baseline",
                                                                   "dualdi+fliprot"))
    rep = make_report([run], n_boot=100)
    pngs = sorted(p.name for p in rep.files if p.suffix == ".png")
    assert pngs == ["confusion_run_learnet_baseline.png",
                    "confusion_run_learnet_dualdi-fliprot.png",
                    "curves_run_learnet_baseline.png", "curves_run_learnet_dualdi-fliprot.png"]
    from mer_di.training.report import _file_part

    long = "resnet34 (" + ", ".join(["tiny", "random init", "val split 20%"] * 20) + ")"
    assert len(_file_part(long)) < 30 and _file_part(long) != _file_part(long + " ")
    for name in pngs:
        image = imread(run / "report" / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0  # not blank
    assert safe_name("learnet (apex frame)") == "learnet-apex-frame"


def test_cli_report(tmp_path):
    run = make_run(tmp_path / "run", models=("vggface",), seeds=(0,))
    result = CliRunner().invoke(mer_train, ["report", str(run), "--bootstrap", "300"])
    assert result.exit_code == 0, result.output
    assert "| vggface | dualdi |" in result.output and "CASME II UF1" in result.output
    assert "dualdi vs baseline" in result.output
    assert (run / "report" / "table.md").is_file() and (run / "report" / "paired.csv").is_file()


def test_cli_refuses_unfinished_and_other_folders(tmp_path):
    run = make_run(tmp_path / "run", models=("vggface",), configs=("baseline",), seeds=(0,))
    (run / "units" / "vggface__baseline__seed0__fold03" / "scores.json").unlink()
    result = CliRunner().invoke(mer_train, ["report", str(run)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{run}: the run is not finished (1 of 5 folds missing" in result.output
    assert "--resume" in result.output
    run2 = make_run(tmp_path / "run2", models=("vggface",), configs=("baseline",), seeds=(0,))
    (run2 / "predictions.csv").unlink()
    result = CliRunner().invoke(mer_train, ["report", str(run2)])
    assert result.exit_code != 0 and "no predictions.csv" in result.output
    assert "--resume" in result.output
    for folder, message in ((tmp_path / "nowhere", "no such folder"),
                            (tmp_path, "is not a run folder")):
        result = CliRunner().invoke(mer_train, ["report", str(folder)])
        assert result.exit_code != 0 and message in result.output
    with pytest.raises(ReportError, match="not finished"):
        load_run(run)
