"""One table of every network raycondi builds, by name, with the clip shapes each accepts.

``build_model(name, num_classes, **kwargs)`` looks the name up in ``_MODELS`` and calls its builder;
``kwargs`` go to the builder (``width=`` for ``shufflenetv2_3d`` and ``mobilenetv2_3d``, ``depth=`` for
``resnext3d``, ``depth=``, ``width=``, ``max_pool=`` and ``conv1_t_size=`` for ``resnet3d``; the torchvision
models take none). Every built model checks its input before running: a clip that is not (B, 3, T, H, W)
or that the architecture cannot take raises ``InputShapeError`` naming the model, the accepted shapes and
the received one, instead of failing deep inside a layer.

Each entry also names the model's classifier: the last layer, mapping pooled features to logits. That is
how every backbone exposes its features without a common base class: ``build_feature_extractor``
replaces that layer with ``nn.Identity`` and reads the feature width off it (the two-headed student is
built this way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from torch import nn

from raycondi.models import torchvision_video
from raycondi.models.mobilenetv2_3d import mobilenetv2_3d
from raycondi.models.resnet3d import resnet3d
from raycondi.models.resnext3d import resnext3d
from raycondi.models.shufflenetv2_3d import shufflenetv2_3d

__all__ = [
    "InputShapeError",
    "InputSpec",
    "ModelInfo",
    "build_feature_extractor",
    "build_model",
    "list_models",
    "model_info",
]


class InputShapeError(ValueError):
    """A clip whose shape the model cannot take. ``str()`` names the model, what it accepts and what it got."""

    def __init__(self, model: str, expected: str, received: tuple[int, ...]) -> None:
        self.model = model
        self.expected = expected
        self.received = received
        super().__init__(f"{model}: expected {expected}, got a clip of shape {received}")


@dataclass(frozen=True)
class InputSpec:
    """Clip shapes (B, 3, T, H, W) a model accepts: exact ``frames``/``size`` where set, else lower bounds."""

    min_frames: int = 1
    min_size: int = 1
    frames: int | None = None
    size: int | None = None

    def describe(self) -> str:
        t = f"T = {self.frames}" if self.frames is not None else f"T >= {self.min_frames}"
        hw = f"H = W = {self.size}" if self.size is not None else f"H, W >= {self.min_size}"
        return f"(B, 3, T, H, W) clips with {t} and {hw}"

    def accepts(self, shape: Sequence[int]) -> bool:
        if len(shape) != 5 or shape[1] != 3:
            return False
        t, h, w = shape[2:]
        if self.frames is not None:
            frames_ok = t == self.frames
        else:
            frames_ok = t >= self.min_frames
        if self.size is not None:
            size_ok = h == w == self.size
        else:
            size_ok = min(h, w) >= self.min_size
        return frames_ok and size_ok

    def check(self, model: str, shape: Sequence[int]) -> None:
        """Raise ``InputShapeError`` unless ``shape`` is accepted."""
        if not self.accepts(shape):
            raise InputShapeError(model, self.describe(), tuple(shape))


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry: the builder ``(num_classes, **kwargs) -> nn.Module``, the dotted path of its
    classifier (the layer mapping pooled features to logits) and the clips it accepts."""

    builder: Callable[..., nn.Module]
    classifier: str
    input_spec: InputSpec = InputSpec()


_MODELS: dict[str, ModelInfo] = {
    "shufflenetv2_3d": ModelInfo(shufflenetv2_3d, "classifier.1"),
    "mobilenetv2_3d": ModelInfo(mobilenetv2_3d, "classifier.1"),
    "resnet3d": ModelInfo(resnet3d, "fc"),
    "resnext3d": ModelInfo(resnext3d, "fc"),
    "r3d_18": ModelInfo(torchvision_video.r3d_18, "fc"),
    "mc3_18": ModelInfo(torchvision_video.mc3_18, "fc"),
    "r2plus1d_18": ModelInfo(torchvision_video.r2plus1d_18, "fc"),
    "s3d": ModelInfo(torchvision_video.s3d, "classifier.1", InputSpec(min_frames=14, min_size=224)),
    "mvit_v1_b": ModelInfo(torchvision_video.mvit_v1_b, "head.1", InputSpec(frames=16, size=224)),
    "swin3d_t": ModelInfo(torchvision_video.swin3d_t, "head"),
}


def list_models() -> list[str]:
    """Names accepted by ``build_model`` and ``build_student``, sorted."""
    return sorted(_MODELS)


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; ``ValueError`` listing the known names if there is none."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def _check_input(name: str, spec: InputSpec, module: nn.Module, args: tuple) -> None:
    spec.check(name, tuple(args[0].shape))


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the untrained network ``name`` with ``num_classes`` outputs; it checks its input shapes."""
    info = model_info(name)
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
    model = info.builder(num_classes, **kwargs)
    model.register_forward_pre_hook(partial(_check_input, name, info.input_spec))
    return model


def build_feature_extractor(name: str, **kwargs) -> tuple[nn.Module, int]:
    """Build ``name`` with its classifier replaced by ``nn.Identity``.

    Returns the network, which maps a clip to a (B, D) feature vector (everything before the classifier,
    dropout included, still runs), and D.
    """
    info = model_info(name)
    model = build_model(name, num_classes=1, **kwargs)
    classifier = model.get_submodule(info.classifier)
    if isinstance(classifier, nn.Linear):
        feature_dim = classifier.in_features
    elif isinstance(classifier, nn.Conv3d):  # s3d classifies with a 1x1x1 convolution, then averages
        feature_dim = classifier.in_channels
    else:
        raise TypeError(f"{name}: classifier {info.classifier!r} is a {type(classifier).__name__}")
    model.set_submodule(info.classifier, nn.Identity())
    return model, feature_dim
