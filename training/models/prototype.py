"""A unit's model without re-reading its weights file: each pretrained model is built and
loaded once per process (its *prototype*), and every unit copies it and initialises only
what the file did not give (the new head; DIANet's attention) from the unit's seed.

Why: Table I is 240 units a seed; built the plain way, each unit initialised the whole
network at random (VGG-19: 143 M parameters) only to overwrite it, and read its weights
file again (up to 0.5 GB). A copy of the prototype is a memory copy.

Which parameters are the fresh ones is found, once, by building the prototype twice under
two seeds: what the file loads is the same in both, what the builder draws at random
differs. Those modules are re-initialised (``reset_parameters``, PyTorch's default
initialisation of the layer) from the unit's seed, so two units of one seed start equal.
The numbers differ from a full build under the same seed (there the head's draw came after
the whole body's), which is why a run records ``init: prototype`` in its config; a model
with a fresh module that cannot reset itself is built the plain way.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from mer_di.training.models.registry import ModelInfo, build_model

_PROTOTYPES: dict[tuple, tuple[nn.Module, ModelInfo, tuple[str, ...]] | None] = {}


def _key(name: str, num_classes: int, pretrained: str, tiny: bool, backbone: str | None):
    path = Path(pretrained)
    stamp = (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
    return (name, num_classes, str(pretrained), stamp, tiny, backbone)


def _fresh_modules(a: nn.Module, b: nn.Module) -> tuple[str, ...] | None:
    """Names of the modules whose own parameters differ between two builds (the randomly
    initialised ones); None when one of them cannot ``reset_parameters``."""
    sb = dict(b.named_parameters())
    owners = []
    for key, value in a.named_parameters():
        if not torch.equal(value, sb[key]):
            owners.append(key.rpartition(".")[0])
    owners = list(dict.fromkeys(owners))
    modules = dict(a.named_modules())
    if any(not hasattr(modules[m], "reset_parameters") for m in owners):
        return None
    return tuple(owners)


def prototype(name: str, num_classes: int, pretrained: str, tiny: bool,
              backbone: str | None):
    """The process's prototype of a pretrained model: ``(model on the CPU, info, fresh
    module names)``, or None where the model must be built the plain way."""
    key = _key(name, num_classes, pretrained, tiny, backbone)
    if key not in _PROTOTYPES:
        with torch.random.fork_rng(devices=[]):  # the run's own seeding must not see it
            torch.manual_seed(1)
            a, info = build_model(name, num_classes, pretrained=pretrained, tiny=tiny,
                                  backbone=backbone)
            torch.manual_seed(2)
            b, _ = build_model(name, num_classes, pretrained=pretrained, tiny=tiny,
                               backbone=backbone)
        fresh = _fresh_modules(a, b)
        _PROTOTYPES[key] = None if fresh is None else (a.eval(), info, fresh)
    return _PROTOTYPES[key]


def build_for_unit(name: str, num_classes: int, seed: int, *, pretrained: str | None,
                   tiny: bool = False, backbone: str | None = None
                   ) -> tuple[nn.Module, ModelInfo, str]:
    """The model a unit trains, seeded with ``seed``, and how it was made (``plain``: a
    full build under the seed; ``prototype``: a copy of the loaded prototype with its
    fresh modules initialised from the seed)."""
    proto = None
    if pretrained is not None:
        proto = prototype(name, num_classes, str(pretrained), tiny, backbone)
    torch.manual_seed(seed)
    if proto is None:
        model, info = build_model(name, num_classes, pretrained=pretrained, tiny=tiny,
                                  backbone=backbone)
        return model, info, "plain"
    template, info, fresh = proto
    model = copy.deepcopy(template).train()
    modules = dict(model.named_modules())
    for owner in fresh:
        modules[owner].reset_parameters()
    return model, info, "prototype"
