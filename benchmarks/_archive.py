"""The synthetic archive and the random-weight checkpoints that label_throughput.py and gpu_harness.py label
(Ray-free: the harness runs where Ray is not installed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from raycondi.datasets.synthetic import SynthConfig, class_names, generate_dataset
from raycondi.models import CheckpointConfig, build_model, build_student, save_checkpoint


def add_archive_options(parser: argparse.ArgumentParser, videos: int) -> None:
    """The options :func:`make_archive` and :func:`random_checkpoints` read."""
    parser.add_argument("--videos", type=int, default=videos)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0, help="the archive's seed (default 0)")
    parser.add_argument("--keyint", type=int, default=None,
                        help="the archive's videos have a keyframe exactly every N frames (default: every 2 s "
                             "and at every clip)")
    parser.add_argument("--skim-step", type=int, default=0,
                        help="with random weights: also a skimming student that sees every S-th frame")
    parser.add_argument("--teacher-arch", default="resnext3d")
    parser.add_argument("--student-arch", default="shufflenetv2_3d")
    parser.add_argument("--student-width", type=float, default=2.0)


def make_archive(args: argparse.Namespace, workdir: Path) -> Path:
    gop = f"_keyint{args.keyint}" if args.keyint else ""
    seed = f"_seed{args.seed}" if args.seed else ""
    videos = workdir / f"videos_{args.videos}x{args.seconds:g}s_{args.width}x{args.height}_{args.classes}c{gop}{seed}"
    if not (videos / "classInd.txt").exists():
        generate_dataset(str(videos), SynthConfig(
            videos=args.videos, seed=args.seed, classes=args.classes, width=args.width, height=args.height,
            clip_len=args.clip_len, min_seconds=args.seconds, max_seconds=args.seconds, keyint=args.keyint))
    return videos


def random_checkpoints(args: argparse.Namespace, workdir: Path) -> tuple[str, str, str | None]:
    names = class_names(SynthConfig(classes=args.classes))
    common = dict(num_classes=args.classes, class_names=names, clip_len=args.clip_len, crop_size=args.size)
    teacher_kwargs = {"depth": 101} if args.teacher_arch == "resnext3d" else {}
    save_checkpoint(build_model(args.teacher_arch, args.classes, **teacher_kwargs), str(workdir / "teacher"),
                    CheckpointConfig(args.teacher_arch, model_kwargs=teacher_kwargs, **common))
    student_kwargs = {"width": args.student_width}
    students = {"student": 1, "student_skim": args.skim_step} if args.skim_step > 1 else {"student": 1}
    for name, frame_step in students.items():
        save_checkpoint(build_student(args.student_arch, args.classes, **student_kwargs), str(workdir / name),
                        CheckpointConfig(args.student_arch, student=True, model_kwargs=student_kwargs,
                                         frame_step=frame_step, **common))
    skim = str(workdir / "student_skim") if args.skim_step > 1 else None
    return str(workdir / "teacher"), str(workdir / "student"), skim
