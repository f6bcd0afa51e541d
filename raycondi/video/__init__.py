"""Videos in, clips out: storage URIs (local, file://, s3://) and streaming PyAV decode."""

from raycondi.video.decode import (
    Clip,
    ClipSpec,
    DecodeLimits,
    DecodeStats,
    SkimClip,
    VideoDecodeError,
    count_clips,
    iter_clips,
)
from raycondi.video.storage import StorageError, StorageOptions

__all__ = [
    "Clip",
    "ClipSpec",
    "DecodeLimits",
    "DecodeStats",
    "SkimClip",
    "StorageError",
    "StorageOptions",
    "VideoDecodeError",
    "count_clips",
    "iter_clips",
]
