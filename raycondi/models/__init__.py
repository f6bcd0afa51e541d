"""raycondi's networks: the paper's 3D CNNs, torchvision's video classifiers, the two-headed student,
and checkpoints. Build by name with ``build_model``/``build_student``; ``list_models()`` names them all."""

from raycondi.models.checkpoint import (
    CheckpointConfig,
    CheckpointError,
    for_inference,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from raycondi.models.preprocess import model_input
from raycondi.models.registry import (
    InputShapeError,
    InputSpec,
    ModelInfo,
    build_feature_extractor,
    build_model,
    list_models,
    model_info,
)
from raycondi.models.student import TwoHeadedStudent, build_student

__all__ = [
    "CheckpointConfig",
    "CheckpointError",
    "InputShapeError",
    "InputSpec",
    "ModelInfo",
    "TwoHeadedStudent",
    "build_feature_extractor",
    "build_model",
    "build_student",
    "for_inference",
    "list_models",
    "load_checkpoint",
    "model_info",
    "model_input",
    "read_checkpoint_config",
    "save_checkpoint",
]
