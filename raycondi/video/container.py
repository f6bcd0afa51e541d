"""Opening one video for decoding: the container, its first video stream, the checks, and the frames.

Shared by the full decode (:mod:`raycondi.video.decode`) and the seeking decode (:mod:`raycondi.video.seek`):

* :func:`open_video` reads the file through :func:`storage.open_input` in ``READ_BLOCK``-sized ranged reads
  (about one GET per MiB on S3; a video is never downloaded whole), picks the first video stream and rejects
  what the header already rules out (not a media file, a still image, no video stream, over the
  :class:`DecodeLimits`);
* :func:`packets_to_frames` decodes packets with FFmpeg's ``err_detect=explode`` (a bitstream error aborts
  instead of being concealed), raises on packets or frames FFmpeg flags as corrupt, declares a decoder fed
  ``MAX_PACKETS_WITHOUT_FRAME`` packets in a row without a frame stuck, and can skip the non-reference frames
  before a presentation time (``skip_frame=NONREF``): the frames a seek decodes only to reach its target;
* :class:`DecodeStats` counts what a decode cost: frames the decoder produced and bytes read from storage; and
  holds the decode's time limit (``label --video-timeout``).

Every failure raises :class:`VideoDecodeError` with the URI and a reason.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import av

from raycondi.video import faults
from raycondi.video import storage as _storage
from raycondi.video.storage import StorageError, StorageOptions, UriError

__all__ = [
    "DecodeLimits",
    "DecodeStats",
    "VideoDecodeError",
    "check_limits",
    "declared_duration",
    "describe",
    "open_video",
    "packets_to_frames",
]

READ_BLOCK = 1 << 20  # bytes per ranged read of the source (one GET on S3)
AVIO_BUFFER = 64 << 10  # FFmpeg's own read size from the Python file object
MAX_PACKETS_WITHOUT_FRAME = 512  # far above any codec's reorder delay; more means the decoder is stuck


class VideoDecodeError(UriError):
    """A video could not be decoded into clips; ``str()`` is ``"{uri}: {reason}"``."""


@dataclass(frozen=True)
class DecodeLimits:
    """Videos beyond these (declared or found while decoding) are rejected rather than decoded."""

    max_duration_s: float = 4 * 3600
    max_frames: int = 1_000_000
    max_width: int = 4096
    max_height: int = 4096


@dataclass
class DecodeStats:
    """What decoding one video cost: ``frames`` the decoder produced (every one, whether or not a clip used it)
    and ``bytes_read`` from storage, updated as the decode goes; and its time limit: with ``timeout_s``, a
    decode still running that many seconds after ``started`` fails (:meth:`check_time`, before each packet)."""

    frames: int = 0
    bytes_read: int = 0
    timeout_s: float | None = None
    started: float = field(default_factory=time.monotonic)

    def check_time(self, uri: str) -> None:
        """Raise :class:`VideoDecodeError` once the decode has run longer than ``timeout_s``."""
        if self.timeout_s is not None and time.monotonic() - self.started > self.timeout_s:
            raise VideoDecodeError(uri, f"decoding took longer than the video timeout of {self.timeout_s:g} s "
                                        "(--video-timeout)")


@contextlib.contextmanager
def open_video(
    uri: str, limits: DecodeLimits, storage: StorageOptions | None, stats: DecodeStats | None = None
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``uri``'s container and pick its first video stream, rejecting what the header already rules out;
    the bytes it reads are added to ``stats.bytes_read``."""
    try:
        source = _storage.open_input(uri, storage)
    except StorageError as error:
        raise VideoDecodeError(uri, f"cannot read the file: {error.reason}") from error
    with source:
        try:
            container = av.open(BlockReader(source, READ_BLOCK, stats), mode="r", buffer_size=AVIO_BUFFER)
        except (av.FFmpegError, OSError, ValueError) as error:
            reason = f"not a readable media file or truncated before its index ({describe(error)})"
            raise VideoDecodeError(uri, reason) from error
        with container:
            if container.format.name.endswith("_pipe") or container.format.name == "image2":
                raise VideoDecodeError(uri, f"a still image ({container.format.name}), not a video")
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise VideoDecodeError(uri, f"no video stream (streams: {', '.join(kinds)})")
            stream = container.streams.video[0]
            declared = declared_duration(container, stream)
            check_limits(uri, limits, stream.width, stream.height, declared, stream.frames or None)
            stream.codec_context.options = {"err_detect": "explode"}  # fail on bitstream errors, don't conceal
            yield container, stream



def packets_to_frames(
    uri: str, packets: Iterator[av.Packet], stats: DecodeStats | None = None, *,
    skip: Callable[[int | None], bool] | None = None, codec: av.codec.context.CodecContext | None = None,
) -> Iterator[av.VideoFrame]:
    """Decode ``packets`` (a ``container.demux(stream)``) into frames, refusing corrupt data.

    With ``skip`` (a test on a packet's pts) and ``codec`` (the stream's codec context), the packets it accepts
    are decoded with ``skip_frame=NONREF``: the frames nothing references are skipped, the reference frames
    that later frames need are decoded, so the frames the test rejects come out exactly as in a full decode
    (a seek skips that way what it shows before its target). Counts every frame produced in
    ``stats.frames``. Raises :class:`VideoDecodeError`.
    """
    starved, near = 0, 0.0
    try:
        for packet in packets:
            faults.on_packet(uri)
            if stats is not None:
                stats.check_time(uri)
            if packet.is_corrupt:
                raise VideoDecodeError(uri, f"corrupt or truncated video packet near {near:.2f} s")
            if skip is not None:
                codec.skip_frame = "NONREF" if skip(packet.pts) else "DEFAULT"
            frames = packet.decode()
            starved = 0 if frames else starved + 1
            if starved > MAX_PACKETS_WITHOUT_FRAME:
                raise VideoDecodeError(uri, f"no frame decoded from {starved} packets in a row: corrupt stream")
            for frame in frames:
                if frame.is_corrupt:
                    raise VideoDecodeError(uri, f"corrupt video frame near {near:.2f} s")
                near = frame.time if frame.time is not None else near
                if stats is not None:
                    stats.frames += 1
                yield frame
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError) as error:
        reason = f"corrupt or unreadable video data near {near:.2f} s ({describe(error)})"
        raise VideoDecodeError(uri, reason) from error


def check_limits(
    uri: str, limits: DecodeLimits, width: int, height: int, duration: float | None, frames: int | None
) -> None:
    if width > limits.max_width or height > limits.max_height:
        raise VideoDecodeError(
            uri, f"resolution {width}x{height} exceeds the limit {limits.max_width}x{limits.max_height}"
        )
    if duration is not None and duration > limits.max_duration_s:
        raise VideoDecodeError(uri, f"duration over {duration:.1f} s exceeds the limit {limits.max_duration_s:g} s")
    if frames is not None and frames > limits.max_frames:
        raise VideoDecodeError(uri, f"{frames} frames exceed the limit {limits.max_frames}")


def declared_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """The video's duration as its header states it, in seconds, or None when it states none."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION")  # Matroska/WebM: "HH:MM:SS.nnnnnnnnn"
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    return container.duration / av.time_base if container.duration else None


def describe(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


class BlockReader:
    """File-like view of a pyarrow input file that fetches ``block`` bytes per ranged read.

    FFmpeg reads in small pieces (``_AVIO_BUFFER``) and seeks around the header; this turns that into one
    ``read_at`` (one GET on S3) per ``block`` bytes, keeping a single block in memory.
    """

    def __init__(self, source, block: int, stats: DecodeStats | None = None) -> None:
        self._source, self._block, self._size, self._stats = source, block, source.size(), stats
        self._position, self._start, self._data = 0, 0, b""
        self.fetches = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self._size - self._position
        if n == 0 or self._position >= self._size:
            return b""
        offset = self._position - self._start
        if not 0 <= offset < len(self._data):
            self._data = self._source.read_at(min(max(n, self._block), self._size - self._position), self._position)
            self._start, offset = self._position, 0
            self.fetches += 1
            if self._stats is not None:
                self._stats.bytes_read += len(self._data)
        piece = self._data[offset : offset + n]  # may be short at the block's end; FFmpeg asks again
        self._position += len(piece)
        return piece

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position
