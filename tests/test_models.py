"""The model zoo: every registered model's tiny variant trains a step, weights files load.

All models are randomly initialised; weights files are written by the tests themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mer_di.training.models import MODEL_NAMES, ModelError, ModelInfo, build_model, is_known
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
    with pytest.raises(ModelError, match="does not exist"):
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


@pytest.mark.parametrize("name", [*MODEL_NAMES, "resnet18", "convnext_atto"])
def test_metadata_without_building_equals_the_built_model(name, monkeypatch):
    from mer_di.training.models import model_cfg

    def refuse(*args, **kwargs):
        raise AssertionError("model_cfg built a module")

    with monkeypatch.context() as m:
        m.setattr(nn.Module, "__init__", refuse)
        cfg = model_cfg(name, tiny=True)
    _, info = build_model(name, 3, tiny=True)
    assert (cfg.input_size, cfg.mean, cfg.std, cfg.pair) == (
        info.input_size, info.mean, info.std, info.pair)
    assert cfg.from_scratch == (name == "learnet")
    assert (cfg.weights_file is None) == cfg.from_scratch


def test_metadata_errors_match_build_errors():
    from mer_di.training.models import model_cfg

    with pytest.raises(ModelError, match="unknown model 'resnet-35'"):
        model_cfg("resnet-35")
    with pytest.raises(ModelError, match="takes no backbone"):
        model_cfg("learnet", backbone="resnet18")
    with pytest.raises(ModelError, match="is not a timm model name"):
        model_cfg("dianet", backbone="nope")
    assert model_cfg("vggface").weights_file == "vgg_face_dag.pth"
    assert model_cfg("dianet", backbone="efficientnet_b0").weights_file == "efficientnet_b0.pth"


@pytest.mark.parametrize("name,source", [("vggface", "vggface"), ("resnet34", "resnet34"),
                                         ("dianet", "resnet18")])
def test_check_weights_on_the_meta_device(tmp_path, name, source):
    from mer_di.training.models import check_weights

    good = tmp_path / "good.pth"
    source_model, _ = build_model(source, 7, tiny=True)
    torch.save(source_model.state_dict(), good)
    check_weights(name, 5, good, tiny=True)  # fits: no error
    bad = tmp_path / "bad.pth"
    other, _ = build_model("learnet", 7, tiny=True)
    torch.save(other.state_dict(), bad)
    with pytest.raises(ModelError, match="does not fit"):
        check_weights(name, 5, bad, tiny=True)
