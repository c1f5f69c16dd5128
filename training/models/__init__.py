"""The model zoo: VGG-Face, timm backbones, LEARNet and DIANet (fed dynamic images), and
the flow models STSTNet and OFF-ApexNet (fed optical flow), by name.

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

# each model's module registers its models on import; this order is the names' order
for _module in ("vggface", "timm_models", "learnet", "dianet", "flow_models"):
    importlib.import_module(f"{__name__}.{_module}")
ALL_MODEL_NAMES: tuple[str, ...] = registered()
# the models fed dynamic images (the configurations of Table I train each of them), and
# those fed a clip's optical flow (ModelCfg.input_kind "flow": a cache with flow phases)
MODEL_NAMES: tuple[str, ...] = tuple(n for n in ALL_MODEL_NAMES
                                     if model_cfg(n).input_kind == "di")
FLOW_MODEL_NAMES: tuple[str, ...] = tuple(n for n in ALL_MODEL_NAMES
                                          if model_cfg(n).input_kind == "flow")

__all__ = ["ALL_MODEL_NAMES", "FLOW_MODEL_NAMES", "MODEL_NAMES", "ModelCfg", "ModelError",
           "ModelInfo", "build_model", "check_weights", "is_known", "model_cfg",
           "register_model"]
