"""The model zoo: every registered model's tiny variant trains a step, weights files load.

All models are randomly initialised; weights files are written by the tests themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mer_di.training.models import (
    ALL_MODEL_NAMES,
    MODEL_NAMES,
    ModelError,
    ModelInfo,
    build_model,
    is_known,
)
from mer_di.training.models.timm_models import create_timm
from mer_di.training.models.vggface import TINY, VGGFace

B = 4
N_CLASSES = 5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _inputs(info: ModelInfo, batch: int = B) -> tuple[torch.Tensor, ...]:
    shape = (batch, 3, info.input_size, info.input_size)
    return (torch.randn(shape), torch.randn(shape)) if info.pair else (torch.randn(shape),)


def _first_convs(model: nn.Module) -> list[nn.Module]:
    """The first convolution (or patch embedding) of each stream of ``model``."""
    streams = ([model.onset_stream, model.offset_stream] if hasattr(model, "onset_stream")
               else [model])
    return [next(m for m in s.modules() if isinstance(m, nn.Conv2d)) for s in streams]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tiny_variant_trains_a_step(name):
    model, info = build_model(name, N_CLASSES, tiny=True)
    assert info.name == name
    assert info.pair == (name == "dianet")
    assert info.pretrained is None
    assert 8 <= info.input_size <= 112
    assert len(info.mean) == len(info.std) == 3
    assert all(0 <= m <= 1 for m in info.mean) and all(0 < s <= 1 for s in info.std)
    assert info.n_params == sum(p.numel() for p in model.parameters())
    assert info.n_params < 1_000_000  # tiny

    model.train()
    logits = model(*_inputs(info))
    assert logits.shape == (B, N_CLASSES)
    loss = nn.functional.cross_entropy(logits, torch.arange(B) % N_CLASSES)
    loss.backward()
    for conv in _first_convs(model):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_timm_name_outside_the_registry():
    assert "mobilenetv3_small_050" not in MODEL_NAMES
    model, info = build_model("mobilenetv3_small_050", 3, tiny=True)
    assert info.input_size == 64  # no smaller variant: the full model at a small input
    assert model.eval()(*_inputs(info, 2)).shape == (2, 3)
    model, info = build_model("resnet18", 3, tiny=True)
    assert model(*_inputs(info, 2)).shape == (2, 3)


def test_is_known():
    for name in MODEL_NAMES:
        assert is_known(name)
    assert is_known("resnet18") and is_known("resnet34.a1_in1k")
    assert not is_known("no_such_net")


def test_unknown_name_and_bad_arguments():
    with pytest.raises(ModelError, match="no_such_net"):
        build_model("no_such_net", 5)
    with pytest.raises(ModelError, match="resnet34"):
        build_model("resnet34", 5, tiny=True, backbone="resnet18")
    with pytest.raises(ModelError, match="num_classes"):
        build_model("learnet", 0, tiny=True)
    with pytest.raises(ModelError, match="not_a_backbone"):
        build_model("dianet", 5, tiny=True, backbone="not_a_backbone")
    with pytest.raises(ModelError, match="no weights file"):
        build_model("learnet", 5, tiny=True, pretrained="/nonexistent/weights.pth")


def test_learnet_full_size():
    model, info = build_model("learnet", 8)
    # 1,866,824 parameters: within 0.2% of the paper's "about 1.87 M"
    assert info.n_params == 1_866_824
    assert abs(info.n_params - 1.87e6) / 1.87e6 < 0.03
    assert info.input_size == 112
    assert model.eval()(torch.randn(2, 3, 112, 112)).shape == (2, 8)


def _dag_state(fc_as_conv: bool = False) -> dict[str, torch.Tensor]:
    """A tiny-variant state_dict in the ``vgg_face_dag.pth`` layout (2622-way fc8)."""
    ref = VGGFace(2622, TINY["widths"], TINY["fc"], TINY["pool_size"])
    state = {k: torch.randn_like(v) for k, v in ref.state_dict().items()}
    assert "conv5_3.weight" in state and state["fc8.weight"].shape == (2622, TINY["fc"])
    if fc_as_conv:  # (out, C, k, k) as in conversions that keep fc layers as convolutions
        state["fc6.weight"] = state["fc6.weight"].reshape(TINY["fc"], TINY["widths"][-1],
                                                          TINY["pool_size"], TINY["pool_size"])
        state["fc7.weight"] = state["fc7.weight"][:, :, None, None]
    return state


@pytest.mark.parametrize("fc_as_conv", [False, True])
def test_vggface_loads_dag_weights(tmp_path, fc_as_conv):
    state = _dag_state(fc_as_conv)
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(state, path)
    model, info = build_model("vggface", 3, tiny=True, pretrained=path)
    assert info.pretrained == str(path)
    own = model.state_dict()
    for key in ("conv1_1.weight", "conv3_2.bias", "conv5_3.weight"):
        assert torch.equal(own[key], state[key])
    assert torch.equal(own["fc6.weight"], state["fc6.weight"].flatten(1))
    assert torch.equal(own["fc7.weight"], state["fc7.weight"].flatten(1))
    assert model.fc8.weight.shape == (3, TINY["fc"])
    assert model.eval()(*_inputs(info, 2)).shape == (2, 3)


def test_vggface_rejects_a_wrong_file(tmp_path):
    state = _dag_state()
    state["conv3_2.wieght"] = state.pop("conv3_2.weight")
    path = tmp_path / "bad_key.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match="conv3_2.wieght") as err:
        build_model("vggface", 3, tiny=True, pretrained=path)
    assert str(path) in str(err.value)

    state = _dag_state()
    state["conv2_1.weight"] = state["conv2_1.weight"][:, :1]
    path = tmp_path / "bad_shape.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match="conv2_1.weight") as err:
        build_model("vggface", 3, tiny=True, pretrained=path)
    assert str(path) in str(err.value)

    path = tmp_path / "not_weights.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelError, match="no state_dict"):
        build_model("vggface", 3, tiny=True, pretrained=path)


@pytest.mark.parametrize("layout", ["plain", "nested", "ddp", "safetensors"])
def test_timm_local_checkpoint_drops_the_head(tmp_path, layout):
    source, _ = create_timm("resnet34", 1000, tiny=True)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in source.state_dict().items()}
    path = tmp_path / ("ckpt.safetensors" if layout == "safetensors" else "ckpt.pth")
    if layout == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    elif layout == "nested":
        torch.save({"epoch": 3, "state_dict": state}, path)
    elif layout == "ddp":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        torch.save(state, path)

    model, info = build_model("resnet34", N_CLASSES, tiny=True, pretrained=path)
    own = model.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer4.0.conv2.weight"):
        assert torch.equal(own[key], state[key])
    assert model.fc.weight.shape == (N_CLASSES, state["fc.weight"].shape[1])
    assert not torch.equal(model.fc.weight, state["fc.weight"][:N_CLASSES])
    assert info.pretrained == str(path)


def test_timm_checkpoint_must_fit_beyond_the_head(tmp_path):
    source, _ = create_timm("resnet34", 1000, tiny=True)
    state = source.state_dict()
    del state["layer2.0.conv1.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match="layer2.0.conv1.weight"):
        build_model("resnet34", N_CLASSES, tiny=True, pretrained=path)
    with pytest.raises(ModelError, match="partial.pth"):
        build_model("efficientnet_b0", N_CLASSES, tiny=True, pretrained=path)


def test_dianet_is_ordered_and_takes_batches_of_two():
    model, info = build_model("dianet", N_CLASSES, tiny=True)
    model.eval()
    onset, offset = _inputs(info, 2)
    with torch.no_grad():
        out = model(onset, offset)
        swapped = model(offset, onset)
    assert out.shape == (2, N_CLASSES)
    assert not torch.allclose(out, swapped, atol=1e-4)


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "vit_base_patch16_224"])
def test_dianet_backbone_choice(backbone):
    model, info = build_model("dianet", 3, tiny=True, backbone=backbone)
    assert info.pair and info.name == "dianet"
    assert model.eval()(*_inputs(info, 2)).shape == (2, 3)


def test_dianet_loads_the_backbone_into_both_streams(tmp_path):
    source, _ = create_timm("resnet18", 1000, tiny=True)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in source.state_dict().items()}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model, info = build_model("dianet", N_CLASSES, tiny=True, pretrained=path)
    for stream in (model.onset_stream, model.offset_stream):
        assert torch.equal(stream.backbone.conv1.weight, state["conv1.weight"])
        assert torch.equal(stream.backbone.layer3[0].bn2.weight, state["layer3.0.bn2.weight"])
    assert model.onset_stream.backbone.conv1.weight is not model.offset_stream.backbone.conv1.weight
    assert info.pretrained == str(path)


def test_learnet_loads_its_own_state_dict(tmp_path):
    source, _ = build_model("learnet", 8, tiny=True)
    path = tmp_path / "learnet.pth"
    torch.save(source.state_dict(), path)
    same, _ = build_model("learnet", 8, tiny=True, pretrained=path)
    assert torch.equal(same.head.weight, source.head.weight)  # same classes: head kept
    other, _ = build_model("learnet", 3, tiny=True, pretrained=path)
    assert torch.equal(other.branch4.conv5[0].weight, source.branch4.conv5[0].weight)
    assert other.head.weight.shape[0] == 3


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_full_size_forward(name):
    model, info = build_model(name, N_CLASSES)
    assert info.input_size == (112 if name == "learnet" else 224)
    with torch.no_grad():
        assert model.eval()(*_inputs(info, 1)).shape == (1, N_CLASSES)


def _resnet34_tiny_state(classes: int = 1000) -> dict:
    model, _ = build_model("resnet34", classes, tiny=True)
    return model.state_dict()


def test_pretrained_cache_finds_torch_hub_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    torch.hub.set_dir(str(tmp_path / "torch"))
    try:
        with pytest.raises(ModelError, match="no weights of timm model 'resnet34.a1_in1k'"):
            build_model("resnet34.a1_in1k", 5, pretrained="cache", tiny=True)
        url = timm.models.get_pretrained_cfg("resnet34.a1_in1k").url
        state = _resnet34_tiny_state()
        (tmp_path / "torch" / "checkpoints").mkdir(parents=True)
        torch.save(state, tmp_path / "torch" / "checkpoints" / url.rsplit("/", 1)[1])
        model, info = build_model("resnet34.a1_in1k", 5, pretrained="cache", tiny=True)
        assert info.pretrained.endswith(".pth")
        torch.testing.assert_close(model.state_dict()["conv1.weight"], state["conv1.weight"])
        assert model.state_dict()["fc.weight"].shape[0] == 5
    finally:
        torch.hub.set_dir(str(Path.home() / ".cache" / "torch" / "hub"))


def test_pretrained_cache_finds_hugging_face_weights(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from safetensors.torch import save_file

    hf = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    repo = hf / "models--timm--resnet34.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    state = {k: v.contiguous() for k, v in _resnet34_tiny_state().items()}
    save_file(state, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    model, info = build_model("resnet34", 3, pretrained="cache", tiny=True)
    assert info.pretrained.endswith("model.safetensors")
    torch.testing.assert_close(model.state_dict()["conv1.weight"], state["conv1.weight"])


@pytest.mark.slow
def test_registry_is_filled_on_any_import():
    """Whichever module is imported first, every model is registered (no import cycle)."""
    import subprocess
    import sys

    code = ("from mer_di.training.models.dianet import build_dianet\n"
            "from mer_di.training.models.registry import registered\n"
            "print(','.join(registered()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ",".join(ALL_MODEL_NAMES)
    assert MODEL_NAMES == ("vggface", "vgg19", "resnet34", "efficientnet_b0",
                           "vit_base_patch16_224", "learnet", "dianet")
    assert ALL_MODEL_NAMES == (*MODEL_NAMES, "ststnet", "off_apexnet")  # the flow models


# a full build of these is cheap; the others' full builds run on the meta device (no memory)
_CHEAP_FULL = {"resnet34", "efficientnet_b0", "learnet", "dianet", "resnet18", "convnext_atto",
               "deit_tiny_patch16_224"}
_METADATA_CASES = [
    *[(name, None) for name in MODEL_NAMES],
    ("resnet18", None), ("convnext_atto", None),
    ("deit_tiny_patch16_224", None),  # fixed input size, no tiny variant: fed 224 even tiny
    ("dianet", "efficientnet_b0"), ("dianet", "vit_base_patch16_224"),  # tiny ViT: fixed 32
]


@pytest.mark.parametrize("tiny", [True, False], ids=["tiny", "full"])
@pytest.mark.parametrize("name,backbone", _METADATA_CASES)
def test_metadata_without_building_equals_the_built_model(name, backbone, tiny, monkeypatch):
    from mer_di.training.models import model_cfg

    def refuse(*args, **kwargs):
        raise AssertionError("model_cfg built a module")

    with monkeypatch.context() as m:
        m.setattr(nn.Module, "__init__", refuse)
        cfg = model_cfg(name, tiny=tiny, backbone=backbone)
    if tiny or name in _CHEAP_FULL and backbone is None:
        _, info = build_model(name, 3, tiny=tiny, backbone=backbone)
    else:
        with torch.device("meta"):
            _, info = build_model(name, 3, tiny=tiny, backbone=backbone)
    assert (cfg.name, cfg.input_size, cfg.mean, cfg.std, cfg.pair) == (
        info.name, info.input_size, info.mean, info.std, info.pair)
    assert cfg.from_scratch == (name == "learnet")
    assert (cfg.weights_file is None) == cfg.from_scratch


def test_metadata_values():
    from mer_di.training.models import model_cfg
    from mer_di.training.models.vggface import VGGFACE_MEAN, VGGFACE_STD

    assert model_cfg("vggface") == model_cfg("vggface", tiny=False)
    assert (model_cfg("vggface").input_size, model_cfg("vggface", tiny=True).input_size) == (
        224, 32)
    assert (model_cfg("vggface").mean, model_cfg("vggface").std) == (VGGFACE_MEAN, VGGFACE_STD)
    assert model_cfg("vggface").weights_file == "vgg_face_dag.pth"
    learnet = model_cfg("learnet")
    assert (learnet.input_size, learnet.weights_file, learnet.from_scratch) == (112, None, True)
    assert model_cfg("learnet", tiny=True).input_size == 56
    assert model_cfg("vit_base_patch16_224").mean == (0.5, 0.5, 0.5)
    assert model_cfg("resnet34.a1_in1k").weights_file == "resnet34.a1_in1k.pth"
    assert model_cfg("mobilenetv3_small_050", tiny=True).input_size == 64
    assert model_cfg("dianet").weights_file == "resnet18.pth"
    assert model_cfg("dianet", backbone="efficientnet_b0").weights_file == "efficientnet_b0.pth"
    assert model_cfg("dianet", tiny=True).input_size == 64  # 2x2 tokens from a stride-32 CNN
    assert model_cfg("dianet", tiny=True, backbone="vit_base_patch16_224").input_size == 32
    assert model_cfg("dianet").pair and not model_cfg("resnet34").pair


def test_metadata_errors_match_build_errors():
    from mer_di.training.models import model_cfg

    names = ", ".join(ALL_MODEL_NAMES)  # the DI models and the flow models
    for call in (model_cfg, lambda name, **kw: build_model(name, 5, **kw)):
        with pytest.raises(ModelError) as err:
            call("resnet-35")
        assert str(err.value) == (f"unknown model 'resnet-35': not one of {names} and not a "
                                  "timm model name")
        with pytest.raises(ModelError) as err:
            call("learnet", backbone="resnet18")
        assert str(err.value) == ("model 'learnet' takes no backbone (got 'resnet18'); only "
                                  "dianet does")
        with pytest.raises(ModelError) as err:
            call("dianet", backbone="nope")
        assert str(err.value) == "dianet: backbone 'nope' is not a timm model name"
    with pytest.raises(ModelError, match="learnet has no timm weights to look for"):
        build_model("learnet", 5, pretrained="cache")


def _saved(path: Path, name: str, tiny: bool = True) -> Path:
    """``path`` holding the state_dict of a freshly built ``name`` with 7 classes."""
    model, _ = build_model(name, 7, tiny=tiny)
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("name,source", [("vggface", "vggface"), ("resnet34", "resnet34"),
                                         ("dianet", "resnet18"), ("resnet18", "resnet18")])
def test_check_weights_on_the_meta_device(tmp_path, monkeypatch, name, source):
    from mer_di.training.models import check_weights

    good = _saved(tmp_path / "good.pth", source)
    bad = _saved(tmp_path / "bad.pth", "learnet")
    devices = []
    load = nn.Module.load_state_dict

    def spy(self, *args, **kwargs):
        devices.append(next(self.parameters()).device.type)
        return load(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "load_state_dict", spy)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_weights(name, 5, good, tiny=True)  # fits: no error
    assert torch.equal(torch.rand(3), expected)  # the random number generator is untouched
    assert devices and set(devices) == {"meta"}  # nothing was built for real
    with pytest.raises(ModelError, match="does not fit") as err:
        check_weights(name, 5, bad, tiny=True)
    with pytest.raises(ModelError) as built:
        build_model(name, 5, tiny=True, pretrained=bad)
    assert str(err.value) == str(built.value)


def test_check_weights_of_a_full_size_model_allocates_nothing(tmp_path):
    from mer_di.training.models import check_weights

    bad = _saved(tmp_path / "bad.pth", "learnet")
    with pytest.raises(ModelError, match="vgg19: weights file .* does not fit"):
        check_weights("vgg19", 5, bad)  # 140 M parameters, on the meta device


def test_check_weights_falls_back_to_a_real_build(tmp_path, monkeypatch):
    """A model whose constructor computes with its tensors cannot be built on the meta
    device; check_weights then builds it for real, leaving the random state alone."""
    from mer_di.training.models import check_weights, learnet

    real_builds = []

    class Computing(learnet.LEARNet):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.fc.weight.abs().sum().item()  # raises on the meta device
            real_builds.append(1)

    good = _saved(tmp_path / "good.pth", "learnet")
    bad = _saved(tmp_path / "bad.pth", "resnet34")
    monkeypatch.setattr(learnet, "LEARNet", Computing)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_weights("learnet", 5, good, tiny=True)
    assert real_builds == [1]
    assert torch.equal(torch.rand(3), expected)
    with pytest.raises(ModelError, match="learnet: weights file .*bad.pth does not fit"):
        check_weights("learnet", 5, bad, tiny=True)
    assert real_builds == [1, 1]


def test_check_weights_gives_build_model_errors(tmp_path):
    from mer_di.training.models import check_weights

    good = _saved(tmp_path / "good.pth", "learnet")
    cases = [("no_such_net", 5, good, {}), ("learnet", 0, good, {"tiny": True}),
             ("learnet", 5, good, {"backbone": "resnet18"}),
             ("dianet", 5, good, {"backbone": "nope", "tiny": True}),
             ("learnet", 5, tmp_path / "missing.pth", {"tiny": True}),
             ("learnet", 5, "cache", {"tiny": True})]
    for name, n, weights, kwargs in cases:
        with pytest.raises(ModelError) as checked:
            check_weights(name, n, weights, **kwargs)
        with pytest.raises(ModelError) as built:
            build_model(name, n, pretrained=weights, **kwargs)
        assert str(checked.value) == str(built.value)
