"""timm backbones (VGG-19, ResNet-34, EfficientNet-B0, ViT-B/16 and any other timm name).

Every model is ``timm.create_model(name, pretrained=False, num_classes=...)``: nothing is
downloaded. A local checkpoint is loaded by :func:`load_timm_weights` (rules in
:mod:`mer_di.training.models.weights`): the checkpoint's classifier (the keys under the pretrained
cfg's ``classifier`` and the model's ``get_classifier()`` module) is dropped where its shape
differs from the model's, so a 1000-class ImageNet head gives way to a fresh ``num_classes``
head; every other key must match. A torchvision VGG state_dict (``features.*``,
``classifier.{0,3,6}.*``) is converted to timm's layout first, with timm's own converter.

Mean, std and input size come from timm's pretrained cfg for the name (its default tag, or
the tag given as ``name.tag``): ImageNet's for vgg19, resnet34 and efficientnet_b0, 0.5 for
``vit_base_patch16_224`` (its default ``augreg2_in21k_ft_in1k`` weights). A weights file of a
different tag may want different ones: name the tag.

Tiny variants (``tiny=True``), same timm classes with minimal sizes, for tests and CPU demos:

- ``vgg11/13/16/19[_bn]``: timm ``VGG`` with the same conv layout at widths 8-32 and a
  64-unit hidden layer, input 32;
- ``resnet18/34`` (BasicBlock), ``resnet50/101/152`` (Bottleneck): timm ``ResNet`` with one
  block per stage, widths 16-128, input 32;
- ``efficientnet_b0``..``b7``: timm's EfficientNet-B generator with channel multiplier 0.25 and
  depth multiplier 0.1 (one block per stage), input 32;
- ``vit_{tiny,small,base,large}_patch*``: timm ``VisionTransformer`` with image 32, patch 8,
  width 32, one block, two heads;
- any other timm name: no smaller variant is defined; the full model is built and fed 64x64
  (its pretrained input size if the model needs a fixed one).

Input: ``x`` [shape=(B, 3, S, S)]; output logits [shape=(B, num_classes)].
"""

from __future__ import annotations

import re
from pathlib import Path

import timm
from timm.models import get_pretrained_cfg
from torch import nn

from mer_di.errors import ModelError
from mer_di.training.models.registry import ModelCfg, as_triple, register_model
from mer_di.training.models.weights import load_matching, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TINY_INPUT = 32
TINY_FALLBACK_INPUT = 64

_VGG = re.compile(r"vgg(11|13|16|19)(_bn)?")
_RESNET = re.compile(r"resnet(18|34|50|101|152)")
_EFFNET_B = re.compile(r"efficientnet_b[0-7]")
_VIT = re.compile(r"vit_(tiny|small|base|large)_patch\d+_\d+")


def arch_of(name: str) -> str:
    """The architecture part of a timm name (``resnet34.a1_in1k`` -> ``resnet34``)."""
    return name.split(".", 1)[0]


def timm_cfg(name: str) -> dict:
    """timm's pretrained cfg for ``name`` as a dict (empty when timm has none)."""
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:  # an unknown tag
        raise ModelError(f"timm model {name!r}: {exc}") from exc
    return cfg.to_dict() if cfg is not None else {}


def norm_of(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) the pretrained weights of ``name`` expect on [0, 1] images."""
    cfg = timm_cfg(name)
    return as_triple(cfg.get("mean") or IMAGENET_MEAN), as_triple(cfg.get("std") or IMAGENET_STD)


def create_timm(name: str, num_classes: int, *, tiny: bool = False,
                **kwargs) -> tuple[nn.Module, int]:
    """A randomly initialised timm model and the square input side it is fed.

    ``kwargs`` go to the model's constructor (e.g. ``global_pool=''`` for a feature
    extractor); ``num_classes=0`` leaves the classifier out.
    """
    if tiny:
        built = _create_tiny(arch_of(name), num_classes, **kwargs)
        if built is not None:
            return built, TINY_INPUT
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"timm model {name!r} could not be built: {exc}") from exc
    return model, input_side(name, tiny)


def _has_tiny(arch: str) -> bool:
    return any(p.fullmatch(arch) for p in (_VGG, _RESNET, _EFFNET_B, _VIT))


def input_side(name: str, tiny: bool = False) -> int:
    """The square input side (pixels) timm model ``name`` is fed: its pretrained cfg's;
    tiny: :data:`TINY_INPUT` for the families with a tiny variant, otherwise at most
    :data:`TINY_FALLBACK_INPUT` unless the model needs its own size."""
    if tiny and _has_tiny(arch_of(name)):
        return TINY_INPUT
    cfg = timm_cfg(name)
    side = int((cfg.get("input_size") or (3, 224, 224))[-1])
    if tiny and not cfg.get("fixed_input_size", False):
        side = min(side, TINY_FALLBACK_INPUT)
    return side


def fixed_size(name: str, tiny: bool = False) -> bool:
    """Whether the model needs exactly its input side (a ViT's patch embedding)."""
    if tiny and _has_tiny(arch_of(name)):
        return bool(_VIT.fullmatch(arch_of(name)))  # the tiny ViT is built for 32 only
    return bool(timm_cfg(name).get("fixed_input_size", False))


def _create_tiny(arch: str, num_classes: int, **kwargs) -> nn.Module | None:
    if m := _VGG.fullmatch(arch):
        from timm.models.vgg import VGG, cfgs

        width = {64: 8, 128: 16, 256: 32, 512: 32}
        cfg = [v if v == "M" else width[v] for v in cfgs[f"vgg{m.group(1)}"]]
        norm = nn.BatchNorm2d if m.group(2) else None
        # ConvMlp's hidden layer is 4096 * mlp_ratio = 64 units
        return VGG(cfg, num_classes=num_classes, mlp_ratio=1 / 64, norm_layer=norm, **kwargs)
    if m := _RESNET.fullmatch(arch):
        from timm.models.resnet import BasicBlock, Bottleneck, ResNet

        block = BasicBlock if m.group(1) in ("18", "34") else Bottleneck
        return ResNet(block, [1, 1, 1, 1], num_classes=num_classes, stem_width=16,
                      channels=(16, 32, 64, 128), **kwargs)
    if _EFFNET_B.fullmatch(arch):
        from timm.models import efficientnet

        return efficientnet._gen_efficientnet(arch, channel_multiplier=0.25,
                                              depth_multiplier=0.1, num_classes=num_classes,
                                              **kwargs)
    if _VIT.fullmatch(arch):
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(img_size=TINY_INPUT, patch_size=8, embed_dim=32, depth=1,
                                 num_heads=2, num_classes=num_classes, **kwargs)
    return None


def head_prefixes(model: nn.Module, name: str) -> tuple[str, ...]:
    """The module names of ``model``'s classifier: timm's cfg ``classifier`` and the module
    ``get_classifier()`` returns."""
    found = timm_cfg(name).get("classifier") or ()
    prefixes = {found} if isinstance(found, str) else set(found)
    get = getattr(model, "get_classifier", None)
    if get is not None:
        head = get()
        heads = head if isinstance(head, tuple | list) else (head,)
        for module_name, module in model.named_modules():
            if any(module is h for h in heads) and module_name:
                prefixes.add(module_name)
    return tuple(sorted(prefixes))


def load_timm_weights(model: nn.Module, name: str, path: str | Path,
                      what: str | None = None) -> None:
    """Load a local checkpoint of timm model ``name`` into ``model``, head excepted."""
    state = read_state_dict(path)
    if _VGG.fullmatch(arch_of(name)) and any(k.startswith("classifier.") for k in state):
        from timm.models.vgg import _filter_fn  # torchvision layout -> timm's

        state = _filter_fn(state)
    load_matching(model, state, path, head_prefixes(model, name), what=what or name)


def cached_weights(name: str) -> Path | None:
    """The local file of timm's pretrained weights for ``name``, when a download made
    earlier left it in the Hugging Face hub cache (``HF_HUB_CACHE``, by default
    ``~/.cache/huggingface/hub``) or the torch hub cache (``torch.hub.get_dir()``,
    ``checkpoints/``); None otherwise. Looks only: nothing is downloaded."""
    cfg = timm_cfg(name)
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = hub_id.partition("@")
        names = [cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin",
                 "open_clip_pytorch_model.bin"]
        for filename in dict.fromkeys(n for n in names if n):
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    url = cfg.get("url")
    if url:
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if path.is_file():
            return path
    return None


def obtain_timm(name: str, backbone: str | None = None) -> str:
    """Where timm model ``name``'s pretrained weights come from, in one sentence."""
    name = backbone or name
    cfg = timm_cfg(name)
    hub = cfg.get("hf_hub_id") or ""
    source = f"Hugging Face hub repository {hub.partition('@')[0]}" if hub else (
        cfg.get("url") or "timm's default weights")
    tag = cfg.get("tag")
    full = f"{arch_of(name)}.{tag}" if tag else name
    return (f"timm's weights for it are {full!r} ({source}): on a machine that is online, "
            f"`python -c \"import timm; timm.create_model('{full}', pretrained=True)\"` "
            "downloads them into the hub cache (then --pretrained MODEL=cache), or save that "
            "model's state_dict with torch.save and give the file")


def hub_file(name: str) -> Path:
    """``--pretrained hub``: timm's weights for ``name`` where a download left them, else
    downloaded now (the Hugging Face hub, or the cfg's URL into the torch hub cache);
    :class:`ModelError` saying so when the download fails (an offline machine)."""
    found = cached_weights(name)
    if found is not None:
        return found
    cfg = timm_cfg(name)
    hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    try:
        if hub_id:
            from huggingface_hub import hf_hub_download

            repo, _, revision = hub_id.partition("@")
            return Path(hf_hub_download(repo, cfg.get("hf_hub_filename") or "model.safetensors",
                                        revision=revision or None))
        if url:
            import torch.hub

            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=False)
            return path
    except Exception as exc:  # network, offline mode, HTTP and hub errors have many types
        raise ModelError(f"--pretrained hub: timm's weights for {name!r} could not be "
                         f"downloaded ({type(exc).__name__}: {str(exc)[:200]}); is this "
                         "machine offline? " + obtain_timm(name)) from None
    raise ModelError(f"--pretrained hub: timm publishes no weights for {name!r}")


def cached_file(name: str) -> Path:
    """The local file of timm's weights for ``name`` (:func:`cached_weights`), for
    ``--pretrained cache``; :class:`ModelError` saying where it looked when there is none."""
    found = cached_weights(name)
    if found is None:
        import torch.hub

        raise ModelError(f"--pretrained cache: no weights of timm model {name!r} in the "
                         "Hugging Face hub cache or in "
                         f"{Path(torch.hub.get_dir()) / 'checkpoints'} (nothing is "
                         "downloaded); give a weights file with --pretrained FILE")
    return found


def timm_model_cfg(name: str, tiny: bool, backbone: str | None) -> ModelCfg:
    """A timm model's input side and normalisation from timm's pretrained cfg (the name's
    tag, or its default one); its weights file is ``<name>.pth``."""
    mean, std = norm_of(name)
    return ModelCfg(name, input_side(name, tiny), mean, std, pair=False,
                    weights_file=f"{name}.pth")


def _build_timm(name: str, num_classes: int, pretrained: str | Path | None, tiny: bool,
                backbone: str | None) -> nn.Module:
    model, _ = create_timm(name, num_classes, tiny=tiny)
    if pretrained is not None:
        load_timm_weights(model, name, pretrained)
    return model


for _name in ("vgg19", "resnet34", "efficientnet_b0", "vit_base_patch16_224"):
    register_model(_name, timm_model_cfg, _build_timm, cached=cached_file, obtain=obtain_timm,
                   hub=hub_file)
register_model(None, timm_model_cfg, _build_timm, cached=cached_file, known=timm.is_model,
               obtain=obtain_timm, hub=hub_file)
