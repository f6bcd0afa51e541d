"""The ``raycondi`` command: one subcommand per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict

from raycondi.pipeline.config import DECODERS, STAGES
from raycondi.strategies import ALIASES, CANDIDATES, KEYFRAME_CLIPS, LABEL_STRATEGIES, METHODS


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="S3 endpoint (MinIO, a local S3...); default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS",
    )


def _storage(args: argparse.Namespace):
    from raycondi.video.storage import StorageOptions

    return StorageOptions(endpoint_url=args.endpoint_url)


def _synth(args: argparse.Namespace) -> int:
    from raycondi.datasets.synthetic import BENCHMARKS, SynthConfig, generate_dataset

    looks = dict(BENCHMARKS[args.benchmark])
    if args.severity:
        looks["severity"] = tuple(args.severity)
    config = SynthConfig(videos=args.videos, seed=args.seed, classes=args.classes, keyint=args.keyint, **looks)
    summary = generate_dataset(args.out, config, storage=_storage(args))
    print(json.dumps(asdict(summary), indent=2))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    import ray

    from raycondi.datasets.shards import prepare
    from raycondi.video.decode import ClipSpec

    ray.init()
    clip = ClipSpec(clip_len=args.clip_len, size=args.size, stride=args.stride)
    summary = prepare(args.dataset, args.out, format=args.format, clip=clip, storage=_storage(args))
    print(json.dumps(asdict(summary), indent=2))
    if summary.failed:
        print(f"{summary.failed} video(s) failed to decode; see {args.out.rstrip('/')}/failed.parquet for why")
    return 0


def _label(args: argparse.Namespace) -> int:
    from raycondi.pipeline import LabelConfig, LabelError, label_videos

    try:
        config = LabelConfig(
            input=args.input, output=args.output, teacher=args.teacher, student=args.student, k=args.k,
            k_student=args.k_student, strategy=args.strategy, weighting=args.weighting, seed=args.seed,
            candidates=args.candidates, keyframe_clips=args.keyframe_clips, seek=args.seek,
            split=args.split, student_batch_size=args.student_batch_size,
            teacher_batch_size=args.teacher_batch_size, rows_per_file=args.rows_per_file,
            stages=args.stages, student_actors=args.student_actors, teacher_actors=args.teacher_actors,
            student_gpus=args.student_gpus, teacher_gpus=args.teacher_gpus, cpus_per_actor=args.cpus_per_actor,
            inference=args.inference, decoder=args.decoder, storage=_storage(args),
        )
        summary = label_videos(config)
    except (LabelError, ValueError) as error:
        print(f"raycondi label: {error}", file=sys.stderr)
        return 2
    print(summary.to_json())
    if summary.nothing_labelled:
        print(f"raycondi label: nothing could be labelled ({summary.videos_error} error rows under {args.output})",
              file=sys.stderr)
        return 1
    return 0


def _preset(args: argparse.Namespace):
    """The preset named by ``--preset``; options left at None take its values."""
    from raycondi.train.presets import PRESETS

    return PRESETS[args.preset]


def _model_kwargs(text: str | None, default) -> dict:
    return dict(default) if text is None else json.loads(text)


def _ray_init() -> None:
    import ray

    ray.init()


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
        storage=_storage(args),
    )


def _teacher_config(args: argparse.Namespace):
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


def _train_teacher(args: argparse.Namespace) -> int:
    from raycondi.train.teacher import train_teacher
    from raycondi.video.storage import join

    config = _teacher_config(args)
    _ray_init()
    result = train_teacher(config)
    print(json.dumps(result.metrics, indent=2, default=float))
    print(f"teacher model: {join(args.out, 'model')}")
    return 0


def _distill_config(args: argparse.Namespace, out: str):
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
    from raycondi.video.storage import join

    config = _distill_config(args, args.out)
    _ray_init()
    result = distill(config)
    print(json.dumps(result.metrics, indent=2, default=float))
    print(f"student model: {join(args.out, 'model')}")
    return 0


def _search_config(args: argparse.Namespace):
    from raycondi.train.tune import SearchConfig

    distill = _distill_config(args, args.out)
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
    from raycondi.train.tune import search

    config = _search_config(args)
    _ray_init()
    record = search(config)
    print(json.dumps(record, indent=2, default=float))
    print(f"best student: {record['checkpoint']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from raycondi.evaluation import EvaluateConfig, EvaluationError, evaluate

    try:
        students = dict(_method_uri(text) for text in args.student)
        config = EvaluateConfig(
            clips=args.clips, teacher=args.teacher, students=students, out=args.out, ks=tuple(args.k),
            split=args.split, ground_truth=args.ground_truth, decode_seconds=args.decode_seconds,
            decode_videos=args.decode_videos, max_prob_student=args.max_prob_student, seek=args.seek,
            candidates=args.candidates, keyframe_clips=args.keyframe_clips,
            actors=args.actors,
            gpu=args.gpu, batch_size=args.batch_size, storage=_storage(args),
        )
        summary = evaluate(config)
    except (EvaluationError, ValueError, FileNotFoundError) as error:
        print(f"raycondi evaluate: {error}", file=sys.stderr)
        return 2
    print(f"Table III: video accuracy (%), {summary.videos} {args.split} videos, {summary.clips} clips")
    print(summary.table_iii)
    print(f"tables, plots and report.md: {summary.out}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from raycondi.quickstart import QuickstartConfig, quickstart

    quickstart(QuickstartConfig(workdir=args.workdir))
    return 0


def _method_uri(text: str) -> tuple[str, str]:
    """``method=URI`` of ``--student``."""
    method, sep, uri = text.partition("=")
    if not sep or not method or not uri:
        raise ValueError(f"--student {text!r}: expected METHOD=CHECKPOINT, e.g. condi_sr=runs/condi/model")
    return method, uri


def _size(text: str) -> int | tuple[int, int]:
    """``--size``: ``S`` or ``HxW``."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts, default=0) < 1:
        raise argparse.ArgumentTypeError(f"expected S or HxW in pixels, e.g. 112 or 128x171, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _ks(text: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


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
    _add_storage_options(parser)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raycondi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate the synthetic action benchmark (UCF-101 layout)")
    synth.add_argument("--out", required=True, help="output folder: a local path or s3://bucket/prefix")
    synth.add_argument("--videos", type=int, default=200, help="number of videos (default 200)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    synth.add_argument("--classes", type=int, default=10, help="number of action classes (default 10)")
    synth.add_argument("--benchmark", choices=("default", "shapes"), default="default",
                       help="default: striped blobs over noise, H.264 in MP4; shapes: polygons over gratings, "
                            "MPEG-4 in AVI, another ambiguity mix (a benchmark no preset was chosen on)")
    synth.add_argument("--severity", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                       help="range of the ambiguous clips' severity (default: the benchmark's, 0.4 1 or 0.3 1; "
                            "1 1 leaves no trace of the class)")
    synth.add_argument("--keyint", type=int, default=None,
                       help="a keyframe exactly every N frames (a long GOP, as real footage); default: every 2 s "
                            "and at every clip")
    _add_storage_options(synth)
    synth.set_defaults(run=_synth)

    prep = commands.add_parser("prepare", help="decode a dataset once into Parquet clip shards (Ray Data)")
    prep.add_argument("--dataset", required=True, help="dataset root, Kinetics CSV or manifest (local or s3://)")
    prep.add_argument("--out", required=True, help="output folder for the shards (local or s3://)")
    prep.add_argument("--format", choices=["ucf101", "kinetics", "manifest"], default=None,
                      help="dataset layout; detected when not given")
    prep.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16, as the paper)")
    prep.add_argument("--size", type=_size, default=112,
                      help="resize: S (short side S, the centre SxS kept; default 112) or HxW (e.g. 128x171, "
                           "aspect ratio ignored); checkpoints trained on the shards record it")
    prep.add_argument("--stride", type=int, default=1, help="temporal step between sampled frames (default 1)")
    _add_storage_options(prep)
    prep.set_defaults(run=_prepare)
    lab = commands.add_parser("label", help="label videos with the teacher on K student-selected clips (Ray Data)")
    lab.add_argument("--input", required=True, help="video prefix, or a manifest / dataset (local or s3://)")
    lab.add_argument("--output", required=True, help="output folder for the Parquet labels (local or s3://)")
    lab.add_argument("--teacher", required=True, help="teacher checkpoint directory")
    lab.add_argument("--student", default=None,
                     help="student checkpoint directory (needed by the strategies that rank clips by its score)")
    lab.add_argument("--k", type=int, default=5, help="clips per video (default 5)")
    lab.add_argument("--k-student", type=int, default=0, help="of them, clips labelled by the student (Fig. 2c)")
    lab.add_argument("--strategy", choices=[*LABEL_STRATEGIES, *ALIASES], default="condi_sr", metavar="STRATEGY",
                     help=f"clip selection: {', '.join(LABEL_STRATEGIES)} (default condi_sr: the student's "
                          "confidence, Fig. 2b; condi is accepted for it)")
    lab.add_argument("--weighting", choices=["mean", "confidence"], default="mean",
                     help="average the teacher's clips plainly or weighted by the student's confidence")
    lab.add_argument("--candidates", choices=CANDIDATES, default="clips",
                     help="clips the student scores: every clip (default, the paper's) or only those a decoder "
                          "reaches cheaply, starting soon after a keyframe (far less decoding on long-GOP video; "
                          "evaluate --candidates keyframes scores the same)")
    lab.add_argument("--keyframe-clips", type=int, default=KEYFRAME_CLIPS,
                     help=f"with --candidates keyframes: a candidate starts fewer than this many clip spans after "
                          f"a keyframe (default {KEYFRAME_CLIPS})")
    lab.add_argument("--seek", action=argparse.BooleanOptionalAction, default=True,
                     help="equidistant and random decode only their K clips by seeking (default; --no-seek "
                          "decodes every frame)")
    lab.add_argument("--seed", type=int, default=0, help="seed of --strategy random")
    lab.add_argument("--split", choices=["train", "val", "test"], default=None,
                     help="with a dataset input, label only this split")
    lab.add_argument("--student-batch-size", type=int, default=16, help="clips per student forward pass")
    lab.add_argument("--teacher-batch-size", type=int, default=32, help="clips per teacher forward pass")
    lab.add_argument("--rows-per-file", type=int, default=256, help="videos per output Parquet file")
    lab.add_argument("--stages", choices=STAGES, default="auto",
                     help="run the student and the teacher in separate actor pools (split), in one CPU actor "
                          "(fused), or decode on CPU actors and run both models in one actor per GPU (gpu, the "
                          "samplers); auto: fused without GPUs, else gpu for the samplers and split otherwise")
    lab.add_argument("--inference", default="auto",
                     help="how each model runs: auto (measure fp32/bf16 and channels_last_3d on the GPU, keep the "
                          "fastest), auto-compile (also torch.compile and CUDA graphs), fp32 (the reference), or "
                          "a setting such as bf16+channels_last_3d+cuda_graphs")
    lab.add_argument("--decoder", choices=DECODERS, default="pyav",
                     help="pyav (CPU) or nvdec (the GPU's video decoder, PyNvVideoCodec, in the gpu stages; "
                          "PyAV where it is missing, said once); auto: nvdec on clusters with GPUs")
    lab.add_argument("--student-actors", type=int, default=None,
                     help="ScoreAndSelect, DecodeClips or fused actors (default: from the cluster's CPUs)")
    lab.add_argument("--teacher-actors", type=int, default=None,
                     help="TeacherPredict or GPUScoreSelectPredict actors (default: one per GPU)")
    lab.add_argument("--student-gpus", type=float, default=0.0, help="GPUs per ScoreAndSelect actor (default 0)")
    lab.add_argument("--teacher-gpus", type=float, default=None,
                     help="GPUs per TeacherPredict or GPUScoreSelectPredict actor (default 1 when the cluster has "
                          "GPUs, 0.5 with nvdec, else 0)")
    lab.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs (and torch threads) per actor")
    _add_storage_options(lab)
    lab.set_defaults(run=_label)

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
    ev = commands.add_parser("evaluate", help="the paper's tables and plots: every clip selection strategy (Ray Data)")
    ev.add_argument("--clips", required=True, help="clip shards from `raycondi prepare` (local or s3://)")
    ev.add_argument("--teacher", required=True, help="teacher checkpoint directory")
    ev.add_argument("--student", action="append", default=[], metavar="METHOD=CHECKPOINT",
                    help=f"a distilled student ({', '.join(METHODS)}); repeat for each")
    ev.add_argument("--k", type=_ks, default=[1, 3, 5, 7], help="clips per video, comma-separated (default 1,3,5,7)")
    ev.add_argument("--out", required=True, help="output folder for the tables, plots and report.md")
    ev.add_argument("--split", choices=["train", "val", "test"], default="test", help="split to evaluate")
    ev.add_argument("--ground-truth", default=None,
                    help="ground_truth.parquet of clean/ambiguous clips (default: the dataset's, when present)")
    ev.add_argument("--decode-seconds", type=float, default=None,
                    help="decode cost per clip; default: timed on the split's source videos")
    ev.add_argument("--decode-videos", type=int, default=4, help="videos decoded to time decoding (default 4)")
    ev.add_argument("--max-prob-student", default=None,
                    help="student whose class head MaxProb uses (default condi_sr, else the first given)")
    ev.add_argument("--seek", action=argparse.BooleanOptionalAction, default=True,
                    help="price Equidistant and Random as seeking to their clips, as `label` runs them (default)")
    ev.add_argument("--candidates", choices=CANDIDATES, default="clips",
                    help="the clips the samplers rank: every clip (default) or the keyframe candidates of "
                         "`label --candidates keyframes`")
    ev.add_argument("--keyframe-clips", type=int, default=KEYFRAME_CLIPS,
                    help=f"with --candidates keyframes: as label's option (default {KEYFRAME_CLIPS})")
    ev.add_argument("--actors", type=int, default=1, help="inference actors (default 1)")
    ev.add_argument("--gpu", action="store_true", help="one GPU per inference actor")
    ev.add_argument("--batch-size", type=int, default=32, help="clips per inference batch (default 32)")
    _add_storage_options(ev)
    ev.set_defaults(run=_evaluate)
    quick = commands.add_parser(
        "quickstart", help="the whole system on a small synthetic benchmark, on this machine (3 to 8 minutes on 2 CPU cores)")
    quick.add_argument("--workdir", default="raycondi-quickstart",
                       help="folder for every output, local or s3:// (default ./raycondi-quickstart); "
                            "re-running with the same folder continues an interrupted run")
    quick.set_defaults(run=_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="raycondi: %(message)s")  # the jobs' plans, to stderr
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
