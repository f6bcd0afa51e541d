"""Checkpoints from the weights users already have (``raycondi import-weights``).

A weights file -- local or ``s3://``, read with ``torch.load(weights_only=True)`` only, so a file that holds
a pickled object is refused before any of its code could run -- becomes a raycondi checkpoint directory
(:mod:`raycondi.models.checkpoint`): the architecture and its builder's arguments, the classes, and the
preprocessing the weights were trained with, which ``label``, ``evaluate`` and training then apply.

Formats (:data:`FORMATS`; ``auto`` detects them):

- ``state-dict``: ``torch.save(model.state_dict())``, torchvision's hub files among them;
- ``checkpoint``: a training checkpoint, a dict whose ``state_dict`` (or ``model``) entry is the state dict;
  its other entries (epoch, optimizer, ...) are ignored;
- ``efficient-3dcnns``: either of them from Köpüklü et al.'s Efficient-3DCNNs, whose ShuffleNetV2 units hold
  flat ``banch1``/``banch2`` Sequentials where raycondi's nest one per conv-bn(-relu) group. Its ResNeXt and
  MobileNetV2 names are raycondi's already.

In all of them the prefixes ``module.`` (``nn.DataParallel``, DDP) and ``_orig_mod.`` (``torch.compile``) are
stripped. With ``torchvision_weights`` (an enum member such as ``R2Plus1D_18_Weights.KINETICS400_V1``) the
architecture, the class names and the preprocessing come from torchvision's own metadata, offline; only the
file comes from ``source``.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from raycondi.models.checkpoint import (
    CONFIG_FILE,
    KINETICS_MEAN,
    KINETICS_STD,
    CheckpointConfig,
    CheckpointError,
    save_checkpoint,
    state_dict_mismatch,
)
from raycondi.models.registry import model_info
from raycondi.video.decode import Size
from raycondi.video.storage import StorageError, StorageOptions, exists, join, read_bytes, read_lines

__all__ = ["FORMATS", "ImportConfig", "ImportSummary", "import_weights", "read_classes", "torchvision_metadata"]

FORMATS = ("auto", "state-dict", "checkpoint", "efficient-3dcnns")
_STATE_KEYS = ("state_dict", "model")  # where training scripts keep the state dict in a checkpoint
_WRAPPERS = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
_REFERENCE_BRANCH = re.compile(r"\.banch([12])\.")


@dataclass(frozen=True)
class ImportConfig:
    """What ``raycondi import-weights`` reads, builds and writes.

    Attributes:
        source: the weights file (local or ``s3://``).
        out: the checkpoint directory to write (local or ``s3://``); it must not hold a checkpoint yet.
        architecture: a name from ``list_models()``; None with ``torchvision_weights``, which names it.
        model_kwargs: the builder's arguments (``--option depth=101``).
        classes: a class-index file (UCF-101's ``classInd.txt``: ``1 ApplyEyeMakeup``), a file of one name
            per line, or a number (``"101"``); None keeps the classifier's class count, without names
            (torchvision's: its 400 Kinetics names).
        clip_len, crop_size, resize, mean, std: the preprocessing the weights expect (``CheckpointConfig``'s
            fields); None takes torchvision's with ``torchvision_weights``, else 16 frames, a 112 crop, a
            resize to the crop, and torchvision's Kinetics-400 mean and std.
        student: import the classifier as the class head of a two-headed student; its confidence head is new.
        format: one of :data:`FORMATS`.
        torchvision_weights: a torchvision weights enum member, ``R2Plus1D_18_Weights.KINETICS400_V1``.
        new_classifier: when ``classes`` differ from the classifier's, replace the last layer with a freshly
            initialised one (to fine-tune) instead of refusing.
    """

    source: str
    out: str
    architecture: str | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    classes: str | None = None
    clip_len: int | None = None
    crop_size: int | None = None
    resize: Size | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    student: bool = False
    format: str = "auto"
    torchvision_weights: str | None = None
    new_classifier: bool = False
    storage: StorageOptions | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"--format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if (self.architecture is None) == (self.torchvision_weights is None):
            raise ValueError("give exactly one of --architecture and --torchvision-weights")


@dataclass(frozen=True)
class ImportSummary:
    """What was imported: the checkpoint written, the format read, the tensors read from the file, and the
    classifier that ``new_classifier`` made new (its dotted name), if any."""

    out: str
    config: CheckpointConfig
    format: str
    tensors: int
    replaced: str | None = None


def torchvision_metadata(name: str) -> dict[str, Any]:
    """The architecture, class names and preprocessing of the torchvision weights enum member ``name``
    (``R3D_18_Weights.KINETICS400_V1``), from torchvision itself: nothing is downloaded. The clip length is the
    one torchvision's documentation of the weights evaluates them at (``clip_len=16``; S3D's 128)."""
    from torchvision.models import get_model_weights, get_weight, list_models, video

    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError, TypeError):
        raise ValueError(f"--torchvision-weights {name!r}: not a torchvision weights enum member, e.g. "
                         "R2Plus1D_18_Weights.KINETICS400_V1") from None
    architecture = next((model for model in list_models(module=video) if get_model_weights(model) is type(weights)),
                        None)
    try:
        model_info(architecture or "")
    except ValueError as error:
        raise ValueError(f"--torchvision-weights {name!r}: {architecture or 'its model'} is not a video "
                         f"classifier raycondi builds ({error})") from None
    transforms = weights.transforms()
    resize = list(transforms.resize_size)
    clip_len = re.search(r"clip_len=(\d+)", weights.meta.get("_docs", ""))  # stated only in the docs
    return {
        "architecture": architecture,
        "class_names": tuple(weights.meta["categories"]),
        **({"clip_len": int(clip_len[1])} if clip_len else {}),
        "crop_size": transforms.crop_size[0],
        "resize": resize[0] if len(resize) == 1 else tuple(resize),  # [S]: short side; [H, W]: fixed
        "mean": tuple(transforms.mean),
        "std": tuple(transforms.std),
    }


def read_classes(text: str, storage: StorageOptions | None = None) -> tuple[int, tuple[str, ...]]:
    """``--classes``: ``(num_classes, class_names)`` from a number, a ``classInd.txt`` (``index name`` lines,
    indices 1..N or 0..N-1 in any order) or a file of one name per line; ``ValueError`` naming what is wrong."""
    if text.isdigit():
        if int(text) < 1:
            raise ValueError(f"--classes {text}: expected a number >= 1 or a file of class names")
        return int(text), ()
    if not exists(text, storage):
        raise ValueError(f"--classes {text}: neither a number nor an existing file of class names")
    try:
        lines = [line for _, line in read_lines(text, storage)]
    except (StorageError, UnicodeDecodeError) as error:
        raise ValueError(f"--classes {text}: cannot read class names ({error})") from None
    indexed = [re.fullmatch(r"(\d+)\s+(\S.*)", line) for line in lines]
    if lines and all(indexed):
        by_index = {int(m[1]): m[2].strip() for m in indexed}
        first = min(by_index)
        if first not in (0, 1) or sorted(by_index) != list(range(first, first + len(lines))):
            raise ValueError(f"--classes {text}: the class indices are not 1..N (or 0..N-1), each once")
        names = tuple(by_index[i] for i in sorted(by_index))
    else:
        names = tuple(lines)
    if not names:
        raise ValueError(f"--classes {text}: the file holds no class names")
    if len(set(names)) != len(names):
        raise ValueError(f"--classes {text}: class names repeat")
    return len(names), names


def _load(config: ImportConfig) -> object:
    if not exists(config.source, config.storage):
        raise CheckpointError(config.source, "no such weights file or object")
    try:
        data = read_bytes(config.source, config.storage)
    except StorageError as error:
        raise CheckpointError(config.source, f"cannot read the weights file: {error.reason}") from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if found := re.search(r"Unsupported global: GLOBAL (\S+)", str(e)):  # what weights_only refuses
            raise CheckpointError(config.source, f"refused: it holds a pickled object ({found[1]}), not only "
                                                 "tensors and plain containers, and raycondi never unpickles code; "
                                                 "save the weights with torch.save(model.state_dict())") from None
        raise CheckpointError(config.source, "not a file torch.save wrote (not a pickle of tensors)") from None
    except Exception as e:  # not a torch.save file: truncated, another archive, empty
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(config.source, f"not a file torch.save wrote ({detail})") from None


def _is_state_dict(value: object) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _state_dict(data: object, config: ImportConfig, architecture: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The file's state dict with wrapper prefixes stripped and reference names mapped, and what was done."""
    container = config.format if config.format in ("state-dict", "checkpoint") else "auto"
    nested = next((data[k] for k in _STATE_KEYS if isinstance(data, dict) and _is_state_dict(data.get(k))), None)
    if container in ("auto", "checkpoint") and nested is not None:
        state, done = nested, ["checkpoint"]
    elif container in ("auto", "state-dict") and _is_state_dict(data):
        state, done = data, ["state-dict"]
    else:
        keys = [str(k) for k in list(data)[:8]] if isinstance(data, dict) else type(data).__name__
        wanted = {"auto": "a state dict or a training checkpoint", "state-dict": "a state dict of tensors",
                  "checkpoint": f"a training checkpoint with a {' or '.join(_STATE_KEYS)} state dict"}
        raise CheckpointError(config.source, f"not {wanted[container]} (found {keys}); see --format")
    stripped = {}
    for name, tensor in state.items():
        key = name
        while key.startswith(_WRAPPERS):
            key = key.split(".", 1)[1]
        if key in stripped:
            raise CheckpointError(config.source, f"{name!r} and another tensor are both {key!r} once the "
                                                 f"{' and '.join(_WRAPPERS)} prefixes are stripped")
        stripped[key] = tensor
    if any(k.startswith(_WRAPPERS) for k in state):
        done.append("wrapper prefixes stripped")
    if any(_REFERENCE_BRANCH.search(k) for k in stripped):
        stripped = _map_reference_branches(stripped, config.source, architecture)
        done.append("Efficient-3DCNNs names mapped")
    return stripped, done


def _map_reference_branches(state: dict[str, torch.Tensor], source: str, architecture: str) -> dict[str, torch.Tensor]:
    """Efficient-3DCNNs' ShuffleNetV2 names as raycondi's: ``features.N.banchB.I.*`` -> the ``I``-th leaf module
    of ``features.N.branchB``, whose layers are the reference's flat Sequential, grouped."""
    if architecture != "shufflenetv2_3d":
        raise CheckpointError(source, f"holds Efficient-3DCNNs ShuffleNetV2 names (banch1/banch2), but the "
                                      f"architecture is {architecture}; use --architecture shufflenetv2_3d")
    with torch.device("meta"):  # the units' layout is the same at every width
        model = model_info("shufflenetv2_3d").builder(1)
    prefixes = {}
    for name, module in model.named_modules():
        if name.endswith((".branch1", ".branch2")):
            leaves = [leaf for leaf, m in module.named_modules() if leaf and not list(m.children())]
            reference = name[: -len("branch1")] + "banch" + name[-1]
            prefixes.update({f"{reference}.{i}.": f"{name}.{leaf}." for i, leaf in enumerate(leaves)})
    mapped = {}
    for key, tensor in state.items():
        prefix = key[: key.rfind(".") + 1]
        mapped[prefixes[prefix] + key[len(prefix):] if prefix in prefixes else key] = tensor
    return mapped


def _checkpoint_config(
    config: ImportConfig, meta: Mapping[str, Any], architecture: str, found_classes: int | None
) -> CheckpointConfig:
    """The checkpoint's config: ``config``'s fields, else torchvision's metadata ``meta``, else the defaults."""
    class_names = meta.get("class_names", ())
    num_classes = len(class_names) or found_classes
    if config.classes is not None:
        num_classes, class_names = read_classes(config.classes, config.storage)
    if num_classes is None:
        raise CheckpointError(config.source, f"holds no {model_info(architecture).classifier} classifier to count "
                                             "the classes from; give --classes and --new-classifier")
    given = {"clip_len": config.clip_len, "crop_size": config.crop_size, "resize": config.resize,
             "mean": config.mean, "std": config.std}
    defaults = {"clip_len": 16, "crop_size": 112, "resize": None, "mean": KINETICS_MEAN, "std": KINETICS_STD}
    preprocessing = {k: v if v is not None else meta.get(k, defaults[k]) for k, v in given.items()}
    try:
        return CheckpointConfig(architecture=architecture, num_classes=num_classes, student=config.student,
                                model_kwargs=dict(config.model_kwargs), class_names=class_names, **preprocessing)
    except ValueError as error:
        raise ValueError(f"import-weights: {error}") from None


def _build(checkpoint: CheckpointConfig) -> nn.Module:
    try:
        return checkpoint.build()
    except TypeError as error:  # an option the builder does not take
        raise ValueError(f"--option {dict(checkpoint.model_kwargs)}: not options of {checkpoint.architecture} "
                         f"({error})") from None


def import_weights(config: ImportConfig) -> ImportSummary:
    """Write the checkpoint ``config`` describes from its weights file; return what was imported.

    Raises ``CheckpointError`` naming ``source`` for a file that is missing, refused by ``weights_only``, in no
    known format, or whose tensors do not fit the architecture (missing, unexpected and mis-shaped tensors in
    one message, the first 20 of each kind by name), and when its classifier's class count is not ``classes``'
    and ``new_classifier`` is not set; ``ValueError`` for options that contradict each other or the builder.
    """
    if exists(join(config.out, CONFIG_FILE), config.storage):
        raise ValueError(f"{config.out}: already holds a checkpoint; give another OUT or remove it")
    meta = torchvision_metadata(config.torchvision_weights) if config.torchvision_weights else {}
    architecture = config.architecture or meta["architecture"]
    classifier = model_info(architecture).classifier
    state, done = _state_dict(_load(config), config, architecture)
    read = len(state)
    weight = state.get(f"{classifier}.weight")
    found_classes = None if weight is None else weight.shape[0]
    checkpoint = _checkpoint_config(config, meta, architecture, found_classes)
    replaced = None
    if found_classes != checkpoint.num_classes:
        if not config.new_classifier:
            given = "--classes gives" if config.classes is not None else "torchvision's metadata has"
            found = f"has {found_classes} classes" if found_classes else "is not in the file"
            raise CheckpointError(config.source, f"its classifier {classifier} {found}, {given} "
                                                 f"{checkpoint.num_classes}; add --new-classifier to give it a new "
                                                 "one and fine-tune it")
        state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
        replaced = classifier
    fresh = replaced is not None or config.student  # layers the file does not hold: initialise them
    with torch.device("cpu" if fresh else "meta"):  # else nothing to initialise: the file's tensors are the model
        model = _build(checkpoint)
    if config.student:
        state = _as_student(state, classifier, model)
    if replaced is not None:  # the new layer keeps the freshly built model's initialisation
        head = "class_head" if config.student else classifier
        state.update({k: v for k, v in model.state_dict().items() if k.startswith(head + ".")})
    if problem := state_dict_mismatch(model.state_dict(), state, names=20):
        raise CheckpointError(config.source, f"does not fit {architecture} with {dict(config.model_kwargs)} "
                                             f"({', '.join(done)}): {problem}; check --architecture and --option")
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}  # a half-precision file imports as the model's
    model.load_state_dict(state, assign=not fresh)
    save_checkpoint(model, config.out, checkpoint, storage=config.storage)
    return ImportSummary(out=config.out, config=checkpoint, format=", ".join(done), tensors=read,
                         replaced=replaced)


def _as_student(state: dict[str, torch.Tensor], classifier: str, student: nn.Module) -> dict[str, torch.Tensor]:
    """A classifier's state dict as a two-headed student's: the backbone under ``backbone.``, the classifier as
    the class head (a 1x1x1 convolution, s3d's, as the linear layer it is on pooled features), and the
    student's own fresh confidence head."""
    mapped = {}
    for key, tensor in state.items():
        if key.startswith(classifier + "."):
            mapped["class_head." + key[len(classifier) + 1:]] = tensor.flatten(1) if tensor.ndim > 2 else tensor
        else:
            mapped["backbone." + key] = tensor
    mapped.update({k: v for k, v in student.state_dict().items() if k.startswith("confidence_head.")})
    return mapped
