"""Flow as the flow models see it: prepare_flow's scaling against a computation by hand,
flips and rotations that turn the vectors with the pixels, the phase-aware samples, and
a tiny STSTNet trained on a FlowBank by the loop that trains the DI models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mer_di.errors import DataError
from mer_di.training.augment import flip_rotate
from mer_di.training.flow_input import (
    FLOW_APEX_OFFSET,
    FLOW_ONSET_APEX,
    FLOW_PHASES,
    FlowBank,
    check_flow_input,
    flow_flip_rotate,
    flow_unit_samples,
    needed_flow_phases,
    prepare_flow,
    random_flow_flip_rotate,
)
from mer_di.training.loop import TrainOptions, fit, predict
from mer_di.training.models import build_model, model_cfg


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: small tensors on a loaded 2-core machine (see
    tests/test_flow_models.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fields(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random flow phases [shape=(n, h, w, 3)]: sub-pixel u, v of either sign, strain >= 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, h, w, 3)).astype(np.float32)
    x[..., 2] = np.abs(x[..., 2])
    return x


def test_prepare_flow_against_a_computation_by_hand():
    images = _fields(3, 56, 56)
    out = prepare_flow(images, 28).numpy()
    assert out.shape == (3, 3, 28, 28) and out.dtype == np.float32
    for i in range(3):
        # area averaging by 2 is the mean of 2x2 blocks; displacements halve on the grid
        small = images[i].reshape(28, 2, 28, 2, 3).mean((1, 3)).astype(np.float64)
        u, v = small[..., 0] * 0.5, small[..., 1] * 0.5
        largest = np.sqrt(u ** 2 + v ** 2).max()
        np.testing.assert_allclose(out[i, 0], u / largest, atol=1e-6)
        np.testing.assert_allclose(out[i, 1], v / largest, atol=1e-6)
        np.testing.assert_allclose(out[i, 2], small[..., 2] / small[..., 2].max(), atol=1e-6)
        assert np.sqrt(out[i, 0] ** 2 + out[i, 1] ** 2).max() == pytest.approx(1, abs=1e-6)
        assert out[i, 2].min() >= 0 and out[i, 2].max() == pytest.approx(1, abs=1e-6)


def test_prepare_flow_keeps_directions_and_zero():
    images = np.zeros((2, 28, 28, 3), np.float32)
    images[0, ..., 0], images[0, ..., 1] = 0.2, -0.1  # a uniform motion, no strain
    out = prepare_flow(images, 28).numpy()
    np.testing.assert_allclose(out[0, 0], 2 / math.sqrt(5), rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], -1 / math.sqrt(5), rtol=1e-6)
    assert not out[0, 2].any()  # no strain stays 0
    assert not out[1].any()  # no motion at all: 0, not a division by zero


def test_prepare_flow_on_a_non_square_image_keeps_directions_on_the_new_grid():
    images = np.zeros((1, 20, 40, 3), np.float32)
    images[..., 0] = images[..., 1] = 1.0  # 45 degrees on the 40-wide image
    out = prepare_flow(images, 20).numpy()
    # the width halves, the height does not: (0.5, 1) on the square grid
    np.testing.assert_allclose(out[0, 0], 1 / math.sqrt(5), rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], 2 / math.sqrt(5), rtol=1e-6)


def test_prepare_flow_grows_small_images():
    out = prepare_flow(_fields(2, 16, 16), 28)
    assert out.shape == (2, 3, 28, 28)
    assert out[:, :2].abs().max() <= 1 + 1e-6 and out[:, 2].max() <= 1 + 1e-6


def test_prepare_flow_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        prepare_flow(np.zeros((2, 28, 28, 2), np.float32), 28)
    bad = _fields(2, 28, 28)
    bad[1, 3, 4, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        prepare_flow(bad, 28)


def _dot(side: int, x: float, y: float) -> torch.Tensor:
    """A Gaussian blob centred on pixel (x, y) of a side x side image."""
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float64),
                            torch.arange(side, dtype=torch.float64), indexing="ij")
    return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5 ** 2))


def _centroid(image: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(image.shape[0], dtype=image.dtype),
                            torch.arange(image.shape[1], dtype=image.dtype), indexing="ij")
    return torch.stack([(xs * image).sum(), (ys * image).sum()]) / image.sum()


@pytest.mark.parametrize("degrees,flip", [(0, True), (90, False), (-90, True), (180, False),
                                          (7, False), (-10, True)])
def test_flow_flip_rotate_turns_vectors_as_the_frames_move(degrees, flip):
    """Two frames whose blob moves by w: after flip_rotate of both frames, the blob moves by
    what flow_flip_rotate makes of a flow field w."""
    side, w = 48, torch.tensor([3.0, 1.0], dtype=torch.float64)
    frames = torch.stack([_dot(side, 20, 22), _dot(side, 20 + w[0].item(), 22 + w[1].item())])
    flips = torch.tensor([flip, flip])
    angles = torch.full((2,), math.radians(degrees), dtype=torch.float64)
    moved = flip_rotate(frames[:, None], flips, angles)[:, 0]
    seen = _centroid(moved[1]) - _centroid(moved[0])
    field = torch.zeros(1, 3, side, side, dtype=torch.float64)
    field[0, 0], field[0, 1], field[0, 2] = w[0], w[1], 0.5
    turned = flow_flip_rotate(field, flips[:1], angles[:1])
    centre = turned[0, :, side // 2, side // 2]
    torch.testing.assert_close(centre[:2], seen, atol=0.02, rtol=0)
    assert centre[2].item() == pytest.approx(0.5)  # strain is moved, never turned


def test_flow_flip_rotate_strain_is_flip_rotate_and_shapes_are_checked():
    x = torch.rand(5, 3, 28, 28)
    flips, angles = torch.rand(5) < 0.5, torch.rand(5) - 0.5
    torch.testing.assert_close(flow_flip_rotate(x, flips, angles)[:, 2],
                               flip_rotate(x, flips, angles)[:, 2])
    assert random_flow_flip_rotate(x, torch.Generator().manual_seed(0)).shape == x.shape
    with pytest.raises(ValueError, match="flow batch"):
        flow_flip_rotate(torch.rand(2, 5, 3, 28, 28), flips[:5], angles[:5])


def _bank(n: int = 6, size: int = 28) -> tuple[FlowBank, np.ndarray]:
    valid = np.array([True, False, True, True, False, True])[:n]
    bank = FlowBank({FLOW_ONSET_APEX: _fields(n, 32, 32, 1),
                     FLOW_APEX_OFFSET: _fields(n, 32, 32, 2)}, size,
                    valid={FLOW_APEX_OFFSET: valid})
    return bank, valid


def test_flow_bank_rows_and_phase_aware_samples():
    bank, valid = _bank()
    assert bank.tensor.shape == (12, 3, 28, 28) and bank.key == (28, FLOW_PHASES)
    torch.testing.assert_close(bank.tensor[:6], prepare_flow(_fields(6, 32, 32, 1), 28))
    labels = np.array([0, 1, 2, 0, 1, 2])
    idx = np.array([0, 1, 4, 5])
    plain = flow_unit_samples(labels, bank, idx, dual=False)
    assert plain.index.tolist() == [0, 1, 4, 5] and plain.labels.tolist() == [0, 1, 1, 2]
    dual = flow_unit_samples(labels, bank, idx, dual=True)
    # onset->apex of every clip, then apex->offset (rows 6 + i) of clips that have one
    assert dual.index.tolist() == [0, 1, 4, 5, 6, 11]
    assert dual.labels.tolist() == [0, 1, 1, 2, 0, 2]
    assert valid[[0, 5]].all() and not valid[[1, 4]].any()


def test_flow_bank_without_the_offset_phase():
    bank = FlowBank({FLOW_ONSET_APEX: _fields(3, 28, 28), FLOW_APEX_OFFSET: None}, 28)
    assert bank.names == (FLOW_ONSET_APEX,) and bank.tensor.shape == (3, 3, 28, 28)
    assert len(flow_unit_samples(np.zeros(3, np.int64), bank, np.arange(3), False)) == 3
    with pytest.raises(ValueError, match=FLOW_APEX_OFFSET):
        flow_unit_samples(np.zeros(3, np.int64), bank, np.arange(3), True)
    with pytest.raises(ValueError, match="needs flow_onset_apex"):
        FlowBank({FLOW_APEX_OFFSET: _fields(3, 28, 28)}, 28)
    with pytest.raises(ValueError, match="one image per clip"):
        FlowBank({FLOW_ONSET_APEX: _fields(3, 28, 28), FLOW_APEX_OFFSET: _fields(2, 28, 28)}, 28)
    with pytest.raises(ValueError, match="unknown flow phase"):
        FlowBank({FLOW_ONSET_APEX: _fields(3, 28, 28), "flow_onset_offset": None}, 28)


def test_needed_phases_and_the_check_before_training():
    assert needed_flow_phases(["baseline", "fliprot"]) == (FLOW_ONSET_APEX,)
    assert needed_flow_phases(["baseline", "dualdi+fliprot"]) == FLOW_PHASES
    flow = {"ststnet": model_cfg("ststnet"), "learnet": model_cfg("learnet")}
    check_flow_input(flow, FLOW_PHASES, ["dualdi"])
    check_flow_input(flow, [FLOW_ONSET_APEX], ["baseline"])
    with pytest.raises(DataError, match="ststnet are fed optical flow.*no flow_onset_apex"):
        check_flow_input(flow, [], ["baseline"], cache="casme2.h5")
    with pytest.raises(DataError, match="no flow_apex_offset"):
        check_flow_input(flow, [FLOW_ONSET_APEX], ["dualdi"])
    check_flow_input({"learnet": model_cfg("learnet")}, [], ["dualdi"])  # DI models only


def _motion_classes(n: int, side: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flow phases whose class is the direction of a blob's motion (right, down, up-left)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    direction = np.array([[1.0, 0.0], [0.0, 1.0], [-0.7, -0.7]])
    ys, xs = np.mgrid[:side, :side]
    flows = np.zeros((n, side, side, 3), np.float32)
    for i, c in enumerate(labels):
        cx, cy = rng.uniform(8, side - 8, 2)
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 30.0)
        flows[i, ..., 0], flows[i, ..., 1] = (blob[..., None] * direction[c]).transpose(2, 0, 1)
        flows[i, ..., 2] = blob * rng.uniform(0.5, 1.5)
        flows[i] += rng.normal(0, 0.02, flows[i].shape).astype(np.float32)
    flows[..., 2] = np.abs(flows[..., 2])
    return flows, labels


def test_a_tiny_ststnet_trains_on_a_flow_bank_with_the_di_loop():
    flows, labels = _motion_classes(60)
    back = flows.copy()  # an apex->offset flow: the same motion going back
    back[..., :2] *= -1
    bank = FlowBank({FLOW_ONSET_APEX: flows, FLOW_APEX_OFFSET: back}, 28)
    train, test = np.arange(45), np.arange(45, 60)
    torch.manual_seed(0)
    model, _ = build_model("ststnet", 3, tiny=True)
    samples = flow_unit_samples(labels, bank, train, dual=True)  # the phase-aware samples
    assert len(samples) == 90
    result = fit(model, bank.tensor, samples, None,
                 TrainOptions(epochs=30, batch_size=15, lr=1e-2, amp=False), seed=0,
                 fliprot=False)
    assert result.epochs_run == 30
    logits = predict(model, bank.tensor, flow_unit_samples(labels, bank, test, False))
    assert logits.shape == (15, 3)
    assert (logits.argmax(1) == labels[test]).mean() >= 0.8  # chance is 1/3
