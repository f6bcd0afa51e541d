"""The driver's checks of a training run, before any Ray job starts: each problem the driver can see is one
``ValueError`` line naming the option and the fix, instead of a failure inside every Train worker.

What is checked: the shards are ``raycondi prepare`` output; the checkpoints given (``--teacher``,
``--finetune``) are checkpoint directories, with a hint when a training run's folder is given instead of its
``model/``; the crop fits the shards' frames; the teacher's classes are the shards'; and the model the run will
train can be built from its architecture and options (built on the meta device: no memory, no weights).
"""

from __future__ import annotations

import torch

from raycondi.datasets.shards import PrepareSummary, read_summary
from raycondi.models.checkpoint import CONFIG_FILE, CheckpointConfig, CheckpointError, read_checkpoint_config
from raycondi.train.distill import DistillConfig, student_config
from raycondi.train.teacher import TeacherConfig, model_config
from raycondi.video.decode import frame_size
from raycondi.video.storage import StorageError, StorageOptions, exists, join

__all__ = ["check_distill_run", "check_teacher_run"]


def _shards(clips: str, storage: StorageOptions | None) -> PrepareSummary:
    try:
        return read_summary(clips, storage)
    except (StorageError, KeyError, ValueError) as error:
        raise ValueError(f"--clips {clips}: not clip shards from `raycondi prepare` ({error})") from None


def _checkpoint(option: str, uri: str, storage: StorageOptions | None) -> CheckpointConfig:
    try:
        return read_checkpoint_config(uri, storage=storage)
    except (CheckpointError, StorageError) as error:
        if exists(join(uri, "model", CONFIG_FILE), storage):
            raise ValueError(f"{option} {uri}: a training run's folder, not its checkpoint; give "
                             f"{option} {join(uri, 'model')}") from None
        raise ValueError(f"{option} {uri}: not a checkpoint directory ({error.reason})") from None


def _crop_fits(what: str, crop: int, summary: PrepareSummary, clips: str) -> None:
    height, width = frame_size(summary.clip.size)
    if crop > min(height, width):
        raise ValueError(f"{what}: a {crop}-pixel crop is larger than the shards' {height}x{width} clips ({clips}); "
                         f"crop {min(height, width)} or less, or prepare the shards with --size {crop} or more")


def _builds(option: str, config: CheckpointConfig) -> None:
    try:
        with torch.device("meta"):
            config.build()
    except (TypeError, ValueError) as error:
        raise ValueError(f"{option}: {config.architecture} cannot be built with {dict(config.model_kwargs)} "
                         f"({error})") from None


def check_teacher_run(config: TeacherConfig) -> CheckpointConfig:
    """The checkpoint config ``train_teacher(config)`` will train; ``ValueError`` (one line) for what cannot run."""
    summary = _shards(config.clips, config.storage)
    if config.finetune is not None:
        _checkpoint("--finetune", config.finetune, config.storage)
    _crop_fits(f"--crop-size {config.crop_size}", config.crop_size, summary, config.clips)
    model = model_config(config)
    _builds("--model-kwargs" if config.finetune is None else f"--finetune {config.finetune}", model)
    return model


def check_distill_run(config: DistillConfig) -> CheckpointConfig:
    """The student's checkpoint config ``distill(config)`` will train; ``ValueError`` (one line) for what cannot
    run."""
    summary = _shards(config.clips, config.storage)
    teacher = _checkpoint("--teacher", config.teacher, config.storage)
    if teacher.student:
        raise ValueError(f"--teacher {config.teacher}: a two-headed student; give the teacher's checkpoint")
    if config.finetune is not None:
        _checkpoint("--finetune", config.finetune, config.storage)
    if tuple(teacher.class_names or ()) not in ((), summary.classes) or teacher.num_classes != len(summary.classes):
        raise ValueError(f"--teacher {config.teacher}: its {teacher.num_classes} classes are not the shards' "
                         f"{len(summary.classes)} ({config.clips}); fine-tune it on them first (train-teacher "
                         "--finetune)")
    _crop_fits(f"--teacher {config.teacher} (crop_size)", teacher.crop_size, summary, config.clips)
    student = student_config(config)
    _builds("--student-kwargs", student)
    return student
