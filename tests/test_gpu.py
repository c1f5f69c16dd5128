"""On a CUDA device (``pytest -m gpu``; skipped without one; ``benchmarks/gpu_check.py``
runs them): the loop trains on the GPU, the best epoch's weights stay on the device and
are copied in place, and a run trained on the GPU predicts the same on the CPU and the
GPU from its checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_best_weights_stay_on_the_device_and_are_copied_in_place():
    from mer_di.training.loop import BestWeights
    from mer_di.training.models import build_model

    model, _ = build_model("resnet34", 3, tiny=True)
    model.cuda()
    best = BestWeights()
    best.save(model)
    pointers = {k: v.data_ptr() for k, v in best.state.items()}
    assert all(v.is_cuda for v in best.state.values())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    want = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best.save(model)  # the second save: into the same buffers
    assert {k: v.data_ptr() for k, v in best.state.items()} == pointers
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    best.restore(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=0, atol=0)


def test_fit_on_the_gpu_keeps_its_best_epoch():
    from mer_di.training.augment import prepare_images
    from mer_di.training.loop import Samples, TrainOptions, fit, predict
    from mer_di.training.models import build_model

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (60,), generator=g)
    x = torch.rand(60, 16, 16, 3, generator=g) + y[:, None, None, None] * 0.5
    model, info = build_model("learnet", 3, tiny=True)
    images = prepare_images(x.numpy(), info.input_size, info.mean, info.std, "cuda")
    idx = torch.arange(60)
    result = fit(model, images, Samples(idx[:40], y[:40]), Samples(idx[40:], y[40:]),
                 TrainOptions(epochs=4, batch_size=10, patience=0), seed=0, fliprot=True)
    assert 1 <= result.best_epoch <= 4 and next(model.parameters()).is_cuda
    best = min(r["val_loss"] for r in result.history)
    logits = torch.from_numpy(predict(model, images, Samples(idx[40:], y[40:]), batch_size=40))
    loss = torch.nn.functional.cross_entropy(logits, y[40:]).item()
    assert loss == pytest.approx(best, rel=1e-3, abs=1e-4)  # the kept epoch's weights


def test_a_run_trained_on_the_gpu_predicts_alike_on_cpu_and_gpu(tmp_path: Path):
    from mer_di.data_manifest.synth import generate_dataset
    from mer_di.pipeline.build import BuildOptions, build_cache
    from mer_di.training.cli import main as mer_train
    from mer_di.training.inference import predict

    root = generate_dataset("casme2", tmp_path / "casme2", subjects=3, clips_per_class=2,
                            frame_size=(48, 48), length=(6, 9), seed=4).root
    cache = build_cache("casme2", root, tmp_path / "c.h5", options=BuildOptions(size=32)).cache
    run = tmp_path / "run"
    result = CliRunner().invoke(mer_train, [
        "cv", "--quiet", "--tiny", "--cache", str(cache), "--model", "resnet34", "--config",
        "baseline", "--protocol", "kfold", "--folds", "2", "--epochs", "2", "--batch-size",
        "8", "--device", "cuda", "--out", str(run)])
    assert result.exit_code == 0, result.output
    on_cpu = predict(run, cache=cache, device="cpu")
    on_gpu = predict(run, cache=cache, device="cuda")
    assert len(on_cpu) == len(on_gpu) > 0
    probs = on_cpu.filter(like="prob_").columns
    np.testing.assert_allclose(on_cpu[probs].to_numpy(), on_gpu[probs].to_numpy(),
                               atol=2e-2)  # the GPU under bf16 autocast, the CPU in fp32
    agree = (on_cpu["pred"] == on_gpu["pred"]).mean()
    assert agree >= 0.9, agree
