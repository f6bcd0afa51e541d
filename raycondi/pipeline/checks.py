"""The driver's checks before a job starts (Ray-free: the GPU harness runs them where Ray is not installed):
each problem the driver can see is one line naming the option, its value and the fix.

:func:`check_label_run` is everything ``raycondi label`` checks; :func:`check_models` what the two checkpoints
must share (one decode serves both models, so they must share :data:`SHARED`). :func:`read_checkpoint`,
:func:`check_builds` and :func:`check_folder` serve the other commands' checks too (``evaluate``, the training
commands' :mod:`~raycondi.train.preflight`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import torch

from raycondi.models.checkpoint import CONFIG_FILE, CheckpointConfig, CheckpointError, read_checkpoint_config
from raycondi.pipeline.config import LabelConfig, LabelError
from raycondi.pipeline.inputs import list_videos
from raycondi.pipeline.schema import output_files
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import StorageError, StorageOptions, check_endpoint, exists, join, resolve

__all__ = ["SHARED", "check_builds", "check_folder", "check_label_run", "check_models", "read_checkpoint"]

SHARED = ("num_classes", "class_names", "clip_len", "resize")  # one decode serves both models
_RESUMED = ("strategy", "k", "k_student", "teacher_model", "student_model")  # a resumed output's rows all share them


def read_checkpoint(option: str, uri: str, storage: StorageOptions | None, *, student: bool | None = None,
                    sep: str = " ") -> CheckpointConfig:
    """The checkpoint config of ``{option}{sep}{uri}`` (``--teacher runs/t/model``, ``--student condi_sr=...``),
    which must be a two-headed student (``student=True``), a plain classifier (False) or either (None);
    ``ValueError`` (one line) otherwise, saying so when a training run's folder was given for its ``model/``."""
    try:
        config = read_checkpoint_config(uri, storage=storage)
    except (CheckpointError, StorageError) as error:
        try:
            in_run = exists(join(uri, "model", CONFIG_FILE), storage)
        except StorageError:
            in_run = False
        if in_run:
            raise ValueError(f"{option}{sep}{uri}: a training run's folder, not its checkpoint; give "
                             f"{option}{sep}{join(uri, 'model')}") from None
        what = "not a checkpoint directory" if isinstance(error, CheckpointError) else "cannot read its config.json"
        raise ValueError(f"{option}{sep}{uri}: {what} ({error.reason})") from None
    if student is True and not config.student:
        raise ValueError(f"{option}{sep}{uri}: not a two-headed student checkpoint (no confidence head); give "
                         "distill's OUT/model")
    if student is False and config.student:
        raise ValueError(f"{option}{sep}{uri}: a two-headed student checkpoint; {option} needs a plain classifier "
                         "(the teacher's checkpoint, train-teacher's OUT/model)")
    return config


def check_builds(option: str, config: CheckpointConfig) -> None:
    """``ValueError`` (one line) when ``config``'s architecture cannot be built with its options (built on the meta
    device: no memory, no weights)."""
    try:
        with torch.device("meta"):
            config.build()
    except (TypeError, ValueError) as error:
        raise ValueError(f"{option}: {config.architecture} cannot be built with {dict(config.model_kwargs)} "
                         f"({error})") from None


def check_folder(option: str, uri: str, storage: StorageOptions | None) -> None:
    """``ValueError`` (one line) when the output folder ``uri`` is an existing file."""
    filesystem, path = resolve(uri, storage)
    if isinstance(filesystem, pafs.LocalFileSystem) and filesystem.get_file_info(path).type == pafs.FileType.File:
        raise ValueError(f"{option} {uri}: is a file, not a folder; give a folder (new, or one to resume)")


def check_models(config: LabelConfig) -> tuple[ClipSpec, dict[str, str | None]]:
    """The decode both models take (their ``clip_len`` and ``resize``, the job's stride) and the model
    identifier columns; ``ValueError`` naming the option when the models cannot serve the job (module docstring:
    what they must share). Reads ``config.json`` only, never the weights."""
    teacher = read_checkpoint("--teacher", config.teacher, config.storage, student=False)
    check_builds(f"--teacher {config.teacher}", teacher)
    models = {"teacher_model": config.teacher, "teacher_architecture": teacher.architecture,
              "student_model": None, "student_architecture": None}
    if config.uses_student:
        student = read_checkpoint("--student", config.student, config.storage, student=True)
        check_builds(f"--student {config.student}", student)
        for name in SHARED:
            if getattr(student, name) != getattr(teacher, name):
                raise LabelError(f"--student {config.student}", f"{name} {getattr(student, name)!r} differs from the "
                                 f"teacher's {getattr(teacher, name)!r} ({config.teacher}); one decode serves both "
                                 f"models, so they must share {', '.join(SHARED)}: give a student distilled from "
                                 "this teacher")
        models.update(student_model=config.student, student_architecture=student.architecture)
    return ClipSpec(teacher.clip_len, teacher.resize, config.stride), models


def _check_resumed(config: LabelConfig, models: dict[str, str | None]) -> None:
    """``LabelError`` when ``config.output`` holds rows labelled with other settings: resuming would mix them."""
    files = output_files(config.output, config.storage)
    if not files:
        return
    filesystem, _ = resolve(config.output, config.storage)
    try:
        rows = pads.dataset([resolve(f, config.storage)[1] for f in files], filesystem=filesystem,
                            format="parquet").to_table(columns=list(_RESUMED))
    except (OSError, pa.ArrowException) as error:
        raise LabelError(f"--output {config.output}", "cannot read the existing output to resume: "
                          f"{str(error).splitlines()[0]}") from None
    given = {"strategy": config.strategy, "k": config.k, "k_student": config.k_student, **models}
    for name in _RESUMED:
        if name == "k" and config.strategy == "dense":  # dense rows hold each video's clip count
            continue
        found = sorted(v for v in pc.unique(rows[name]).to_pylist() if v is not None)
        if found and found != [given[name]]:
            raise LabelError(f"--output {config.output}", f"holds labels made with {name} {', '.join(map(str, found))}"
                             f", this run's is {given[name]}; resuming would mix them: label into a new --output, "
                             f"or resume with the options of the first run")


def check_label_run(config: LabelConfig):
    """Everything ``raycondi label`` checks on the driver, in order: the S3 endpoint, the checkpoints
    (:func:`check_models`), the input (its videos, listed) and the output (a folder; rows already there made
    with this run's strategy, K and models). Returns the decode, the model columns and the videos; raises
    ``ValueError`` (or :class:`LabelError`, one) naming the option, or :class:`StorageError` naming the
    endpoint, for the first problem."""
    check_endpoint((config.input, config.output, config.teacher, config.student), config.storage)
    clip, models = check_models(config)
    try:
        videos = list_videos(config.input, config.storage, split=config.split)
    except LabelError as error:
        raise LabelError(f"--input {error.uri}", error.reason) from None
    check_folder("--output", config.output, config.storage)
    _check_resumed(config, models)
    return clip, models, videos
