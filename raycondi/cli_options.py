"""Options and helpers the ``raycondi`` subcommand modules share. Heavy imports wait until a command runs."""

from __future__ import annotations

import argparse


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="S3 endpoint (MinIO, a local S3...); default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS",
    )


def storage_options(args: argparse.Namespace):
    """The :class:`~raycondi.video.storage.StorageOptions` of ``--endpoint-url``."""
    from raycondi.video.storage import StorageOptions

    return StorageOptions(endpoint_url=args.endpoint_url)


def ray_init() -> None:
    """Connect to the cluster (``RAY_ADDRESS``) or start a local one, unless this process already has."""
    import ray

    if not ray.is_initialized():
        ray.init()


def size_option(text: str) -> int | tuple[int, int]:
    """``--size``/``--resize``: ``S`` or ``HxW``."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts, default=0) < 1:
        raise argparse.ArgumentTypeError(f"expected S or HxW in pixels, e.g. 112 or 128x171, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])
