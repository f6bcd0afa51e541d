"""Model checkpoints: a directory (local path or ``s3://`` URI) holding ``config.json`` and ``model.pt``.

``config.json`` is a ``CheckpointConfig``: what to build (registry name, builder kwargs, plain model or
two-headed student, number of classes) and how to feed it -- like torchvision's ``Weights.transforms``, the
preprocessing travels with the weights: class names, clip length, frame step, the resize, the crop and the
normalisation (:func:`raycondi.models.preprocess.model_input` applies them). ``model.pt`` is the model's
``state_dict`` written by ``torch.save``. :func:`read_checkpoint_config` reads ``config.json`` alone, for
drivers that need to know what a checkpoint is without loading its weights.

Loading never unpickles arbitrary objects: ``model.pt`` is read with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers, and the model itself is rebuilt from ``config.json``
through the registry. Every way a checkpoint directory can be wrong -- a missing file, a config that is
not JSON or not a config, an architecture the registry does not know, a ``model.pt`` that is not a plain
state dict or does not fit the architecture -- raises ``CheckpointError`` naming the file and the reason.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from raycondi.models.registry import build_model
from raycondi.models.student import build_student
from raycondi.video.decode import Size, check_size, frame_size
from raycondi.video.storage import StorageOptions, UriError, exists, join, read_bytes, write_bytes

__all__ = [
    "CONFIG_FILE",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "MODEL_FILE",
    "CheckpointConfig",
    "CheckpointError",
    "load_checkpoint",
    "read_checkpoint_config",
    "save_checkpoint",
]

CONFIG_FILE = "config.json"
MODEL_FILE = "model.pt"

# Per-channel RGB statistics of Kinetics-400 on [0, 1] pixels, as torchvision's video models use.
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)

logger = logging.getLogger("raycondi.checkpoint")
_ASSUMED: set[str] = set()  # config.json files whose missing resize was already reported in this process


class CheckpointError(UriError):
    """A checkpoint file that is missing or does not hold what it should. ``str()`` = f"{uri}: {reason}"."""


@dataclass(frozen=True)
class CheckpointConfig:
    """Everything needed to rebuild a model and feed it clips; stored as ``config.json``.

    Attributes:
        architecture: a name from ``raycondi.models.list_models()``.
        num_classes: number of class logits.
        student: True for a two-headed student (``build_student``), False for ``build_model``.
        model_kwargs: the builder's keyword arguments (e.g. ``{"width": 1.0}``); JSON values only.
        class_names: the label of each class index, or empty when unknown.
        clip_len: frames per clip.
        resize: how a decoded frame is resized before the crop (:class:`raycondi.video.decode.ClipSpec`'s
            ``size``): a short side ``S``, the centre ``S x S`` kept (``prepare --size S``), or a fixed
            ``(H, W)`` (torchvision's Kinetics weights: 128 x 171). None (the default) is ``crop_size``: no
            margin around the crop. Training records the shards' resize; ``label`` decodes at it.
        crop_size: height and width of the model's input: the centre ``crop_size`` square of the resized
            frame at inference, a random one in training.
        frame_step: the model sees frames ``0, frame_step, 2 frame_step, ...`` of each ``clip_len``-frame clip
            (``ceil(clip_len / frame_step)`` frames over the same time span); 1, the paper's input, sees every
            frame. A student with ``frame_step > 1`` lets the labelling job skim: convert only those frames.
        mean, std: per-channel RGB normalisation of [0, 1] pixels: ``(x - mean) / std``.
    """

    architecture: str
    num_classes: int
    student: bool = False
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    clip_len: int = 16
    crop_size: int = 112
    resize: Size | None = None
    frame_step: int = 1
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    def __post_init__(self) -> None:
        # JSON gives lists; store tuples so a loaded config equals the saved one.
        for name in ("class_names", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        scalar_types = {"architecture": str, "student": bool, "num_classes": int, "clip_len": int, "crop_size": int,
                        "frame_step": int}
        problems = [
            f"{name} must be {kind.__name__}, got {getattr(self, name)!r}"
            for name, kind in scalar_types.items()
            if type(getattr(self, name)) is not kind  # exact: True is not a num_classes
        ]
        if problems:
            raise ValueError("invalid CheckpointConfig: " + "; ".join(problems))
        try:
            object.__setattr__(self, "resize", check_size(self.crop_size if self.resize is None else self.resize,
                                                          "resize"))
        except ValueError as error:
            raise ValueError(f"invalid CheckpointConfig: {error}") from None
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        if self.class_names and len(self.class_names) != self.num_classes:
            problems.append(f"{len(self.class_names)} class_names for num_classes={self.num_classes}")
        if self.clip_len < 1 or self.crop_size < 1:
            problems.append(f"clip_len and crop_size must be >= 1, got {self.clip_len} and {self.crop_size}")
        if min(self.frame_size) < self.crop_size:
            problems.append(f"resize {self.resize!r} gives {self.frame_size[0]}x{self.frame_size[1]} frames, "
                            f"smaller than crop_size {self.crop_size}")
        if not 1 <= self.frame_step <= self.clip_len:
            problems.append(f"frame_step must be in [1, clip_len={self.clip_len}], got {self.frame_step}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append(f"mean and std need 3 values each, std > 0; got {self.mean} and {self.std}")
        if problems:
            raise ValueError("invalid CheckpointConfig: " + "; ".join(problems))

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(H, W)`` of the resized frames the crop is taken from."""
        return frame_size(self.resize)

    def build(self) -> nn.Module:
        """The untrained model this config describes."""
        builder = build_student if self.student else build_model
        return builder(self.architecture, self.num_classes, **self.model_kwargs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckpointConfig:
        """Parse ``to_json``'s output; ``ValueError`` for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"unknown keys {unknown}")
        try:
            return cls(**data)
        except TypeError as e:  # a missing required key or a value of the wrong type
            raise ValueError(str(e)) from None


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel/DataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def state_dict_mismatch(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], *, names: int = 5
) -> str | None:
    """How ``found`` differs from ``expected``: the missing, unexpected and mis-shaped tensors (counts, and the
    first ``names`` of each by name), or None if it fits."""

    def listing(keys: list[str]) -> str:
        return ", ".join(keys[:names]) + (f" and {len(keys) - names} more" if len(keys) > names else "")

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(found[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({listing(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({listing(unexpected)})")
    if reshaped:
        problems.append(f"{len(reshaped)} shapes differ, saved vs expected ({listing(reshaped)})")
    return "; ".join(problems) or None


def save_checkpoint(
    model: nn.Module, directory: str, config: CheckpointConfig, *, storage: StorageOptions | None = None
) -> None:
    """Write ``model.pt`` (``model``'s state dict, on the CPU), then ``config.json``, under ``directory``.

    ``directory`` is a local path or an ``s3://`` URI. ``config.json`` is written last, so a directory
    that has one also has the complete weights.

    ``model`` may be wrapped in DDP or ``torch.compile``. Raises ``ValueError`` before writing anything if
    its state dict does not fit the architecture ``config`` describes (checked on the meta device, so it
    costs no memory) or ``config.model_kwargs`` is not JSON.
    """
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    with torch.device("meta"):
        expected = config.build().state_dict()
    if problem := state_dict_mismatch(expected, state):
        raise ValueError(f"model does not fit {config.architecture} ({'student' if config.student else 'model'}, "
                         f"{config.num_classes} classes, {config.model_kwargs}): {problem}")
    try:
        config_json = config.to_json()
    except TypeError as e:
        raise ValueError(f"config.model_kwargs must hold JSON values: {e}") from None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(join(directory, MODEL_FILE), buffer.getvalue(), storage)
    write_bytes(join(directory, CONFIG_FILE), config_json.encode(), storage)


def _read(uri: str, storage: StorageOptions | None) -> bytes:
    if not exists(uri, storage):
        raise CheckpointError(uri, "missing; a checkpoint directory holds config.json and model.pt")
    return read_bytes(uri, storage)


def read_checkpoint_config(directory: str, *, storage: StorageOptions | None = None) -> CheckpointConfig:
    """The :class:`CheckpointConfig` in ``directory``'s ``config.json``, without reading the weights.

    A config written before raycondi recorded the resize loads with ``resize = crop_size`` (what ``raycondi
    label`` then decoded at), and a warning (logger ``raycondi.checkpoint``, once per file and process) says
    so and how to record the real one. Raises ``CheckpointError`` naming the file for a missing, non-UTF-8 or
    invalid ``config.json``; other storage failures stay ``StorageError``.
    """
    uri = join(directory, CONFIG_FILE)
    try:
        text = _read(uri, storage).decode()
        config = CheckpointConfig.from_json(text)
    except UnicodeDecodeError as e:
        raise CheckpointError(uri, f"not UTF-8 text: {e}") from None
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(uri, f"not a raycondi checkpoint config: {e}") from None
    if "resize" not in json.loads(text) and uri not in _ASSUMED:
        _ASSUMED.add(uri)
        logger.warning("%s records no resize (written before raycondi recorded its preprocessing): assuming "
                       "frames resized to a short side of crop_size = %d pixels; if the model was trained on "
                       "`prepare --size S` clip shards, add \"resize\": S to it", uri, config.crop_size)
    return config


def load_checkpoint(
    directory: str, *, map_location: str | torch.device = "cpu", storage: StorageOptions | None = None
) -> tuple[nn.Module, CheckpointConfig]:
    """Rebuild the model saved under ``directory`` (local path or ``s3://`` URI) and load its weights.

    Returns ``(model, config)``; the model is in training mode, as ``build_model`` returns it (call
    ``.eval()`` for inference). Raises ``CheckpointError`` naming the file for a missing, unreadable or
    mismatched ``config.json`` or ``model.pt``; storage failures other than a missing file (network,
    permissions) stay ``StorageError``.
    """
    config_uri = join(directory, CONFIG_FILE)
    model_uri = join(directory, MODEL_FILE)
    config = read_checkpoint_config(directory, storage=storage)
    try:
        with torch.device("meta"):  # no memory and no init work for weights that are about to be replaced
            model = config.build()
    except (ValueError, TypeError) as e:
        raise CheckpointError(config_uri, f"cannot build the model it describes: {e}") from None

    data = _read(model_uri, storage)
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # weights_only refusals are pickle.UnpicklingError; corrupt archives RuntimeError
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(model_uri, f"refused: not a plain state dict of tensors ({first_line})") from None
    del data
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(model_uri, f"refused: expected a state dict of tensors, got {type(state).__name__}")
    if problem := state_dict_mismatch(model.state_dict(), state):
        raise CheckpointError(model_uri, f"does not fit {config.architecture} as described in {CONFIG_FILE}: {problem}")
    model.load_state_dict(state, assign=True)  # the loaded tensors become the weights: one copy, not two
    return model.to(map_location), config


def for_inference(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """``model`` in eval mode on ``device``, laid out for the fastest inference there.

    On CPU, a model with 3D convolutions gets its weights in ``channels_last_3d`` (NDHWC), where oneDNN runs
    them faster, depthwise ones most of all. ``benchmarks/model_throughput.py`` on the 2-core VM, fp32,
    clips/s contiguous -> NDHWC: at 16x112x112, batch 8, ShuffleNetV2 1.0x 32.9 -> 46.4, 2.0x 16.5 -> 28.6,
    MobileNetV2 1.0x 7.3 -> 14.6, ResNeXt-101 3.1 -> 3.9, R3D-18 1.4 -> 1.6, 3D ResNet-10 0.25x 47.6 -> 53.0; at
    8x32x32, batch 32, the small preset's 3D ResNet-10 teacher 599 -> 904 and student 1800 -> 2781, ResNeXt-50
    71 -> 102. (One early run had ResNeXt-101 2.0 -> 1.7; three later ones all had NDHWC faster.) Inputs need
    no conversion: a (B, T, H, W, 3) clip batch permuted to (B, 3, T, H, W) already has NDHWC strides. On CUDA
    the layout is left as is (measure it on the GPU first).
    """
    model = model.eval().to(device)
    if torch.device(device).type == "cpu" and any(isinstance(m, nn.Conv3d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last_3d)
    return model
