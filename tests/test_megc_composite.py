"""The MEGC2019 composite end to end on generated data named exactly as the real one
(issue 12.4/12.5): CASME II drawn from the 2019 sheet, SAMM from its sheet, SMIC-HS from
``combined_3class_gt.csv`` itself; ``mer-train cv --clips combined_3class_gt.csv --classes
megc --protocol loso`` then runs exactly the list's 442 clips with its labels, over 68
subjects. Needs the real reference files beside the checkout (skipped without them)."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
from click.testing import CliRunner

from mer_di.data_manifest.classes import MEGC_CLASSES
from mer_di.data_manifest.synth.from_sheet import generate_from_sheet
from mer_di.pipeline.build import BuildOptions, build_cache
from mer_di.training.cli import main as mer_train
from mer_di.training.cliplist import loose

SOURCES = {"casme2": "CASME2-coding-20190701.xlsx", "samm": "SAMM_Micro_FACS_Codes_v2.xlsx",
           "smic": "combined_3class_gt.csv"}


@pytest.mark.slow
def test_the_composite_runs_exactly_its_442_clips(reference, tmp_path):
    gt = reference / "combined_3class_gt.csv"
    caches = []
    for dataset, sheet in SOURCES.items():
        root = generate_from_sheet(dataset, tmp_path / dataset, reference / sheet,
                                   frame_size=(32, 32), seed=1).root
        caches.append(build_cache(dataset, root, tmp_path / f"{dataset}.h5",
                                  options=BuildOptions(size=32)).cache)
    out = tmp_path / "megc"
    args = ["cv", "--quiet", "--tiny", "--model", "learnet", "--config", "baseline",
            "--epochs", "1", "--no-checkpoints", "--classes", "megc", "--protocol", "loso",
            "--clips", str(gt), "--out", str(out)]
    for cache in caches:
        args += ["--cache", str(cache)]
    result = CliRunner().invoke(mer_train, args)
    assert result.exit_code == 0, result.output

    listed = {(d, loose(s), loose(c)): MEGC_CLASSES[int(k)]
              for d, s, c, k in csv.reader(gt.open())}
    preds = pd.read_csv(out / "predictions.csv", dtype={"subject": str, "clip": str})
    got = {(d, loose(s), loose(c)): name for d, s, c, name in
           zip(preds["dataset"], preds["subject"], preds["clip"], preds["label_name"],
               strict=True)}
    assert len(preds) == len(listed) == 442
    assert got == listed  # exactly its clips, each with the list's class
    assert preds.groupby("dataset").size().to_dict() == {"casme2": 145, "samm": 133,
                                                         "smic": 164}
    assert preds.groupby(["dataset", "subject"]).ngroups == 68 == preds["fold"].nunique()
