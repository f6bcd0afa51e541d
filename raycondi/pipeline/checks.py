"""The driver's checks of the two checkpoints before a labelling job starts (Ray-free: the GPU harness runs them
where Ray is not installed). One decode serves both models, so they must share :data:`SHARED`."""

from __future__ import annotations

from raycondi.models.checkpoint import CheckpointConfig, CheckpointError, read_checkpoint_config
from raycondi.pipeline.config import LabelConfig, LabelError
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import StorageError, StorageOptions

__all__ = ["SHARED", "check_models"]

SHARED = ("num_classes", "class_names", "clip_len", "resize")  # one decode serves both models


def _read_config(uri: str, option: str, storage: StorageOptions | None) -> CheckpointConfig:
    try:
        return read_checkpoint_config(uri, storage=storage)
    except CheckpointError as error:
        raise LabelError(error.uri, f"{option}: not a usable checkpoint directory ({error.reason})") from None
    except StorageError as error:
        raise LabelError(error.uri, f"{option}: cannot read the checkpoint config: {error.reason}") from None


def check_models(config: LabelConfig) -> tuple[ClipSpec, dict[str, str | None]]:
    """The decode both models take (their ``clip_len`` and ``resize``, the job's stride) and the model
    identifier columns; :class:`LabelError` naming the checkpoint when the models cannot serve the job
    (module docstring: what they must share). Reads ``config.json`` only, never the weights."""
    teacher = _read_config(config.teacher, "--teacher", config.storage)
    if teacher.student:
        raise LabelError(config.teacher, "is a two-headed student checkpoint; --teacher needs a plain classifier")
    models = {"teacher_model": config.teacher, "teacher_architecture": teacher.architecture,
              "student_model": None, "student_architecture": None}
    if config.uses_student:
        student = _read_config(config.student, "--student", config.storage)
        if not student.student:
            raise LabelError(config.student, "is not a two-headed student checkpoint (no confidence head)")
        for name in SHARED:
            if getattr(student, name) != getattr(teacher, name):
                raise LabelError(config.student, f"{name} {getattr(student, name)!r} differs from the teacher's "
                                                 f"{getattr(teacher, name)!r} ({config.teacher}); one decode "
                                                 f"serves both models, so they must share {', '.join(SHARED)}")
        models.update(student_model=config.student, student_architecture=student.architecture)
    return ClipSpec(teacher.clip_len, teacher.resize, config.stride), models
