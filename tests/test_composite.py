"""Combined datasets (issue 12.4): the MEGC-style composite under LOSO with subjects per
dataset, ``--clips`` lists (MEGC's own file, both subject spellings, disagreeing labels,
clips the caches lack), ``--protocol lodo``, the class set a run takes by default, and the
report's row per dataset beside the composite's."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mer_di.data_manifest.synth import generate_dataset
from mer_di.errors import DataError
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.pipeline.cache_reader import open_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.cliplist import loose, match_clips, read_clip_list

SMALL = {"clips_per_class": 1, "frame_size": (48, 48), "length": (6, 9)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("comp")
    out = {}
    for i, dataset in enumerate(("casme2", "samm", "smic")):
        root = generate_dataset(dataset, base / dataset, subjects=3, seed=20 + i, **SMALL).root
        out[dataset] = build_cache(dataset, root, base / f"{dataset}.h5",
                                   options=BuildOptions(size=32)).cache
    return out


def _cv(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(mer_train, ["cv", "--quiet", "--tiny", "--model", "learnet",
                                            "--config", "baseline", "--epochs", "1",
                                            "--no-checkpoints", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _clips(cache: Path) -> list[tuple[str, str, str, str]]:
    with open_cache(cache) as c:
        return [(clip.dataset, clip.subject, clip.clip, clip.emotion) for clip in c]


def test_loose_names_match_both_spellings():
    assert loose("s01_ne_01") == loose("s1_ne_01") == "s1_ne_1"
    assert loose("sub01") == "sub1" and loose("EP02_01f") == "ep2_1f"
    m = match_clips([], [])
    assert m.keep == {} and m.missing == []


def test_composite_loso_subjects_per_dataset_and_report_rows(caches, tmp_path):
    out = tmp_path / "megc"
    code, output = _cv("--cache", str(caches["casme2"]), "--cache", str(caches["samm"]),
                       "--cache", str(caches["smic"]), "--classes", "megc", "--protocol",
                       "loso", "--out", str(out))
    assert code == 0, output
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    # one fold per (dataset, subject): CASME II's sub01 and SAMM's 006 are different people
    per_fold = preds.groupby("fold")[["dataset", "subject"]].nunique()
    assert (per_fold == 1).all().all()
    n_subjects = preds.groupby("dataset")["subject"].nunique().sum()
    assert preds["fold"].nunique() == n_subjects
    report = CliRunner().invoke(mer_train, ["report", str(out), "--out", str(tmp_path / "r"),
                                            "--no-figures", "--bootstrap", "50"])
    assert report.exit_code == 0, report.output
    table = pd.read_csv(tmp_path / "r" / "table.csv")
    datasets = {c.split(".")[0] for c in table.columns if "." in c}
    assert {"casme2", "samm", "smic", "all"} <= datasets
    with open_cache(caches["smic"]) as c:  # SMIC annotates no apex: every one spotted
        assert {clip.apex_source for clip in c} == {"spotted"}
        assert all(clip.phases == ("full", "onset", "offset") for clip in c)
    # the composite's pooled UF1 is over every fold's predictions together
    from sklearn.metrics import f1_score

    want = f1_score(preds["label"], preds["pred"], average="macro")
    assert table["all.pooled_uf1"].iloc[0] == pytest.approx(want)


def test_lodo_leaves_one_dataset_out(caches, tmp_path):
    out = tmp_path / "lodo"
    code, output = _cv("--cache", str(caches["casme2"]), "--cache", str(caches["samm"]),
                       "--protocol", "lodo", "--folds", "3", "--out", str(out))
    assert code == 0, output
    assert "--folds 3 is ignored: --protocol lodo has one fold per dataset" in output
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    assert preds.groupby("fold")["dataset"].nunique().eq(1).all()
    assert sorted(preds.groupby("fold")["dataset"].first()) == ["casme2", "samm"]
    code, output = _cv("--cache", str(caches["casme2"]), "--cache", str(caches["samm"]),
                       "--cache", str(caches["smic"]), "--protocol", "lodo", "--out",
                       str(tmp_path / "three"))
    assert code == 0, output
    config = json.loads((out / "config.json").read_text())
    assert config["spec"]["classes"] == "megc"  # several datasets: the set across them
    code, output = _cv("--cache", str(caches["casme2"]), "--protocol", "lodo",
                       "--out", str(tmp_path / "one"))
    assert code == 1 and "needs caches of two or more datasets" in output
    assert not (tmp_path / "one").exists()


def test_default_class_set_is_the_datasets_usual_one(caches, tmp_path):
    out = tmp_path / "run"
    code, output = _cv("--cache", str(caches["casme2"]), "--protocol", "subject-kfold",
                       "--folds", "2", "--out", str(out))
    assert code == 0, output
    assert json.loads((out / "config.json").read_text())["spec"]["classes"] == "five"


def _write_list(path: Path, rows: list[str], header: str | None = None) -> Path:
    path.write_text("".join(f"{r}\n" for r in ([header] if header else []) + rows))
    return path


MEGC_INDEX = {"negative": 0, "positive": 1, "surprise": 2}


def test_clips_restricts_a_run_and_reports_disagreeing_labels(caches, tmp_path):
    from mer_di.data_manifest.classes import map_label

    rows, wanted = [], set()
    megc = [(d, s, c, map_label(d, "megc", e)) for dataset in ("casme2", "samm")
            for d, s, c, e in _clips(caches[dataset]) if map_label(d, "megc", e)]
    for i, (d, subject, clip, label) in enumerate(megc):
        if i % 3 == 2:
            continue  # every third clip is left out of the list
        wanted.add((d, subject, clip))
        rows.append(f"{d},{subject},{clip},{MEGC_INDEX[label]}")
    first = rows[0].rsplit(",", 1)
    rows[0] = f"{first[0]},{(int(first[1]) + 1) % 3}"  # the list disagrees on one label
    listed = _write_list(tmp_path / "list.csv", rows)
    out = tmp_path / "listed"
    code, output = _cv("--cache", str(caches["casme2"]), "--cache", str(caches["samm"]),
                       "--classes", "megc", "--protocol", "loso", "--clips", str(listed),
                       "--out", str(out))
    assert code == 0, output
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    assert set(zip(preds["dataset"], preds["subject"], preds["clip"], strict=True)) == wanted
    d, subject, clip = rows[0].split(",")[:3]
    assert f"{d} {subject}/{clip}: {listed} (line 1) says" in output
    notes = json.loads((out / "config.json").read_text())["notes"]
    assert any(f"{subject}/{clip}" in n and "the sheet's label is used" in n for n in notes)

    missing = _write_list(tmp_path / "missing.csv", rows + ["samm,099,099_9_9,0"])
    code, output = _cv("--cache", str(caches["casme2"]), "--cache", str(caches["samm"]),
                       "--classes", "megc", "--clips", str(missing), "--out",
                       str(tmp_path / "m"))
    assert code == 1 and "samm 099/099_9_9 (line" in output and "are in no cache" in output
    assert not (tmp_path / "m").exists()


def test_clip_list_with_a_header_and_zero_padded_names(caches, tmp_path):
    clips = [c for c in _clips(caches["casme2"])][:4]
    padded = [f"{d},{s.replace('sub', 'sub0')},{c}" for d, s, c, _ in clips]  # sub001
    listed = read_clip_list(_write_list(tmp_path / "l.csv", padded, "Dataset,Subject,Filename"))
    assert [(x.line, x.label) for x in listed] == [(2, ""), (3, ""), (4, ""), (5, "")]
    match = match_clips(listed, [(d, s, c) for d, s, c, _ in _clips(caches["casme2"])])
    assert set(match.keep) == {(d, s, c) for d, s, c, _ in clips} and not match.missing
    with pytest.raises(DataError, match="line 2: .* is listed twice"):
        read_clip_list(_write_list(tmp_path / "twice.csv", padded[:1] * 2))
    with pytest.raises(DataError, match="line 1: 'casme2,sub01' does not name"):
        read_clip_list(_write_list(tmp_path / "short.csv", ["casme2,sub01"]))


def test_casme3_builds_and_trains_with_its_own_class_set(tmp_path):
    """CAS(ME)^3 end to end: clips named <Filename>_<Onset> as cache keys, trained under
    its default class set (four)."""
    root = generate_dataset("casme3", tmp_path / "casme3", subjects=3, seed=5, **SMALL).root
    cache = build_cache("casme3", root, tmp_path / "c3.h5", options=BuildOptions(size=32)).cache
    with open_cache(cache) as c:
        clips = list(c)
    assert clips and all("_" in clip.clip for clip in clips)
    out = tmp_path / "run"
    code, output = _cv("--cache", str(cache), "--protocol", "subject-kfold", "--folds", "3",
                       "--out", str(out))
    assert code == 0, output
    config = json.loads((out / "config.json").read_text())
    assert config["spec"]["classes"] == "four"
    assert config["classes"] == ["negative", "positive", "surprise", "others"]
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    assert set(preds["clip"]) <= {clip.clip for clip in clips}
