"""The training subcommands of ``raycondi``: ``train-teacher``, ``distill`` and ``tune`` (Ray Train and Tune)."""

from __future__ import annotations

import argparse
import json
import sys

from raycondi.cli_options import add_storage_options, ray_init, storage_options
from raycondi.strategies import METHODS


def _preset(args: argparse.Namespace):
    """The preset named by ``--preset``; options left at None take its values."""
    from raycondi.train.presets import PRESETS

    return PRESETS[args.preset]


def _model_kwargs(text: str | None, default) -> dict:
    return dict(default) if text is None else json.loads(text)


def _run_options(args: argparse.Namespace, preset) -> dict:
    """The options teacher training and distillation share: the preset fills what was not given."""
    return dict(
        batch_size=args.batch_size or preset.batch_size,
        lr=args.lr or preset.lr,
        optimizer=args.optimizer or preset.optimizer,
        flip=preset.flip if args.flip is None else args.flip,
        finetune=args.finetune,
        workers=args.workers,
        gpu=args.gpu,
        cpus_per_worker=args.cpus_per_worker,
        max_failures=args.max_failures,
        storage=storage_options(args),
    )


def teacher_config(args: argparse.Namespace):
    from raycondi.train.teacher import TeacherConfig

    preset = _preset(args)
    return TeacherConfig(
        clips=args.clips,
        out=args.out,
        model=args.model or preset.teacher,
        model_kwargs=_model_kwargs(args.model_kwargs, preset.teacher_kwargs if args.model is None else {}),
        crop_size=args.crop_size or preset.crop_size,
        epochs=args.epochs or preset.teacher_epochs,
        **_run_options(args, preset),
    )


def _checked(command: str, make, check):
    """The run's config from ``make()``, checked by ``check`` on the driver before anything starts; None, after
    printing the problem on one line, when either refuses it."""
    try:
        config = make()
        check(config)
    except ValueError as error:  # json.JSONDecodeError of a --*-kwargs option included
        print(f"raycondi {command}: {error}", file=sys.stderr)
        return None
    return config


def _train(args: argparse.Namespace, command: str, make, check, run, model: str) -> int:
    """A training command: its checked config, then the run on Ray, its last metrics and where ``model`` went."""
    from raycondi.video.storage import join

    config = _checked(command, make, check)
    if config is None:
        return 2
    ray_init()
    result = run(config)
    print(json.dumps(result.metrics, indent=2, default=float))
    print(f"{model} model: {join(args.out, 'model')}")
    return 0


def _train_teacher(args: argparse.Namespace) -> int:
    from raycondi.train.preflight import check_teacher_run
    from raycondi.train.teacher import train_teacher

    return _train(args, "train-teacher", lambda: teacher_config(args), check_teacher_run, train_teacher, "teacher")


def distill_config(args: argparse.Namespace, out: str):
    from raycondi.train.distill import DistillConfig

    preset = _preset(args)
    return DistillConfig(
        clips=args.clips,
        teacher=args.teacher,
        out=out,
        student=args.student or preset.student,
        student_kwargs=_model_kwargs(args.student_kwargs, preset.student_kwargs if args.student is None else {}),
        frame_step=args.frame_step,
        method=args.method,
        lam=preset.lam if args.lam is None else args.lam,
        mu=args.mu,
        tau=args.tau,
        head_decay=preset.head_decay if args.head_decay is None else args.head_decay,
        mix_gradient=preset.mix_gradient if args.mix_gradient is None else args.mix_gradient,
        epochs=args.epochs or preset.distill_epochs,
        **_run_options(args, preset),
    )


def _distill(args: argparse.Namespace) -> int:
    from raycondi.train.distill import distill
    from raycondi.train.preflight import check_distill_run

    return _train(args, "distill", lambda: distill_config(args, args.out), check_distill_run, distill, "student")


def search_config(args: argparse.Namespace):
    from raycondi.train.tune import SearchConfig

    distill = distill_config(args, args.out)
    return SearchConfig(
        distill=distill,
        out=args.out,
        samples=args.samples,
        k=args.k,
        objective=args.objective,
        lam=tuple(args.lam_range),
        mu=tuple(args.mu_range),
        tau=tuple(args.tau_range),
        lr=tuple(args.lr_range) if args.lr_range else (distill.lr / 3, distill.lr * 3),
        grace_period=args.grace_period,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent_trials=args.max_concurrent_trials,
    )


def _tune(args: argparse.Namespace) -> int:
    from raycondi.train.preflight import check_distill_run
    from raycondi.train.tune import search

    config = _checked("tune", lambda: search_config(args), lambda search: check_distill_run(search.distill))
    if config is None:
        return 2
    ray_init()
    record = search(config)
    print(json.dumps(record, indent=2, default=float))
    print(f"best student: {record['checkpoint']}")
    return 0


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by train-teacher, distill and tune; None means "from --preset"."""
    parser.add_argument("--clips", required=True, help="clip shards from `raycondi prepare` (local or s3://)")
    parser.add_argument("--out", required=True, help="output folder (local or s3://); the same --out resumes")
    parser.add_argument("--preset", choices=["small", "paper"], default="paper",
                        help="sizes and schedule for options not given (default paper; small: 2 CPU cores)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="clips per worker and step")
    parser.add_argument("--lr", type=float, default=None, help="initial learning rate")
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default=None, help="sgd: Nesterov SGD (the paper's)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="random horizontal flips in training (off for mirror-image classes)")
    parser.add_argument("--finetune", default=None, help="checkpoint whose weights initialise the model")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers (default 1)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL, bf16 autocast)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--max-failures", type=int, default=2, help="worker-group restarts before failing")
    add_storage_options(parser)


def _add_distill_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher checkpoint (train-teacher's OUT/model)")
    parser.add_argument("--student", default=None, help="student backbone (see list_models())")
    parser.add_argument("--student-kwargs", default=None, help='JSON builder arguments, e.g. \'{"width": 0.5}\'')
    parser.add_argument("--frame-step", type=int, default=1,
                        help="the student sees every N-th frame of a clip, so labelling converts only those "
                             "(default 1, the paper's input)")
    parser.add_argument("--method", choices=METHODS, default="condi_sr", help="distillation method (default condi_sr)")
    parser.add_argument("--lam", type=float, default=None,
                        help="λ, weight of the confidence BCE (default: the preset's, 1.5 for paper, 0.5 for small)")
    parser.add_argument("--mu", type=float, default=1.5, help="μ, positive weight in that BCE (default 1.5)")
    parser.add_argument("--tau", type=float, default=0.9, help="τ, distillation temperature (default 0.9)")
    parser.add_argument("--head-decay", type=float, default=None,
                        help="the confidence head's learning rate is divided by this every epoch (default: the "
                             "preset's; the paper's 5)")
    parser.add_argument("--mix-gradient", action=argparse.BooleanOptionalAction, default=None,
                        help="condi_sr: let Eq. 5's mixing train the confidence (the paper's loss); "
                             "--no-mix-gradient detaches it, so z~ learns from the BCE term alone "
                             "(default: the preset's)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``train-teacher``, ``distill`` and ``tune`` to ``raycondi``'s subcommands."""
    teacher = commands.add_parser("train-teacher", help="train the teacher on Ray Train from clip shards")
    teacher.add_argument("--model", default=None, help="architecture (see list_models())")
    teacher.add_argument("--model-kwargs", default=None, help='JSON builder arguments, e.g. \'{"depth": 50}\'')
    teacher.add_argument("--crop-size", type=int, default=None, help="crop side in pixels")
    _add_training_options(teacher)
    teacher.set_defaults(run=_train_teacher)

    dist = commands.add_parser("distill", help="distil a two-headed student from stored teacher logits")
    _add_training_options(dist)
    _add_distill_options(dist)
    dist.set_defaults(run=_distill)

    search = commands.add_parser("tune", help="search λ, μ, τ and the learning rate with Ray Tune and ASHA")
    _add_training_options(search)
    _add_distill_options(search)
    search.add_argument("--samples", type=int, default=8, help="number of trials (default 8)")
    search.add_argument("--k", type=int, default=1, choices=[1, 3, 5], help="objective: val video accuracy at K")
    search.add_argument("--objective", choices=("video_accuracy", "auroc"), default="video_accuracy",
                        help="keep the trial with the best val video accuracy at --k, or the best val AUROC of "
                             "the method's score for z (the sampler's own quality)")
    for name, low, high in (("lam", 0.5, 2.5), ("mu", 1.0, 2.0), ("tau", 0.5, 2.0)):
        search.add_argument(f"--{name}-range", type=float, nargs=2, default=(low, high), metavar=("LOW", "HIGH"),
                            help=f"search range (default {low} {high})")
    search.add_argument("--lr-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="search range (default: a third to three times the preset's learning rate)")
    search.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a trial may stop")
    search.add_argument("--cpus-per-trial", type=float, default=1.0)
    search.add_argument("--gpus-per-trial", type=float, default=0.0)
    search.add_argument("--max-concurrent-trials", type=int, default=None)
    search.set_defaults(run=_tune)
