"""Streaming PyAV decode of one video into the paper's non-overlapping clips.

A video of ``F`` decoded frames is sampled every ``stride``-th frame (``F_s = ceil(F / stride)`` frames) and
cut into ``N = ceil(F_s / clip_len)`` clips of ``clip_len`` frames; the last clip is padded by looping its
own frames (frames ``a b c`` padded to 8 give ``a b c a b c a b``). Each frame is shown as the stream's display
matrix asks (the ``rotate`` tag of phone videos; rounded to quarter turns, mirroring is not applied) and with its
sample aspect ratio, then resized by :class:`ClipSpec`'s ``size`` -- the resize a checkpoint records
(``CheckpointConfig.resize``), so ``prepare`` and ``label`` produce the same pixels:

* an integer ``S``: the short side becomes ``S`` and the centre ``S x S`` square is kept (``prepare --size S``);
* a pair ``(H, W)``: the whole frame is resized to ``H x W``, aspect ratio ignored (torchvision's Kinetics
  weights: 128 x 171).

Clips are uint8 RGB arrays of shape ``(clip_len, H, W, 3)``. Audio and other streams are skipped by the demuxer.

Timestamps come from each frame's pts (variable frame rate is handled), in seconds relative to the first
decoded video frame. Clip ``i`` covers ``[start_s, end_s)``: it starts at its first sampled frame and ends
where clip ``i + 1`` starts, or, for the last clip, at the end of the last decoded frame; the clips tile the
video.

**Skim decoding** (``skim_step > 1``, :class:`SkimClip`): a student that sees every ``skim_step``-th frame of
a clip (``CheckpointConfig.frame_step``) needs only those converted. Every frame is still decoded (the
teacher may later want the clip, and an H.264 frame needs its references), but resizing and RGB conversion
is done for the skim frames only; the clip's other decoded pictures are kept and converted only if
:meth:`SkimClip.full` is called, i.e. for the few clips the student keeps for the teacher. The saving is the
conversion's share of the per-frame cost: small for H.264, larger for cheaper codecs (MPEG-4 part 2, MJPEG)
and for large pictures (``benchmarks/decode_throughput.py``, ``skim`` rows).

Memory is bounded whatever the length: frames are decoded as they are needed, at most two clips are held
(one waiting for the next clip's start time), and the file is read through :func:`storage.open_input` in
1 MiB ranged reads (:mod:`raycondi.video.container`), so a video in S3 is streamed with about one GET per MiB
(10 GETs for an 8 MB three-minute video), never downloaded whole. A :class:`DecodeStats` passed in counts the
frames decoded and the bytes read. :mod:`raycondi.video.seek` decodes chosen clips only, by seeking.

Every failure raises :class:`VideoDecodeError` with the URI and a reason: a missing or unreadable file, a
file that is not a media container, a still image, no video stream, corrupt data, truncation, or a video over the
:class:`DecodeLimits`. The checks are strict on purpose, because a silently damaged video would be
labelled from garbage:

* corrupt data: decoders run with FFmpeg's ``err_detect=explode``, so a bitstream error aborts instead of
  being concealed, and a frame or packet FFmpeg flags as corrupt raises;
* truncation: a container whose index is missing fails to open (an MP4 cut before its ``moov``), a
  damaged packet raises as corrupt data, and otherwise the rule is: **the decoded video must reach its
  declared duration** (the stream's duration, else the Matroska ``DURATION`` tag, else the container's)
  to within ``max(1 s, 5 %)``;
* nothing hangs: FFmpeg's demuxers always advance through a finite file, every decoded frame counts
  against ``max_frames`` and ``max_duration_s``, and a decoder fed 512 packets in a row without producing a
  frame is declared stuck.

Because decoding streams, an error found late in a file (truncation, corruption) is raised after the
clips before it were yielded: a consumer must treat the video as failed as a whole when
``VideoDecodeError`` is raised, whenever it comes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from raycondi.video.container import (
    DecodeLimits,
    DecodeStats,
    VideoDecodeError,
    check_limits,
    declared_duration,
    open_video,
    packets_to_frames,
)
from raycondi.video.storage import StorageOptions

__all__ = [
    "Clip", "ClipSpec", "DecodeLimits", "DecodeStats", "Size", "SkimClip", "VideoDecodeError", "check_size",
    "assemble_clips", "count_clips", "frame_size", "iter_clips",
]

_TRUNCATION_TOLERANCE_S = 1.0
_TRUNCATION_TOLERANCE_FRACTION = 0.05
FALLBACK_FPS = 25.0  # when a stream states no frame rate


Size = int | tuple[int, int]


def frame_size(size: Size) -> tuple[int, int]:
    """``(H, W)`` of the frames the resize ``size`` gives: ``(S, S)`` for a short side ``S``, else ``size``."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_size(size: object, name: str = "size") -> Size:
    """``size`` as a resize (an int ``S`` or an ``(H, W)`` pair, a JSON list accepted); ``ValueError`` naming
    ``name`` otherwise."""
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(type(v) is int for v in size):
        size = (size[0], size[1])
    elif type(size) is not int:
        raise ValueError(f"{name} must be a short side S or a pair (H, W) of pixels, got {size!r}")
    if min(frame_size(size)) < 1:
        raise ValueError(f"{name} must be >= 1 pixel, got {size!r}")
    return size


@dataclass(frozen=True)
class ClipSpec:
    """How videos are cut: ``clip_len`` sampled frames per clip, every ``stride``-th frame, resized by ``size``
    (a short side ``S`` with the centre ``S x S`` kept, or a fixed ``(H, W)``; see the module docstring)."""

    clip_len: int = 16
    size: Size = 112
    stride: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_size(self.size))
        for name in ("clip_len", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(clip_len, H, W, 3)``: the shape of one decoded clip."""
        return (self.clip_len, *frame_size(self.size), 3)


@dataclass(frozen=True, eq=False)
class Clip:
    """Clip ``index`` of a video: ``frames`` (clip_len, H, W, 3) uint8 RGB covering ``[start_s, end_s)``."""

    index: int
    start_s: float
    end_s: float
    frames: np.ndarray

    def full(self) -> np.ndarray:
        """All ``clip_len`` frames of the clip (here: ``frames`` itself)."""
        return self.frames

    @property
    def full_shape(self) -> tuple[int, ...]:
        return self.frames.shape

    @property
    def held_bytes(self) -> int:
        """Bytes of pixels this clip holds."""
        return self.frames.nbytes


@dataclass(frozen=True, eq=False)
class SkimClip(Clip):
    """A clip decoded for a skim: ``frames`` holds only its frames ``0, step, 2 step, ...`` (``ceil(clip_len /
    step)`` of them, exactly ``full()[::step]``); ``pictures`` are all ``clip_len`` decoded frames (the last
    clip's padding included), converted by :meth:`full` on demand with the same resize as ``frames``."""

    step: int
    pictures: tuple[av.VideoFrame, ...]
    convert: ResizeRGB

    def full(self) -> np.ndarray:
        """All ``clip_len`` frames as uint8 ``(clip_len, H, W, 3)``, converting the ones the skim skipped."""
        out = np.empty(self.full_shape, np.uint8)
        out[:: self.step] = self.frames
        for i, picture in enumerate(self.pictures):
            if i % self.step:
                out[i] = self.convert(picture)
        return out

    @property
    def full_shape(self) -> tuple[int, ...]:
        return (len(self.pictures), *self.frames.shape[1:])

    @property
    def held_bytes(self) -> int:
        """Bytes of the skim frames plus the decoded pictures (each counted once; padding repeats some)."""
        unique = {id(p): p for p in self.pictures}.values()
        return self.frames.nbytes + sum(plane.buffer_size for p in unique for plane in p.planes)


def count_clips(num_frames: int, clip_len: int) -> int:
    """Number of clips N = ceil(num_frames / clip_len) for ``num_frames`` sampled frames (paper, Sec. III)."""
    if num_frames < 0 or clip_len < 1:
        raise ValueError(f"need num_frames >= 0 and clip_len >= 1, got {num_frames}, {clip_len}")
    return -(-num_frames // clip_len)


def iter_clips(
    uri: str,
    clip_len: int = 16,
    size: Size = 112,
    stride: int = 1,
    *,
    skim_step: int = 1,
    limits: DecodeLimits | None = None,
    storage: StorageOptions | None = None,
    stats: DecodeStats | None = None,
) -> Iterator[Clip]:
    """Decode ``uri`` (local path, ``file://`` or ``s3://``) as it goes and yield its clips in order.

    With ``skim_step > 1`` the clips are :class:`SkimClip` s holding every ``skim_step``-th frame converted
    (see the module docstring); the clips' boundaries and ``full()`` frames are those of ``skim_step=1``.
    ``stats`` (a :class:`DecodeStats`) counts the frames decoded and the bytes read as the decode goes.
    Raises :class:`VideoDecodeError` for any video that cannot be decoded completely (see the module
    docstring for the rules); ``ValueError`` for invalid arguments, before any I/O.
    """
    spec = ClipSpec(clip_len, size, stride)
    if not 1 <= skim_step <= clip_len:
        raise ValueError(f"skim_step must be in [1, clip_len={clip_len}], got {skim_step}")
    return _clips(uri, spec, skim_step, limits or DecodeLimits(), storage, stats)


# --- clip assembly ---------------------------------------------------------------------------------------


def _clips(
    uri: str, spec: ClipSpec, skim_step: int, limits: DecodeLimits, storage: StorageOptions | None,
    stats: DecodeStats | None,
) -> Iterator[Clip]:
    with open_video(uri, limits, storage, stats) as (container, stream):
        to_rgb = ResizeRGB(spec.size, stream.sample_aspect_ratio)
        yield from assemble_clips(_decoded_frames(uri, container, stream, limits, stats), spec, skim_step, to_rgb)


def assemble_clips(frames: Iterator[tuple[Any, float, float]], spec: ClipSpec, skim_step: int,
                   convert: Callable[[Any], np.ndarray]) -> Iterator[Clip]:
    """Cut a video's decoded ``(picture, time_s, end_s)`` frames, in presentation order, into its clips: every
    ``stride``-th frame, ``clip_len`` per clip, a clip ending where the next begins, the last padded by
    :class:`ClipBuilder`. ``convert`` makes a picture the resized uint8 frame (the GPU decoder's pictures are)."""
    index, pending = 0, None  # pending: a full clip whose end_s is the next clip's start
    builder, start, video_end = None, 0.0, 0.0
    for number, (frame, time, frame_end) in enumerate(frames):
        video_end = frame_end
        if number % spec.stride:
            continue
        if pending is not None:
            yield replace(pending, end_s=time)
            pending = None
        if builder is None:
            start, builder = time, ClipBuilder(spec, skim_step, convert)
        builder.add(frame)
        if builder.filled == spec.clip_len:
            pending, builder, index = builder.clip(index, start, math.nan), None, index + 1
    if pending is not None:
        yield replace(pending, end_s=video_end)
    if builder is not None:
        yield builder.clip(index, start, video_end)


class ClipBuilder:
    """One clip's frames as they arrive: every ``step``-th converted at once, all kept when skimming (step > 1).
    Shared with :mod:`raycondi.video.seek`, so that a sought clip is assembled exactly as a streamed one."""

    def __init__(self, spec: ClipSpec, step: int, convert: Callable[[Any], np.ndarray]) -> None:
        self.clip_len, self.step, self.convert = spec.clip_len, step, convert
        self.frames = np.empty((-(-spec.clip_len // step), *spec.frame_shape[1:]), np.uint8)
        self.pictures: list[av.VideoFrame] = []
        self.filled = 0

    def add(self, picture: av.VideoFrame) -> None:
        if self.filled % self.step == 0:
            self.frames[self.filled // self.step] = self.convert(picture)
        if self.step > 1:
            self.pictures.append(picture)
        self.filled += 1

    def clip(self, index: int, start: float, end: float) -> Clip:
        """The clip, its last frames padded by looping its own (``a b c`` padded to 8 is ``a b c a b c a b``)."""
        filled = self.filled
        for position in range(filled, self.clip_len):
            source = position % filled
            if position % self.step == 0:
                target = position // self.step
                if source % self.step == 0:
                    self.frames[target] = self.frames[source // self.step]
                else:
                    self.frames[target] = self.convert(self.pictures[source])
            if self.step > 1:
                self.pictures.append(self.pictures[source])
        if self.step == 1:
            return Clip(index, start, end, self.frames)
        return SkimClip(index, start, end, self.frames, self.step, tuple(self.pictures), self.convert)


def _decoded_frames(
    uri: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream, limits: DecodeLimits,
    stats: DecodeStats | None,
) -> Iterator[tuple[av.VideoFrame, float, float]]:
    """Yield ``(frame, time_s, end_s)`` for every decoded frame, times relative to the first frame.

    Enforces the limits as it goes and, at the end, the truncation rule of the module docstring.
    """
    nominal = 1 / float(stream.average_rate or stream.guessed_rate or FALLBACK_FPS)
    first: float | None = None
    time, duration, count = -nominal, nominal, 0
    for frame in packets_to_frames(uri, container.demux(stream), stats):
        if first is None:
            first = frame.time or 0.0
        time = frame.time - first if frame.time is not None else time + nominal
        duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else nominal
        count += 1
        check_limits(uri, limits, frame.width, frame.height, time + duration, count)
        yield frame, time, time + duration
    if count == 0:
        raise VideoDecodeError(uri, "the video stream has no decodable frames")
    check_complete(uri, container, stream, time + duration)


def check_complete(uri: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                   decoded: float) -> None:
    """The truncation rule: a video decoded to ``decoded`` seconds must reach its declared duration."""
    declared = declared_duration(container, stream)
    tolerance = max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * (declared or 0.0))
    if declared is not None and decoded < declared - tolerance:
        reason = f"incomplete: decoded {decoded:.2f} s of the declared {declared:.2f} s (truncated or corrupt file)"
        raise VideoDecodeError(uri, reason)


class ResizeRGB:
    """Turn a decoded frame into the resized uint8 RGB picture of the module docstring (shared with
    :mod:`raycondi.video.seek`).

    The display rotation is applied to the result and the resize is computed in displayed orientation, so a
    portrait phone video resized to ``(H, W)`` comes out ``H x W``. Scaling happens in the frame's own pixel
    format and the RGB conversion after it, on the small picture: two swscale passes measured 2-3x faster than
    one combined scale-and-convert pass (which misses swscale's fast YUV->RGB path). AREA averaging avoids
    aliasing when shrinking large frames.
    """

    def __init__(self, size: Size, sample_aspect_ratio: Fraction | None) -> None:
        self._size, self._sar = size, float(sample_aspect_ratio) if sample_aspect_ratio else 1.0
        self._scale, self._convert = VideoReformatter(), VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        quarter_turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise, like np.rot90
        display_w = frame.width * self._sar
        if isinstance(self._size, int):  # short side S, then the centre S x S
            size = self._size
            scale = size / min(display_w, frame.height)
            width, height = max(size, round(display_w * scale)), max(size, round(frame.height * scale))
            crop_h = crop_w = size
        else:  # a fixed (H, W) of the displayed picture: stored sideways when rotated a quarter turn
            height, width = self._size[::-1] if quarter_turns % 2 else self._size
            crop_h, crop_w = height, width
        scaled = self._scale.reformat(frame, width, height, interpolation="AREA")
        rgb = self._convert.reformat(scaled, format="rgb24").to_ndarray()
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        picture = rgb[top : top + crop_h, left : left + crop_w]
        return np.rot90(picture, quarter_turns) if quarter_turns else picture
