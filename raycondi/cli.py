"""The ``raycondi`` command: one subcommand per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict

from raycondi.cli_options import add_storage_options, size_option, storage_options
from raycondi.cli_report import add_command as add_report_command
from raycondi.cli_train import add_commands as add_train_commands
from raycondi.pipeline.config import DECODERS, STAGES
from raycondi.strategies import ALIASES, CANDIDATES, KEYFRAME_CLIPS, LABEL_STRATEGIES, METHODS


def _synth(args: argparse.Namespace) -> int:
    from raycondi.datasets.synthetic import BENCHMARKS, SynthConfig, generate_dataset

    looks = dict(BENCHMARKS[args.benchmark])
    if args.severity:
        looks["severity"] = tuple(args.severity)
    config = SynthConfig(videos=args.videos, seed=args.seed, classes=args.classes, keyint=args.keyint, **looks)
    summary = generate_dataset(args.out, config, storage=storage_options(args))
    print(json.dumps(asdict(summary), indent=2))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from raycondi.datasets.manifests import ManifestError
    from raycondi.datasets.shards import prepare
    from raycondi.video.decode import ClipSpec
    from raycondi.video.storage import UriError

    clip = ClipSpec(clip_len=args.clip_len, size=args.size, stride=args.stride)
    try:  # prepare checks the endpoint and the output and reads the dataset on the driver, then starts Ray
        summary = prepare(args.dataset, args.out, format=args.format, clip=clip, storage=storage_options(args))
    except (UriError, ManifestError, ValueError) as error:
        print(f"raycondi prepare: {error}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(summary), indent=2))
    if summary.failed:
        print(f"{summary.failed} video(s) failed to decode; see {args.out.rstrip('/')}/failed.parquet for why")
    return 0


def _label(args: argparse.Namespace) -> int:
    from raycondi.pipeline import LabelConfig, label_videos
    from raycondi.video.storage import UriError

    try:  # label_videos checks every option on the driver (pipeline.checks), then starts Ray
        config = LabelConfig(
            input=args.input, output=args.output, teacher=args.teacher, student=args.student, k=args.k,
            k_student=args.k_student, strategy=args.strategy, weighting=args.weighting, seed=args.seed,
            candidates=args.candidates, keyframe_clips=args.keyframe_clips, seek=args.seek,
            split=args.split, student_batch_size=args.student_batch_size,
            teacher_batch_size=args.teacher_batch_size, rows_per_file=args.rows_per_file,
            stages=args.stages, student_actors=args.student_actors, teacher_actors=args.teacher_actors,
            student_gpus=args.student_gpus, teacher_gpus=args.teacher_gpus, cpus_per_actor=args.cpus_per_actor,
            inference=args.inference, decoder=args.decoder, max_video_attempts=args.max_video_attempts,
            video_timeout=args.video_timeout, storage=storage_options(args),
        )
        summary = label_videos(config)
    except (UriError, ValueError) as error:  # LabelError, and the StorageError of an unreachable endpoint
        print(f"raycondi label: {error}", file=sys.stderr)
        return 2
    print(summary.to_json())
    _print_errors(summary, storage_options(args))
    if args.report:
        from raycondi.audit import ReportConfig, ReportError, write_report

        try:
            print(f"the labels' report: {write_report(ReportConfig(args.output, storage=storage_options(args))).html}")
        except (ReportError, UriError) as error:  # the labels are written: say why the report is not, and go on
            print(f"raycondi label: no report: {error}", file=sys.stderr)
    if summary.nothing_labelled:
        print(f"raycondi label: nothing could be labelled ({summary.videos_error} error rows under {args.output})",
              file=sys.stderr)
        return 1
    return 0


def _print_errors(summary, storage) -> None:
    """This run's failed videos on the terminal, once: one line per reason, with the first few videos."""
    from raycondi.audit.errors import error_groups

    if not summary.videos_error:
        return
    print(f"raycondi label: {summary.videos_error} video(s) failed; their rows' error column says why:", file=sys.stderr)
    for group in error_groups(summary.files, storage):
        videos = ", ".join(f"{video_id} ({uri})" for video_id, uri in group.examples)
        more = f" and {group.count - len(group.examples)} more" if group.count > len(group.examples) else ""
        print(f"  {group.count} x {group.reason}: {videos}{more}", file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> int:
    from raycondi.evaluation import EvaluateConfig, evaluate
    from raycondi.video.storage import UriError

    try:  # evaluate checks every input on the driver, then starts Ray
        students = dict(_method_uri(text) for text in args.student)
        config = EvaluateConfig(
            clips=args.clips, teacher=args.teacher, students=students, out=args.out, ks=tuple(args.k),
            split=args.split, ground_truth=args.ground_truth, decode_seconds=args.decode_seconds,
            decode_videos=args.decode_videos, max_prob_student=args.max_prob_student, seek=args.seek,
            candidates=args.candidates, keyframe_clips=args.keyframe_clips,
            actors=args.actors,
            gpu=args.gpu, batch_size=args.batch_size, storage=storage_options(args),
        )
        summary = evaluate(config)
    except (UriError, ValueError, FileNotFoundError) as error:  # EvaluationError, an unreachable endpoint
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


def _import_weights(args: argparse.Namespace) -> int:
    from raycondi.models.imports import ImportConfig, import_weights
    from raycondi.video.storage import UriError

    try:
        summary = import_weights(ImportConfig(
            source=args.source, out=args.out, architecture=args.architecture, model_kwargs=dict(args.option),
            classes=args.classes, clip_len=args.clip_len, crop_size=args.crop_size, resize=args.resize,
            mean=args.mean, std=args.std, student=args.student, format=args.format,
            torchvision_weights=args.torchvision_weights, new_classifier=args.new_classifier,
            storage=storage_options(args),
        ))
    except (UriError, ValueError) as error:  # CheckpointError and StorageError name the file
        print(f"raycondi import-weights: {error}", file=sys.stderr)
        return 2
    c = summary.config
    names = f" ({', '.join(c.class_names[:3])}, ...)" if c.class_names else " (unnamed)"
    print(f"read {args.source} as {summary.format}: {summary.tensors} tensors")
    if summary.replaced:
        print(f"new classifier {summary.replaced}: {c.num_classes} classes, initialised for fine-tuning")
    print(f"{'two-headed student' if c.student else 'model'} {c.architecture} {dict(c.model_kwargs)}, "
          f"{c.num_classes} classes{names}")
    print(f"preprocessing: {c.clip_len} frames, resize {c.resize}, crop {c.crop_size}, mean {c.mean}, std {c.std}")
    print(f"checkpoint: {summary.out}")
    return 0


def _option(text: str) -> tuple[str, object]:
    """``--option KEY=VALUE``: the value as JSON (``101``, ``2.0``, ``true``), else as the string given."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. depth=101 or width=2.0, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_import_command(commands: argparse._SubParsersAction) -> None:
    imp = commands.add_parser(
        "import-weights", help="a raycondi checkpoint from a weights file: Efficient-3DCNNs, torchvision, your own")
    imp.add_argument("source", metavar="SRC", help="the weights file: a state dict or a training checkpoint "
                                                   "(local or s3://); loaded with torch.load(weights_only=True)")
    imp.add_argument("out", metavar="OUT", help="the checkpoint directory to write (local or s3://)")
    imp.add_argument("--architecture", default=None, help="the network (see raycondi.models.list_models())")
    imp.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                     help="an argument of the architecture's builder, e.g. depth=101 or width=2.0; repeat for each")
    imp.add_argument("--torchvision-weights", default=None, metavar="ENUM",
                     help="a torchvision weights name, e.g. R2Plus1D_18_Weights.KINETICS400_V1: the architecture, "
                          "the 400 class names and the preprocessing come from torchvision (nothing is downloaded)")
    imp.add_argument("--classes", default=None, metavar="FILE|N",
                     help="a classInd.txt, a file of one class name per line, or a number (default: the "
                          "classifier's, unnamed, or torchvision's)")
    imp.add_argument("--new-classifier", action="store_true",
                     help="when --classes differ from the file's classifier, replace its last layer with a new "
                          "one (to fine-tune) instead of refusing")
    imp.add_argument("--student", action="store_true",
                     help="import the classifier as the class head of a two-headed student (a new confidence head)")
    imp.add_argument("--format", choices=("auto", "state-dict", "checkpoint", "efficient-3dcnns"), default="auto",
                     help="state-dict, checkpoint (a dict with a state_dict or model entry), or efficient-3dcnns "
                          "(its ShuffleNetV2 names mapped); default: detected")
    imp.add_argument("--clip-len", type=int, default=None, help="frames per clip (default 16)")
    imp.add_argument("--crop-size", type=int, default=None, help="the model's input side in pixels (default 112)")
    imp.add_argument("--resize", type=size_option, default=None,
                     help="S (short side S, the centre SxS kept) or HxW (e.g. 128x171), as `prepare --size`; "
                          "default: the crop size")
    imp.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                     help="per-channel mean of [0, 1] pixels (default torchvision's Kinetics-400 mean)")
    imp.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"),
                     help="per-channel std of [0, 1] pixels (default torchvision's Kinetics-400 std)")
    add_storage_options(imp)
    imp.set_defaults(run=_import_weights)


def _method_uri(text: str) -> tuple[str, str]:
    """``method=URI`` of ``--student``."""
    method, sep, uri = text.partition("=")
    if not sep or not method or not uri:
        raise ValueError(f"--student {text!r}: expected METHOD=CHECKPOINT, e.g. condi_sr=runs/condi/model")
    return method, uri


def _ks(text: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# The commands that run Ray, and the option naming the output their log file goes under (raycondi.console)
LOG_UNDER = {"prepare": "out", "train-teacher": "out", "distill": "out", "tune": "out", "evaluate": "out",
             "label": "output", "quickstart": "workdir"}


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
    add_storage_options(synth)
    synth.set_defaults(run=_synth)

    prep = commands.add_parser("prepare", help="decode a dataset once into Parquet clip shards (Ray Data)")
    prep.add_argument("--dataset", required=True, help="dataset root, Kinetics CSV or manifest (local or s3://)")
    prep.add_argument("--out", required=True, help="output folder for the shards (local or s3://)")
    prep.add_argument("--format", choices=["ucf101", "kinetics", "manifest"], default=None,
                      help="dataset layout; detected when not given")
    prep.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16, as the paper)")
    prep.add_argument("--size", type=size_option, default=112,
                      help="resize: S (short side S, the centre SxS kept; default 112) or HxW (e.g. 128x171, "
                           "aspect ratio ignored); checkpoints trained on the shards record it")
    prep.add_argument("--stride", type=int, default=1, help="temporal step between sampled frames (default 1)")
    add_storage_options(prep)
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
    lab.add_argument("--max-video-attempts", type=int, default=3,
                     help="a video whose worker died this many times decoding it in a run (a decoder crash) "
                          "becomes an error row instead of being retried again (default 3)")
    lab.add_argument("--video-timeout", type=float, default=None, metavar="SECONDS",
                     help="a video whose PyAV decode (with the student's scoring between its packets) takes "
                          "longer becomes an error row (default: no limit)")
    lab.add_argument("--report", action="store_true",
                     help="then write the labels' report (`raycondi report OUTPUT`): OUTPUT/_report/index.html")
    add_storage_options(lab)
    lab.set_defaults(run=_label)

    add_train_commands(commands)
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
    add_storage_options(ev)
    ev.set_defaults(run=_evaluate)
    _add_import_command(commands)
    add_report_command(commands)
    quick = commands.add_parser(
        "quickstart", help="the whole system on a small synthetic benchmark, on this machine (3 to 8 minutes on 2 "
                           "CPU cores)")
    quick.add_argument("--workdir", default="raycondi-quickstart",
                       help="folder for every output, local or s3:// (default ./raycondi-quickstart); "
                            "re-running with the same folder continues an interrupted run")
    quick.set_defaults(run=_quickstart)
    for name in LOG_UNDER:
        commands.choices[name].add_argument(
            "--verbose", action="store_true",
            help="show Ray's log lines on the terminal (default: they go to a log file under the output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="raycondi: %(message)s")  # the jobs' plans, to stderr
    if args.command not in LOG_UNDER or args.verbose:
        return args.run(args)
    from raycondi.console import log_uri, quiet
    from raycondi.video.storage import StorageOptions

    with quiet(log_uri(getattr(args, LOG_UNDER[args.command]), args.command),
               StorageOptions(endpoint_url=getattr(args, "endpoint_url", None))):
        return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
