"""Tiny checkpoints, a small synthetic archive and the rows of a labelling output, shared by the labelling tests
(Ray-free)."""

from __future__ import annotations

import pyarrow.parquet as pq
import torch

from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.models import CheckpointConfig, build_model, build_student, save_checkpoint
from raycondi.pipeline.sink import output_files
from raycondi.video.storage import resolve

CLASSES = ("MoveLeft", "MoveRight", "RotateCW")
CLIP_LEN, CROP = 4, 32


def save_models(root: str, frame_step: int = 1, teacher_frame_step: int = 1) -> tuple[str, str]:
    """Tiny random-init teacher and student checkpoints under ``root`` (local or s3://); the student sees
    every ``frame_step``-th frame, the teacher every ``teacher_frame_step``-th."""
    torch.manual_seed(0)
    common = dict(num_classes=len(CLASSES), class_names=CLASSES, clip_len=CLIP_LEN, crop_size=CROP)
    teacher = build_model("shufflenetv2_3d", len(CLASSES), width=0.5)
    save_checkpoint(teacher, f"{root}/teacher", CheckpointConfig("shufflenetv2_3d", model_kwargs={"width": 0.5},
                                                                 frame_step=teacher_frame_step, **common))
    student = build_student("shufflenetv2_3d", len(CLASSES), width=0.25)
    torch.nn.init.normal_(student.confidence_head.weight, 0, 2.0)  # spread z~ so the ranking is not a tie
    config = CheckpointConfig("shufflenetv2_3d", student=True, model_kwargs={"width": 0.25},
                              frame_step=frame_step, **common)
    save_checkpoint(student, f"{root}/student", config)
    return f"{root}/teacher", f"{root}/student"


def synth(out: str, videos: int, **overrides) -> None:
    config = dict(videos=videos, seed=3, classes=3, fps=10, width=64, height=48, clip_len=CLIP_LEN, min_seconds=0.8,
                  max_seconds=2.4)
    generate_dataset(out, SynthConfig(**{**config, **overrides}), workers=1)


def label_rows(output: str) -> list[dict]:
    """Every row of every published file under the labelling output ``output`` (local or s3://)."""
    filesystem, _ = resolve(output)
    return [row for f in output_files(output, None)
            for row in pq.read_table(resolve(f)[1], filesystem=filesystem).to_pylist()]
