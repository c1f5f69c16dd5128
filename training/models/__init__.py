"""The model zoo: VGG-Face, timm backbones, LEARNet and DIANet, by name.

Each model's module registers its metadata and builder (:func:`register_model`);
:func:`model_cfg` reads a model's metadata without building it, :func:`build_model` builds
it (random initialisation or a local weights file), :func:`check_weights` checks a weights
file cheaply. See :mod:`mer_di.training.models.registry`.
"""

import importlib

from mer_di.training.models.registry import (
    ModelCfg,
    ModelError,
    ModelInfo,
    build_model,
    check_weights,
    is_known,
    model_cfg,
    register_model,
    registered,
)

# each model's module registers its models on import; this order is MODEL_NAMES' order
for _module in ("vggface", "timm_models", "learnet", "dianet"):
    importlib.import_module(f"{__name__}.{_module}")
MODEL_NAMES: tuple[str, ...] = registered()

__all__ = ["MODEL_NAMES", "ModelCfg", "ModelError", "ModelInfo", "build_model", "check_weights",
           "is_known", "model_cfg", "register_model"]
