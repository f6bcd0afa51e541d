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
import pyarrow.fs as pafs
import torch

from raycondi.models.checkpoint import CONFIG_FILE, CheckpointConfig, CheckpointError, read_checkpoint_config
from raycondi.pipeline.config import LabelConfig, LabelError
from raycondi.pipeline.inputs import list_videos
from raycondi.pipeline.schema import output_dataset, output_files
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import StorageError, StorageOptions, check_endpoint, exists, join, resolve

__all__ = ["SHARED", "check_builds", "check_folder", "check_label_run", "check_models", "read_checkpoint"]

SHARED = ("num_classes", "class_names", "clip_len", "resize")  # one decode serves both models
# a resumed output's rows all share them: column, and the option that sets it
_RESUMED = {"strategy": "--strategy", "k": "--k", "k_student": "--k-student", "teacher_model": "--teacher",
            "student_model": "--student"}


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


def _where(uri: str, storage: StorageOptions | None) -> tuple[str, str]:
    """A checkpoint URI as the place it names, however it was written (``./``, a trailing ``/``, ``file://``)."""
    try:
        filesystem, path = resolve(uri, storage)
    except StorageError:
        return ("", uri)
    return (type(filesystem).__name__, path.rstrip("/"))


def _resumed(config: LabelConfig, models: dict[str, str | None]) -> set[str]:
    """The ``video_id`` of every row already under ``config.output`` (ok and error rows alike), read in the same
    pass that checks them: :class:`LabelError` naming the option when they were labelled with other settings
    (resuming would mix them)."""
    files = output_files(config.output, config.storage)
    if not files:
        return set()
    try:
        rows = output_dataset(files, config.storage).to_table(columns=["video_id", *_RESUMED])
    except (OSError, pa.ArrowException) as error:
        raise LabelError(f"--output {config.output}", "cannot read the existing output to resume: "
                          f"{str(error).splitlines()[0]}") from None
    given = {"strategy": config.strategy, "k": config.k, "k_student": config.k_student, **models}
    for name, option in _RESUMED.items():
        if name == "k" and config.strategy == "dense":  # dense rows hold each video's clip count
            continue
        found = [v for v in pc.unique(rows[name]).to_pylist() if v is not None]
        same = (lambda v: _where(v, config.storage)) if name.endswith("_model") else (lambda v: v)
        if found and {same(v) for v in found} != {same(given[name])}:
            raise LabelError(f"--output {config.output}", f"holds labels made with {option} "
                             f"{', '.join(map(str, sorted(found)))}, this run's is {option} {given[name]}; resuming "
                             "would mix them: label into a new --output, or resume with the first run's options")
    return set(rows["video_id"].to_pylist())


def check_label_run(config: LabelConfig):
    """Everything ``raycondi label`` checks on the driver, in order: the S3 endpoint, the checkpoints
    (:func:`check_models`), the input (its videos, listed) and the output (a folder; rows already there made
    with this run's strategy, K and models). Returns the decode, the model columns, the videos and the ids of the
    videos already labelled; raises
    ``ValueError`` (or :class:`LabelError`, one) naming the option, or :class:`StorageError` naming the
    endpoint, for the first problem."""
    check_endpoint((config.input, config.output, config.teacher, config.student), config.storage)
    clip, models = check_models(config)
    try:
        videos = list_videos(config.input, config.storage, split=config.split)
    except LabelError as error:
        raise LabelError(f"--input {error.uri}", error.reason) from None
    check_folder("--output", config.output, config.storage)
    return clip, models, videos, _resumed(config, models)
