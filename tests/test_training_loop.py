"""Model inputs, the flip/rotate augmentation, the training loop and the run tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from mer_di.training.augment import prepare_images, random_flip_rotate
from mer_di.training.configs import CONFIG_NAMES, ConfigError, applies, get_config
from mer_di.training.loop import Samples, TrainOptions, fit, predict
from mer_di.training.results import fold_scores, summarise, summary_markdown


def test_prepare_images_minmax_normalise_resize(rng):
    raw = rng.normal(0, 50, (5, 8, 8, 3)).astype(np.float32)
    raw[4] = 7.0  # a constant image
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    got = prepare_images(raw, 4, mean, std).numpy()
    pooled = raw.reshape(5, 4, 2, 4, 2, 3).mean((2, 4))  # area = 2x2 means
    lo = pooled.reshape(5, -1).min(1)[:, None, None, None]
    hi = pooled.reshape(5, -1).max(1)[:, None, None, None]
    scaled = np.where(hi > lo, (pooled - lo) / np.where(hi > lo, hi - lo, 1), 0)
    want = ((scaled - mean) / std).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    grey = prepare_images(raw[..., :1], 8, (0.5,) * 3, (0.5,) * 3).numpy()
    assert grey.shape == (5, 3, 8, 8)
    np.testing.assert_array_equal(grey[:, 0], grey[:, 2])
    assert grey[:4].min() == pytest.approx(-1) and grey[:4].max() == pytest.approx(1)


def test_flip_rotate_without_rotation_is_identity_or_mirror():
    x = torch.randn(64, 3, 9, 9)
    out = random_flip_rotate(x, torch.Generator().manual_seed(0), max_degrees=0)
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x, strict=True)]
    mirror = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, x, strict=True)]
    assert all(a or b for a, b in zip(same, mirror, strict=True))
    assert 10 < sum(mirror) < 54


def test_flip_rotate_pairs_share_the_transform_and_seed_repeats():
    x = torch.randn(8, 3, 16, 16)
    pair = torch.stack([x, x.clone()])
    out = random_flip_rotate(pair, torch.Generator().manual_seed(1))
    assert out.shape == pair.shape
    torch.testing.assert_close(out[0], out[1])
    again = random_flip_rotate(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, out[0])


def test_rotation_stays_within_ten_degrees():
    # a bright dot right of centre moves along a circle by at most 10 degrees
    x = torch.zeros(200, 1, 41, 41)
    x[:, 0, 20, 35] = 1.0
    out = random_flip_rotate(x, torch.Generator().manual_seed(2))
    angles = []
    for img in out[:, 0]:
        ys, xs = torch.nonzero(img > 0.05, as_tuple=True)
        w = img[ys, xs]
        cx, cy = float((xs * w).sum() / w.sum()) - 20, float((ys * w).sum() / w.sum()) - 20
        a = np.degrees(np.arctan2(cy, abs(cx)))  # mirrored dots land left of centre
        angles.append(a)
    angles = np.array(angles)
    assert np.abs(angles).max() <= 10.5
    assert angles.min() < -7 and angles.max() > 7  # both ways, near the bound


def test_configs():
    assert [get_config(c).dual for c in CONFIG_NAMES] == [False, False, True, True]
    assert [get_config(c).fliprot for c in CONFIG_NAMES] == [False, True, False, True]
    with pytest.raises(ConfigError, match="unknown configuration 'dual'"):
        get_config("dual")
    assert applies("dualdi", pair_model=False) and not applies("dualdi", pair_model=True)


class _Linear(torch.nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.fc = torch.nn.Linear(d, k)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _blobs(n, k=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    centres = torch.randn(k, 1, d, d, generator=g) * 3
    x = centres[y] + torch.randn(n, 1, d, d, generator=g)
    return x, y


def test_fit_learns_and_keeps_the_best_validation_epoch():
    x, y = _blobs(90)
    idx = torch.arange(90)
    train, val = Samples(idx[:60], y[:60]), Samples(idx[60:], y[60:])
    torch.manual_seed(0)
    model = _Linear(16, 3)
    opts = TrainOptions(epochs=30, batch_size=10, lr=0.05, patience=4)
    result = fit(model, x, train, val, opts, seed=0, fliprot=False)
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert result.epochs_run <= 30
    if result.stopped_early:
        assert result.epochs_run - result.best_epoch == 4
    # the weights kept are the best epoch's: its validation loss is reproduced
    logits = torch.from_numpy(predict(model, x, val))
    loss = torch.nn.functional.cross_entropy(logits, y[60:]).item()
    assert loss == pytest.approx(min(losses), rel=1e-5)
    assert (logits.argmax(1) == y[60:]).float().mean() > 0.8


def test_fit_without_validation_runs_every_epoch_and_is_seeded():
    x, y = _blobs(31)  # 31 = 3 batches of 10 and one of 1, which must not reach batch norm
    train = Samples(torch.arange(31), y)

    def run():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8),
                                    torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
        r = fit(model, x, train, None, TrainOptions(epochs=5, batch_size=10, lr=0.01),
                seed=3, fliprot=False)
        return r, predict(model, x, train)

    (r1, p1), (r2, p2) = run(), run()
    assert [h["train_loss"] for h in r1.history] == [h["train_loss"] for h in r2.history]
    assert r1.epochs_run == 5 and r1.best_epoch == 5 and not r1.stopped_early
    np.testing.assert_array_equal(p1, p2)


def _random_predictions(rng, k=4):
    rows = []
    for model in ("m1", "m2"):
        for seed in (0, 1):
            for fold in range(3):
                n = int(rng.integers(5, 15))
                y = rng.integers(0, k, n)
                p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
                rows.append(pd.DataFrame({"model": model, "config": "baseline", "seed": seed,
                                          "fold": fold, "label": y, "pred": p}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_summary_matches_sklearn(rng):
    preds = _random_predictions(rng)
    folds = fold_scores(preds, 4)
    summary = summarise(preds, 4)
    for r in summary.to_dict("records"):
        mine = preds[preds["model"] == r["model"]]
        per_fold = [f1_score(g["label"], g["pred"], average="macro", zero_division=0)
                    for _, g in mine.groupby(["seed", "fold"])]
        assert r["uf1_mean"] == pytest.approx(np.mean(per_fold))
        assert r["uf1_std"] == pytest.approx(np.std(per_fold, ddof=1))
        accs = [accuracy_score(g["label"], g["pred"]) for _, g in mine.groupby("seed")]
        uars = [balanced_accuracy_score(g["label"], g["pred"]) for _, g in mine.groupby("seed")]
        assert r["pooled_accuracy"] == pytest.approx(np.mean(accs))
        assert r["pooled_uar"] == pytest.approx(np.mean(uars))
        assert r["pooled_uar_std"] == pytest.approx(np.std(uars, ddof=1))
        assert r["folds"] == 6 and r["seeds"] == 2
    assert len(folds) == 12
    table = summary_markdown(summary)
    assert table.count("\n") == 3 and "| m1 | baseline | 6 |" in table


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_flip_rotate_on_the_gpu_matches_the_cpu():
    x = torch.randn(16, 3, 32, 32)
    cpu = random_flip_rotate(x, torch.Generator().manual_seed(4))
    gpu = random_flip_rotate(x.cuda(), torch.Generator().manual_seed(4)).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@needs_cuda
def test_fit_with_mixed_precision_on_the_gpu():
    from mer_di.training.models import build_model

    x, y = _blobs(60)
    model, info = build_model("resnet34", 3, tiny=True)
    images = prepare_images(x.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy(), info.input_size,
                            info.mean, info.std, "cuda")
    assert images.is_cuda
    idx = torch.arange(60)
    result = fit(model, images, Samples(idx[:40], y[:40]), Samples(idx[40:], y[40:]),
                 TrainOptions(epochs=3, batch_size=10), seed=0, fliprot=True)
    assert result.epochs_run == 3 and np.isfinite(result.history[-1]["val_loss"])
    assert predict(model, images, Samples(idx[40:], y[40:])).shape == (20, 3)


@pytest.mark.parametrize("hw", [(9, 9), (16, 24)])
def test_broadcast_grid_equals_affine_grid(hw):
    from mer_di.training.augment import _affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.affine_grid(theta, [5, 1, *hw], align_corners=False)
    torch.testing.assert_close(_affine_grid(theta, *hw), want, atol=1e-6, rtol=1e-5)
