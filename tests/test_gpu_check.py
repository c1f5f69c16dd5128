"""``benchmarks/gpu_check.py`` (issue 17): its CPU half end to end on a tiny setting writes
one results file of the documented structure, says plainly that the GPU numbers are not
measured, and the run comparison it rests on tells identical runs from differing ones;
``benchmarks/estimate_table1.py`` reads the measured unit figures from such a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in ("gpu_check", "gpu_models", "bench_snapshot", "bench_train",
                 "estimate_table1", "_common"):
        sys.modules.pop(name, None)


def test_the_cpu_half_writes_one_results_file(bench, tmp_path, monkeypatch):
    import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU machine
    out = tmp_path / "gpu_check_cpu.json"
    assert gpu_check.main(["--tiny", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["gpu"] is False and "not measured: no GPU" in report["note"]
    assert list(report["sections"]) == list(gpu_check.SECTIONS)
    for name, section in report["sections"].items():
        assert isinstance(section["seconds"], float), name
        if name != "models":
            assert section["status"] == "not measured: no GPU", name
    models = report["sections"]["models"]
    assert models["status"].startswith("ok") and "no GPU" in models["status"]
    (record,) = models["records"]
    assert record["model"] == "learnet" and record["device"] == "cpu"
    assert record["real_images_per_s"] == record["busy_fraction"] == "not measured: no GPU"
    snap = record["snapshot"]
    assert snap["before_ms"]["best"] > 0 and snap["after_ms"]["best"] > 0
    assert snap["kept_on_device"] is True and snap["state_mib"] > 1
    md = out.with_suffix(".md").read_text()
    assert "GPU numbers are not measured" in md and "| learnet | cpu |" in md


def _run(folder: Path, preds: list[int], loss: float) -> Path:
    folder.mkdir()
    keys = {"model": "learnet", "config": "baseline", "seed": 0, "fold": 0}
    pd.DataFrame([{**keys, "subject": "01", "clip": f"c{i}", "label": 0, "pred": p}
                  for i, p in enumerate(preds)]).to_csv(folder / "predictions.csv", index=False)
    pd.DataFrame([{**keys, "epoch": 1, "train_loss": loss, "val_loss": 1.0}]).to_csv(
        folder / "epochs.csv", index=False)
    return folder


def test_runs_compared_prediction_for_prediction(bench, tmp_path):
    from gpu_check import compare_runs

    a = _run(tmp_path / "a", [0, 1, 2, 3], 0.5)
    same = compare_runs(a, _run(tmp_path / "b", [0, 1, 2, 3], 0.5))
    assert same["identical"] and same["pred_equal_fraction"] == 1.0
    other = compare_runs(a, _run(tmp_path / "c", [0, 1, 2, 0], 0.5 + 1e-7))
    assert not other["identical"] and other["pred_equal_fraction"] == 0.75
    assert other["loss_max_abs_diff"] == pytest.approx(1e-7)


def test_the_table1_estimate_uses_measured_unit_figures(bench, tmp_path):
    import estimate_table1

    records = [{"model": m, "device": "cuda", "real_images_per_s": 500.0, "startup_s": 2.0,
                "busy_fraction": 0.5, "peak_memory_mib": 4000.0, "gpu_memory_mib": 140000.0}
               for m in estimate_table1.MODELS[:-1]]
    records.append({"model": "learnet", "device": "cuda", "error": "RuntimeError: boom"})
    check = tmp_path / "gpu_check_nvidia-h200.json"
    check.write_text(json.dumps({"gpu": True, "device_name": "NVIDIA H200",
                                 "sections": {"models": {"records": records}}}))
    out = tmp_path / "estimate.json"
    assert estimate_table1.main(["--gpu-check", str(check), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    vgg, learnet = result["models"]["vgg19"], result["models"]["learnet"]
    assert vgg["img_per_s"] == 500.0 and set(vgg["source"].values()) == {"measured"}
    assert set(learnet["source"].values()) == {"assumed"}  # its measurement failed
    assert result["estimated"] and result["gpu"] == "NVIDIA H200"
    walls = result["wall_seconds"]
    # sharing a GPU: never slower, and bounded below by the kernels' own time
    assert walls["1 GPU x 2"] <= walls["1 GPU x 1"] and walls["1 GPU x 4"] > 0
    assert "units fit on one GPU" in result["memory_note"]
