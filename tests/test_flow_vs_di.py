"""DI against optical flow on identical folds (issue 19.3): look-alike CASME II, SAMM and
SMIC-HS caches built with --flow, the MEGC2019 composite protocol (--classes megc,
--protocol loso) run for a tiny STSTNet (optical flow) and a tiny LEARNet (dynamic
images), and ``mer-train report --baseline ststnet:baseline`` pairing them fold by fold;
pairs whose seeds or test clips differ are listed under "Not compared"."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from test_report import make_run

from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import ReportError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.report import make_report
from mer_di.training.report_paired import parse_baseline

DATASETS = ("casme2", "samm", "smic")
SUBJECTS = 2  # per dataset: 6 LOSO folds in all


def _cv(caches: list[Path], out: Path, *args: str) -> str:
    cmd = ["cv", "--quiet", "--tiny", "--classes", "megc", "--protocol", "loso", "--epochs",
           "1", "--batch-size", "8", "--no-checkpoints", "--out", str(out), *args]
    for cache in caches:
        cmd += ["--cache", str(cache)]
    result = CliRunner().invoke(mer_train, cmd)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def composite(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("flowvsdi")
    caches = []
    for i, dataset in enumerate(DATASETS):
        root = generate_dataset(dataset, base / dataset, subjects=SUBJECTS, clips_per_class=1,
                                frame_size=(40, 40), length=(6, 8), seed=3 + i).root
        caches.append(build_cache(dataset, root, base / f"{dataset}.h5",
                                  options=BuildOptions(size=32, flow="dis")).cache)
    flow, di = base / "ststnet", base / "learnet"
    flow_out = _cv(caches, flow, "--model", "ststnet", "--config", "baseline")
    di_out = _cv(caches, di, "--model", "learnet", "--config", "baseline", "--config",
                 "dualdi")
    report = base / "report"
    result = CliRunner().invoke(mer_train, [
        "report", str(di), str(flow), "--out", str(report), "--baseline", "baseline",
        "--baseline", "ststnet:baseline", "--bootstrap", "200", "--no-figures"])
    assert result.exit_code == 0, result.output
    return {"base": base, "caches": caches, "flow": flow, "di": di, "report": report,
            "output": result.output, "flow_out": flow_out, "di_out": di_out}


def _test_clips(run: Path) -> dict[tuple[int, int], frozenset]:
    preds = pd.read_csv(run / "predictions.csv", dtype={"subject": str, "clip": str})
    return {k: frozenset(zip(g["dataset"], g["subject"], g["clip"], strict=True))
            for k, g in preds.groupby(["seed", "fold"])}


def test_both_paths_train_on_identical_loso_folds(composite):
    assert "input: optical flow" in composite["flow_out"]
    assert "input: dynamic images" in composite["di_out"]
    flow, di = _test_clips(composite["flow"]), _test_clips(composite["di"])
    assert flow == di and len(flow) == SUBJECTS * len(DATASETS)  # one fold per subject
    assert {d for clips in flow.values() for d, _, _ in clips} == set(DATASETS)


def test_the_report_pairs_di_against_flow(composite):
    pairs = pd.read_csv(composite["report"] / "paired.csv")
    cross = pairs[pairs["against"] == "ststnet:baseline"]
    assert set(cross["status"]) == {"ok"}
    assert sorted(set(cross["config"])) == ["baseline", "dualdi"]
    assert cross["model"].str.startswith("learnet").all()
    assert cross["baseline_model"].str.startswith("ststnet").all()
    assert set(cross["baseline_run"]) == {str(composite["flow"])}
    assert set(cross["run"]) == {str(composite["di"])}
    assert (cross["n"] == SUBJECTS * len(DATASETS)).all()
    assert set(cross["metric"]) == {"uf1", "accuracy"}
    # the within-model comparison the report already made is still there
    own = pairs[pairs["against"] == "baseline"]
    assert list(own[own["status"] == "ok"]["config"].unique()) == ["dualdi"]
    md = (composite["report"] / "paired.md").read_text()
    assert "Paired comparisons against ststnet baseline" in md
    assert "| baseline vs ststnet baseline | UF1 | 6 |" in md
    assert "| dualdi vs ststnet baseline | UF1 | 6 |" in md
    assert "| dualdi vs baseline | UF1 | 6 |" in md
    tex = (composite["report"] / "paired.tex").read_text()
    assert tex.count("\\begin{table}") == 2 and "tab:mer-di-paired-2" in tex
    assert "against ststnet baseline" in tex
    # both paths side by side in one table, the composite's pooled column included
    table = (composite["report"] / "table.md").read_text()
    assert "Composite UF1" in table and "| ststnet (" in table and "| learnet (" in table
    assert "not one setup" not in table


def test_the_paired_estimate_is_the_fold_by_fold_difference(composite):
    """Δ equals the mean over folds of UF1(learnet baseline) - UF1(ststnet baseline),
    computed here from the two runs' predictions with scikit-learn."""
    from sklearn.metrics import f1_score

    def per_fold(run: Path) -> pd.Series:
        p = pd.read_csv(run / "predictions.csv")
        p = p[p["config"] == "baseline"]
        return p.groupby("fold").apply(lambda g: f1_score(
            g["label"], g["pred"], labels=range(3), average="macro", zero_division=0),
            include_groups=False)

    want = (per_fold(composite["di"]) - per_fold(composite["flow"])).mean()
    pairs = pd.read_csv(composite["report"] / "paired.csv")
    row = pairs[(pairs["against"] == "ststnet:baseline") & (pairs["config"] == "baseline")
                & (pairs["metric"] == "uf1")].iloc[0]
    assert row["estimate"] == pytest.approx(want, abs=1e-9)


def test_pairs_of_other_seeds_or_clips_are_not_compared(composite, tmp_path):
    caches, flow = composite["caches"], composite["flow"]
    seed1 = tmp_path / "seed1"
    _cv(caches, seed1, "--model", "learnet", "--config", "baseline", "--seed", "1")
    preds = pd.read_csv(flow / "predictions.csv", dtype={"subject": str, "clip": str})
    listed = tmp_path / "fewer.csv"
    keep = preds[["dataset", "subject", "clip"]].drop_duplicates().iloc[1:]  # one clip less
    keep.to_csv(listed, index=False)
    fewer = tmp_path / "fewer"
    _cv(caches, fewer, "--model", "learnet", "--config", "baseline", "--clips", str(listed))
    reasons = {}
    for other in (seed1, fewer):  # one report each: a table holds a model x config once
        rep = make_report([other, flow], out=tmp_path / f"rep-{other.name}", n_boot=100,
                          baseline="ststnet:baseline", figures=False)
        (row,) = rep.paired.to_dict("records")
        assert row["status"] == "skipped" and "Not compared:" in rep.markdown
        reasons[other.name] = row["reason"]
    assert "seeds differ" in reasons["seed1"]
    assert "the test clips of 1 of 6 (seed, fold) pairs differ" in reasons["fewer"]


# --- the --baseline forms, on run folders written without training -----------------------

def test_model_config_within_one_run(tmp_path):
    run = make_run(tmp_path / "run", models=("vggface", "learnet"),
                   configs=("baseline", "dualdi"), seeds=(0, 1))
    rep = make_report([run], n_boot=100, baseline=["vggface:baseline"], figures=False)
    ok = rep.paired[rep.paired["status"] == "ok"]
    assert list(zip(ok["model"], ok["config"], strict=True))[::2] == [
        ("vggface", "dualdi"), ("learnet", "baseline"), ("learnet", "dualdi")]
    assert set(ok["baseline_model"]) == {"vggface"} and (ok["n"] == 10).all()
    assert "| learnet | baseline vs vggface baseline | UF1 | 10 |" in rep.markdown
    # given twice, made once
    again = make_report([run], out=tmp_path / "again", n_boot=100,
                        baseline=["vggface:baseline", "vggface:baseline"], figures=False)
    assert len(again.paired) == len(rep.paired)


def test_bad_baselines_are_refused(tmp_path):
    run = make_run(tmp_path / "run", models=("vggface",), configs=("baseline", "dualdi"),
                   seeds=(0,))
    with pytest.raises(ReportError, match="no run has the model ststnet"):
        make_report([run], baseline="ststnet:baseline", figures=False)
    with pytest.raises(ReportError, match="no run has the configuration fliprot"):
        make_report([run], baseline="vggface:fliprot", figures=False)
    with pytest.raises(ReportError, match="MODEL:CONFIG"):
        make_report([run], baseline=":baseline", figures=False)
    assert parse_baseline("hf-hub:timm/x:dualdi").model == "hf-hub:timm/x"
    result = CliRunner().invoke(mer_train, ["report", str(run), "--baseline", "nope:baseline",
                                            "--no-figures"])
    assert result.exit_code == 1 and "no run has the model nope" in result.output
