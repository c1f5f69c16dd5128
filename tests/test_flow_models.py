"""The flow models (STSTNet, OFF-ApexNet): shapes, parameter counts against the published
ones, tiny variants, the registry's metadata, gradients, and their own weights files."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from mer_di.errors import ModelError
from mer_di.training.models import (
    ALL_MODEL_NAMES,
    FLOW_MODEL_NAMES,
    MODEL_NAMES,
    build_model,
    check_weights,
    is_known,
    model_cfg,
)
from mer_di.training.models.flow_models import STSTNet
from mer_di.training.models.registry import INPUT_KINDS

B = 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these models are small, and on a loaded 2-core machine two
    threads spin against each other (a tiny STSTNet step of 32: 0.7 s with 2, 25 ms with 1,
    measured at load 8.6)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _flow(batch: int = B, side: int = 28) -> torch.Tensor:
    """A batch as prepare_flow makes it: u, v in [-1, 1], strain in [0, 1]."""
    x = torch.rand(batch, 3, side, side)
    x[:, :2] = x[:, :2] * 2 - 1
    return x


def test_registered_as_flow_models_beside_the_di_models():
    assert FLOW_MODEL_NAMES == ("ststnet", "off_apexnet")
    assert ALL_MODEL_NAMES == MODEL_NAMES + FLOW_MODEL_NAMES
    assert not set(FLOW_MODEL_NAMES) & set(MODEL_NAMES)  # Table I's DI runs do not train them
    for name in FLOW_MODEL_NAMES:
        assert is_known(name)
    assert {model_cfg(n).input_kind for n in ALL_MODEL_NAMES} == set(INPUT_KINDS)
    for name in MODEL_NAMES:  # every other model is fed dynamic images, as before
        cfg = model_cfg(name)
        assert (cfg.input_kind, cfg.flow_channels) == ("di", ())


@pytest.mark.parametrize("name,channels", [("ststnet", ("u", "v", "strain")),
                                           ("off_apexnet", ("u", "v"))])
@pytest.mark.parametrize("tiny", [False, True], ids=["full", "tiny"])
def test_metadata_without_building(name, channels, tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("model_cfg built a module")

    with monkeypatch.context() as m:
        m.setattr(nn.Module, "__init__", refuse)
        cfg = model_cfg(name, tiny=tiny)
    assert (cfg.input_kind, cfg.flow_channels, cfg.input_size) == ("flow", channels, 28)
    assert (cfg.mean, cfg.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # prepare_flow scales
    assert cfg.from_scratch and cfg.weights_file is None and not cfg.pair
    _, info = build_model(name, 3, tiny=tiny)
    assert (info.name, info.input_size, info.mean, info.std, info.pair, info.input_kind) == (
        cfg.name, cfg.input_size, cfg.mean, cfg.std, cfg.pair, "flow")


@pytest.mark.parametrize("name", FLOW_MODEL_NAMES)
@pytest.mark.parametrize("tiny", [False, True], ids=["full", "tiny"])
@pytest.mark.parametrize("classes", [3, 5])
def test_forward_shape(name, tiny, classes):
    model, info = build_model(name, classes, tiny=tiny)
    x = _flow()
    assert model.train()(x).shape == (B, classes)
    with torch.no_grad():
        assert model.eval()(x).shape == (B, classes)
    assert info.n_params == sum(p.numel() for p in model.parameters())


def test_ststnet_parameter_count():
    _, info = build_model("ststnet", 3)
    # the authors' PyTorch STSTNet() (github christy1206/STSTNet, main.py) has the same
    # layers and 1,683 parameters: convs 3*28 + 5*28 + 8*28 = 448, batch norms 2 * 16 = 32,
    # linear 400 * 3 + 3 = 1,203 (Table I: 5x5x16 = 400 features)
    assert info.n_params == 1_683 == 448 + 32 + 1_203
    # the paper: "1670 of weights and biases" (Section IV), 0.00167 M (Table V): 0.8% fewer
    assert abs(info.n_params - 1_670) / 1_670 < 0.01
    _, tiny = build_model("ststnet", 3, tiny=True)
    assert tiny.n_params == info.n_params  # already tiny: the same network


def test_ststnet_feature_map_sizes_follow_table_1():
    model, _ = build_model("ststnet", 3)
    x = _flow(2)
    maps = [stream[:3](x) for stream in model.streams]  # conv, ReLU, BN
    assert [tuple(m.shape[1:]) for m in maps] == [(3, 28, 28), (5, 28, 28), (8, 28, 28)]
    pooled = torch.cat([stream(x) for stream in model.eval().streams], 1)
    assert tuple(pooled.shape[1:]) == (16, 10, 10)
    assert tuple(model.avgpool(pooled).shape[1:]) == (16, 5, 5)


def test_off_apexnet_parameter_count():
    _, info = build_model("off_apexnet", 3)
    # streams 2 * (1*6*25+6 + 6*16*25+16) = 5,144; dense 1568*1024+1024 + 1024*1024+1024;
    # head 1024*3+3. The Off-TANet re-implementation's README: "2.66M"
    assert info.n_params == 2_664_475 == 5_144 + 1_606_656 + 1_049_600 + 3_075
    assert round(info.n_params / 1e6, 2) == 2.66
    # the STSTNet paper's Table V gives OFF-ApexNet 2.77 M: 4% more, unexplained there
    assert abs(info.n_params - 2.77e6) / 2.77e6 < 0.05
    _, tiny = build_model("off_apexnet", 3, tiny=True)
    assert tiny.n_params == 56_419


@pytest.mark.parametrize("name", FLOW_MODEL_NAMES)
def test_tiny_variant_is_small_and_fast(name):
    model, info = build_model(name, 5, tiny=True)
    assert info.n_params < 100_000
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _flow(32), torch.arange(32) % 5
    start = time.perf_counter()
    for _ in range(5):
        loss = nn.functional.cross_entropy(model.train()(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert time.perf_counter() - start < 3  # five steps of 32: ~0.15 s on one core


@pytest.mark.parametrize("name", FLOW_MODEL_NAMES)
@pytest.mark.parametrize("tiny", [False, True], ids=["full", "tiny"])
def test_gradients_reach_every_parameter(name, tiny):
    model, _ = build_model(name, 3, tiny=tiny)
    loss = nn.functional.cross_entropy(model.train()(_flow()), torch.arange(B) % 3)
    loss.backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, key


def test_off_apexnet_reads_u_and_v_only():
    model, _ = build_model("off_apexnet", 3, tiny=True)
    model.eval()
    x = _flow()
    other_strain = x.clone()
    other_strain[:, 2] = torch.rand_like(x[:, 2])
    other_v = x.clone()
    other_v[:, 1] = -x[:, 1]
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(other_strain))
        assert not torch.allclose(out, model(other_v))
        assert model(x[:, :2]).shape == (B, 3)  # two channels are enough


def test_ststnet_reads_all_three_channels():
    model, _ = build_model("ststnet", 3)
    model.eval()
    x = _flow()
    with torch.no_grad():
        out = model(x)
        for c in range(3):
            changed = x.clone()
            changed[:, c] = torch.rand_like(x[:, c])
            assert not torch.allclose(out, model(changed)), c


def test_other_input_sizes_size_the_linear_layer():
    model = STSTNet(3, input_size=56)
    assert model.eval()(_flow(2, 56)).shape == (2, 3)


@pytest.mark.parametrize("name", FLOW_MODEL_NAMES)
def test_own_weights_file_loads_and_keeps_the_body(tmp_path, name):
    source, _ = build_model(name, 5, tiny=True)
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    same, info = build_model(name, 5, tiny=True, pretrained=path)
    assert info.pretrained == str(path)
    for key, value in source.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    other, _ = build_model(name, 3, tiny=True, pretrained=path)  # fresh 3-class head
    assert other.head.weight.shape[0] == 3
    body = next(k for k in source.state_dict() if not k.startswith("head"))
    assert torch.equal(other.state_dict()[body], source.state_dict()[body])
    check_weights(name, 3, path, tiny=True)  # fits, checked on the meta device


def test_weights_errors_say_trained_from_scratch(tmp_path):
    with pytest.raises(ModelError, match="trained from scratch"):
        build_model("ststnet", 3, pretrained=tmp_path / "missing.pth")
    with pytest.raises(ModelError, match="ststnet has no timm weights"):
        build_model("ststnet", 3, pretrained="cache")
    learnet, _ = build_model("learnet", 3, tiny=True)
    path = tmp_path / "learnet.pth"
    torch.save(learnet.state_dict(), path)
    with pytest.raises(ModelError, match="off_apexnet: weights file .* does not fit"):
        check_weights("off_apexnet", 3, path)
    with pytest.raises(ModelError, match="takes no backbone"):
        model_cfg("off_apexnet", backbone="resnet18")
