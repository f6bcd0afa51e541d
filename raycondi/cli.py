"""The ``raycondi`` command: one subcommand per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict


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
    from raycondi.datasets.synthetic import SynthConfig, generate_dataset

    config = SynthConfig(videos=args.videos, seed=args.seed, classes=args.classes)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raycondi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate the synthetic action benchmark (UCF-101 layout)")
    synth.add_argument("--out", required=True, help="output folder: a local path or s3://bucket/prefix")
    synth.add_argument("--videos", type=int, default=200, help="number of videos (default 200)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    synth.add_argument("--classes", type=int, default=10, help="number of action classes (default 10)")
    _add_storage_options(synth)
    synth.set_defaults(run=_synth)

    prep = commands.add_parser("prepare", help="decode a dataset once into Parquet clip shards (Ray Data)")
    prep.add_argument("--dataset", required=True, help="dataset root, Kinetics CSV or manifest (local or s3://)")
    prep.add_argument("--out", required=True, help="output folder for the shards (local or s3://)")
    prep.add_argument("--format", choices=["ucf101", "kinetics", "manifest"], default=None,
                      help="dataset layout; detected when not given")
    prep.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16, as the paper)")
    prep.add_argument("--size", type=int, default=112, help="crop size in pixels (default 112)")
    prep.add_argument("--stride", type=int, default=1, help="temporal step between sampled frames (default 1)")
    _add_storage_options(prep)
    prep.set_defaults(run=_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
