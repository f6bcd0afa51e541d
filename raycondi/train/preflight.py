"""The driver's checks of a training run, before any Ray job starts: each problem the driver can see is one
``ValueError`` line naming the option and the fix, instead of a failure inside every Train worker.

What is checked: the shards are ``raycondi prepare`` output; the checkpoints given (``--teacher``,
``--finetune``) are checkpoint directories, with a hint when a training run's folder is given instead of its
``model/``; the crop fits the shards' frames; the teacher's classes are the shards'; and the model the run will
train can be built from its architecture and options (built on the meta device: no memory, no weights); an S3
endpoint that cannot be connected to is said at once. ``raycondi evaluate`` shares the shard checks; the checkpoint
helpers are :mod:`raycondi.pipeline.checks`' (Ray-free, for ``label``).
"""

from __future__ import annotations

from raycondi.datasets.shards import PrepareSummary, read_summary
from raycondi.models.checkpoint import CheckpointConfig
from raycondi.pipeline.checks import check_builds, read_checkpoint
from raycondi.train.distill import DistillConfig, student_config
from raycondi.train.teacher import TeacherConfig, model_config
from raycondi.video.decode import frame_size
from raycondi.video.storage import StorageError, StorageOptions, check_endpoint

__all__ = ["check_classes", "check_crop", "check_distill_run", "check_teacher_run", "reachable", "read_shards"]


def reachable(uris, storage: StorageOptions | None) -> None:
    """``ValueError`` (one line naming ``--endpoint-url``) when some of ``uris`` are on S3 and its endpoint cannot
    be connected to (:func:`~raycondi.video.storage.check_endpoint`)."""
    try:
        check_endpoint(uris, storage)
    except StorageError as error:
        raise ValueError(str(error)) from None


def read_shards(clips: str, storage: StorageOptions | None) -> PrepareSummary:
    """The summary of the shards ``--clips``; ``ValueError`` (one line) when they are not ``prepare``'s output."""
    try:
        return read_summary(clips, storage)
    except (StorageError, KeyError, ValueError) as error:
        raise ValueError(f"--clips {clips}: not clip shards from `raycondi prepare` ({error})") from None


def check_crop(what: str, crop: int, summary: PrepareSummary, clips: str) -> None:
    """``ValueError`` (one line) when a ``crop``-pixel crop does not fit the shards' frames."""
    height, width = frame_size(summary.clip.size)
    if crop > min(height, width):
        raise ValueError(f"{what}: a {crop}-pixel crop is larger than the shards' {height}x{width} clips ({clips}); "
                         f"crop {min(height, width)} or less, or prepare the shards with --size {crop} or more")


def check_classes(what: str, config: CheckpointConfig, summary: PrepareSummary, clips: str, fix: str) -> None:
    """``ValueError`` (one line, ending in ``fix``) when the checkpoint's classes are not the shards'."""
    if tuple(config.class_names or ()) not in ((), summary.classes) or config.num_classes != len(summary.classes):
        raise ValueError(f"{what}: its {config.num_classes} classes are not the shards' {len(summary.classes)} "
                         f"({clips}); {fix}")


def check_teacher_run(config: TeacherConfig) -> CheckpointConfig:
    """The checkpoint config ``train_teacher(config)`` will train; ``ValueError`` (one line) for what cannot run."""
    reachable((config.clips, config.out, config.finetune), config.storage)
    summary = read_shards(config.clips, config.storage)
    if config.finetune is not None:
        read_checkpoint("--finetune", config.finetune, config.storage)
    check_crop(f"--crop-size {config.crop_size}", config.crop_size, summary, config.clips)
    model = model_config(config)
    check_builds("--model-kwargs" if config.finetune is None else f"--finetune {config.finetune}", model)
    return model


def check_distill_run(config: DistillConfig) -> CheckpointConfig:
    """The student's checkpoint config ``distill(config)`` will train; ``ValueError`` (one line) for what cannot
    run."""
    reachable((config.clips, config.out, config.teacher, config.finetune), config.storage)
    summary = read_shards(config.clips, config.storage)
    teacher = read_checkpoint("--teacher", config.teacher, config.storage, student=False)
    if config.finetune is not None:
        read_checkpoint("--finetune", config.finetune, config.storage)
    check_classes(f"--teacher {config.teacher}", teacher, summary, config.clips,
                  "fine-tune it on them first (train-teacher --finetune)")
    check_crop(f"--teacher {config.teacher} (crop_size)", teacher.crop_size, summary, config.clips)
    student = student_config(config)
    check_builds("--student-kwargs", student)
    return student
