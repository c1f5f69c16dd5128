"""The model zoo: VGG-Face, timm backbones, LEARNet and DIANet, built by name.

``build_model(name, num_classes, pretrained=None, tiny=False, backbone=None)`` returns the
model and a :class:`ModelInfo` (input size, normalisation, pair or single input, weights
loaded, parameter count). See :mod:`mer_di.training.models.registry`.
"""

from mer_di.training.models.registry import (
    MODEL_NAMES,
    ModelError,
    ModelInfo,
    build_model,
    is_known,
)

__all__ = ["MODEL_NAMES", "ModelError", "ModelInfo", "build_model", "is_known"]
