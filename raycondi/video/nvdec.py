"""Full decodes on the GPU's video decoder (NVDEC, through NVIDIA's PyNvVideoCodec): the same clips as
:func:`raycondi.video.decode.iter_clips`, pixels within :data:`TOLERANCE`.

The container is still read by PyAV, without decoding: its checks (:func:`~raycondi.video.container.open_video`),
the limits, and the frames' presentation times, which are the video packets' timestamps in order. NVDEC decodes the
file (copied to a local temporary file when it is on S3: PyNvVideoCodec reads paths) straight to RGB in GPU memory;
the resize of :class:`~raycondi.video.decode.ResizeRGB` (short side S then the centre S x S, or a fixed (H, W))
runs there too, as an area average, and the clips are cut by :func:`~raycondi.video.decode.assemble_clips`, the
CPU decode's own rule. The pictures differ from PyAV's by the colour conversion and the resampling filter; the
difference is bounded by :data:`TOLERANCE`, checked where NVDEC exists (``tests/test_nvdec.py``).

:class:`NoNvdec` says why a video is left to PyAV: the library or a GPU is missing, or the video is rotated, has
non-square pixels, or decodes to a different number of frames than it has packets. The caller
(:func:`raycondi.pipeline.plans.decode_candidates`) then decodes it with PyAV and records why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from raycondi.video.container import DecodeLimits, DecodeStats, VideoDecodeError, check_limits, open_video
from raycondi.video.decode import FALLBACK_FPS, Clip, ClipSpec, Size, assemble_clips, frame_size
from raycondi.video.storage import StorageOptions, open_input

__all__ = ["TOLERANCE", "NoNvdec", "Tolerance", "iter_clips", "resize_rgb", "unavailable"]

_BATCH = 64  # frames per get_batch_frames call and per resize on the GPU


@dataclass(frozen=True)
class Tolerance:
    """How far NVDEC's pictures may be from PyAV's: the mean absolute difference over all pixels and
    channels, and the share of values differing by more than ``large`` levels (of 255)."""

    mean_abs: float
    large: int
    large_share: float


TOLERANCE = Tolerance(mean_abs=3.0, large=24, large_share=0.01)


class NoNvdec(Exception):
    """NVDEC cannot decode this video here; ``str()`` says why (for the ``decode_fallback`` column)."""


@functools.cache
def unavailable(gpu_id: int = 0) -> str | None:
    """Why NVDEC cannot be used in this process (None when it can): no PyNvVideoCodec, or no CUDA device."""
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError as error:
        return f"PyNvVideoCodec is not installed ({error})"
    if not torch.cuda.is_available() or gpu_id >= torch.cuda.device_count():
        return f"no CUDA device {gpu_id}"
    return None


def iter_clips(
    uri: str, spec: ClipSpec, *, limits: DecodeLimits | None = None, storage: StorageOptions | None = None,
    stats: DecodeStats | None = None, gpu_id: int = 0,
) -> list[Clip]:
    """Every clip of ``uri`` at ``spec``, decoded by NVDEC on GPU ``gpu_id`` (module docstring). Raises
    :class:`NoNvdec` when NVDEC cannot decode it here and :class:`VideoDecodeError` when nobody can."""
    reason = unavailable(gpu_id)
    if reason:
        raise NoNvdec(reason)
    limits = limits or DecodeLimits()
    times = _presentation_times(uri, limits, storage, stats)
    with _local_path(uri, storage) as path:
        pictures = _decode(path, spec, gpu_id)
    if len(pictures) != len(times):
        raise NoNvdec(f"NVDEC decoded {len(pictures)} frames of the {len(times)} packets")
    if stats is not None:
        stats.frames += len(pictures)
    frames = ((picture, start, end) for picture, (start, end) in zip(pictures, times, strict=True))
    return list(assemble_clips(frames, spec, 1, np.asarray))


def _presentation_times(uri: str, limits: DecodeLimits, storage: StorageOptions | None,
                        stats: DecodeStats | None) -> list[tuple[float, float]]:
    """``(time_s, end_s)`` of every frame in presentation order, from the packets (no decode), relative to the
    first; :class:`NoNvdec` for what the GPU path does not reproduce (rotation, non-square pixels)."""
    with open_video(uri, limits, storage, stats) as (container, stream):
        sar = stream.sample_aspect_ratio
        if sar and sar != 1:
            raise NoNvdec(f"non-square pixels (sample aspect ratio {sar})")
        if stream.metadata.get("rotate") or any("DISPLAYMATRIX" in str(k).upper()
                                                for k in getattr(stream, "side_data", {}) or {}):
            raise NoNvdec("a display rotation")
        packets = sorted((p.pts, p.duration) for p in container.demux(stream) if p.pts is not None and p.size)
        base = stream.time_base
        nominal = 1 / float(stream.average_rate or stream.guessed_rate or FALLBACK_FPS)
    if not packets:
        raise VideoDecodeError(uri, "the video stream has no decodable frames")
    starts = [float((pts - packets[0][0]) * base) for pts, _ in packets]
    last = float(packets[-1][1] * base) if packets[-1][1] else nominal
    ends = [*starts[1:], starts[-1] + last]  # as the CPU decode: a frame ends where the next one starts
    check_limits(uri, limits, stream.width, stream.height, ends[-1], len(starts))
    return list(zip(starts, ends, strict=True))


@contextlib.contextmanager
def _local_path(uri: str, storage: StorageOptions | None) -> Iterator[str]:
    """A local path holding ``uri``'s bytes: the file itself, or a temporary copy of an S3 object."""
    if "://" not in uri or uri.startswith("file://"):
        yield uri.removeprefix("file://")
        return
    handle, path = tempfile.mkstemp(suffix=os.path.splitext(uri)[1])
    try:
        with os.fdopen(handle, "wb") as out, open_input(uri, storage) as source:
            shutil.copyfileobj(source, out, 1 << 20)
        yield path
    finally:
        os.unlink(path)


def _decode(path: str, spec: ClipSpec, gpu_id: int) -> list[np.ndarray]:
    """Every frame of ``path``, decoded to RGB and resized on the GPU, as uint8 ``(H, W, 3)`` host arrays."""
    import PyNvVideoCodec as nvc

    decoder = nvc.SimpleDecoder(path, gpu_id=gpu_id, use_device_memory=True,
                                output_color_type=nvc.OutputColorType.RGB)
    out: list[np.ndarray] = []
    while batch := decoder.get_batch_frames(_BATCH):
        out.extend(resize_rgb(torch.stack([torch.from_dlpack(frame) for frame in batch]), spec.size).cpu().numpy())
    return out


def resize_rgb(frames: torch.Tensor, size: Size) -> torch.Tensor:
    """uint8 RGB ``(B, h, w, 3)`` resized as :class:`~raycondi.video.decode.ResizeRGB` resizes (short side S then
    the centre S x S, or a fixed (H, W)), by an area average, on the frames' device."""
    import torch.nn.functional as F

    x = frames.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    if isinstance(size, int):
        scale = size / min(h, w)
        height, width = max(size, round(h * scale)), max(size, round(w * scale))
        crop_h = crop_w = size
    else:
        (height, width), (crop_h, crop_w) = (frame_size(size),) * 2
    x = F.interpolate(x, size=(height, width), mode="area")
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    x = x[:, :, top:top + crop_h, left:left + crop_w].round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous()
