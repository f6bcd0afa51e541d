"""Sizes that go together: clip shape, teacher, student and schedule, for a laptop and for the paper.

``small`` learns in minutes on 2 CPU cores: 8-frame 32x32 crops from 40x40 shards; a 3D ResNet-10 teacher
0.5x wide (3.6 M parameters) and a 0.25x student (0.9 M; 22 MFLOPs per clip against the teacher's 69), both with a
1x7x7 stem (``conv1_t_size=1``). Dense 3x3x3 convolutions train faster on a CPU than the depthwise ones of 3D
ShuffleNetV2 (a 32-clip step of the student: 84 ms for 22 MFLOPs per clip, against 128 ms for ShuffleNetV2
0.5x's 10), and the ResNets learn the synthetic motions in 3-5 epochs where a ShuffleNetV2 0.5x student was
still near chance after 4 (clip accuracy 65 % against 20 %); AdamW, as SGD at these sizes barely moves
in a few epochs; no flips, as the synthetic benchmark has mirror-image classes; λ = 0.5, the low end of the
paper's grid {0.5, 1.5, 2.0}, which lets the class head learn first in a short schedule. ``paper`` is
Sec. IV-A (16x112x112 clips, 3D ResNeXt-101 teacher, 3D ShuffleNetV2 2.0x student, 50 epochs, α = 0.1 from
scratch, λ = 1.5). Prepare the shards with
``--clip-len {clip_len} --size {size}``; the CLI's ``--preset`` fills every option not given explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    clip_len: int
    size: int  # shard clips (``prepare --size``)
    crop_size: int  # training and evaluation crops
    teacher: str
    teacher_kwargs: Mapping[str, Any] = field(default_factory=dict)
    student: str = "shufflenetv2_3d"
    student_kwargs: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    teacher_epochs: int = 50
    distill_epochs: int = 50
    lr: float = 0.1
    optimizer: str = "sgd"
    flip: bool = True
    lam: float = 1.5
    head_decay: float = 5.0
    mix_gradient: bool = True


PRESETS: dict[str, Preset] = {
    "small": Preset(
        clip_len=8, size=40, crop_size=32,
        teacher="resnet3d", teacher_kwargs={"depth": 10, "width": 0.5, "conv1_t_size": 1},
        student="resnet3d", student_kwargs={"depth": 10, "width": 0.25, "conv1_t_size": 1},
        batch_size=32, teacher_epochs=5, distill_epochs=5, lr=0.002, optimizer="adamw",
        flip=False,  # the synthetic benchmark's classes include mirror images (MoveLeft/MoveRight)
        lam=0.5,
    ),
    "paper": Preset(
        clip_len=16, size=128, crop_size=112,
        teacher="resnext3d", teacher_kwargs={"depth": 101},
        student="shufflenetv2_3d", student_kwargs={"width": 2.0},
        batch_size=32, teacher_epochs=50, distill_epochs=50, lr=0.1,
    ),
}
