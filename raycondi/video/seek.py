"""Decode only the clips a strategy needs: seek to the keyframe before each, and produce exactly the clips a
full decode (:func:`raycondi.video.decode.iter_clips`) would, pixel for pixel, with the same ``start_s``.

**The frame grid.** A full decode numbers frames 0, 1, 2, ... in presentation order and cuts clip ``i`` from
frames ``i * clip_len * stride`` on. Seeking needs the same numbers without decoding everything before, so it
maps a frame's pts to its number on the stream's constant-frame-rate grid, ``n = round((pts - pts_0) * time_base
* rate)``; :class:`FrameGrid` holds the first frame (decoded once, as a full decode's clock starts at it) and the
last one, found by demuxing, not decoding, from the last keyframe to the end. Every frame a seek decodes is
checked against the grid: a pts off the grid (a variable frame rate), a gap in the numbers, a seek that lands
after its target, or a stream that states no rate or duration raises :class:`NoSeek`, and the caller decodes the
whole video instead (and says why in ``decode_fallback``).

**Seeking.** For clip ``i`` the demuxer seeks to the keyframe at or before its first frame; the packets shown
before that frame are decoded with ``skip_frame=NONREF`` (:func:`~raycondi.video.container.packets_to_frames`):
the reference frames the clip's frames depend on are decoded, the rest skipped. A clip close after the previous
one is reached by decoding on instead of seeking. Clips are decoded in index order; each one continues to the
first frame of the next clip, whose time is its ``end_s`` (the last clip ends where the video ends).

**Keyframe candidates** (:meth:`SeekingDecoder.keyframe_clips`, ``candidates="keyframes"``): clips that start at a
keyframe, so reaching one costs nothing but its own frames. The keyframes are found by demuxing the whole file
(reading it, decoding none of it); going through them in time order, a keyframe starts a candidate when it is at
least a clip's span after the previous candidate's start, so no frame is decoded twice. A long-GOP stream has few
candidates (a 60 s x264 stream with keyint 250 has 6); a stream with a keyframe every clip has nearly one per
clip. Candidates are numbered 0, 1, ... in time order.

What seeking does not check: the parts of the file it skips. Corruption there goes unnoticed (the full decode
would have failed the video); truncation is caught, because the grid's last frame must reach the declared
duration.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av

from raycondi.video.container import (
    DecodeLimits,
    DecodeStats,
    check_limits,
    open_video,
    packets_to_frames,
)
from raycondi.video.decode import Clip, ClipBuilder, ClipSpec, ResizeRGB, check_complete, count_clips
from raycondi.video.storage import StorageOptions

__all__ = ["FrameGrid", "NoSeek", "SeekingDecoder", "keyframe_starts"]

_GRID_TOLERANCE = 0.25  # of a frame: a pts further than this from the grid means a variable frame rate
_RESEEKS = 3  # seeks that may land after their target before the index is declared unusable


class NoSeek(Exception):
    """Seeking cannot reproduce the full decode of this video; ``str()`` says why."""


@dataclass(frozen=True)
class FrameGrid:
    """A constant-frame-rate stream's frame numbers: ``frames`` in all, the first at ``first_pts`` (whose
    ``frame.time`` is ``first_time``), ``step`` pts apart; the video ends ``end_s`` after its first frame."""

    first_pts: int
    first_time: float
    step: Fraction
    frames: int
    end_s: float

    def number(self, pts: int | None) -> int:
        """The number of the frame shown at ``pts``; :class:`NoSeek` off the grid."""
        if pts is None:
            raise NoSeek("a frame has no timestamp")
        exact = (pts - self.first_pts) / self.step
        n = round(exact)
        if abs(exact - n) > _GRID_TOLERANCE:
            raise NoSeek(f"variable frame rate (pts {pts} is {float(exact):.2f} frames from the first)")
        return n

    def threshold(self, n: int) -> float:
        """A pts between frames ``n - 1`` and ``n``: packets shown before it come before frame ``n``."""
        return float(self.first_pts + (n - 0.5) * self.step)


def _first_frame(uri: str, container, stream, stats: DecodeStats | None) -> av.VideoFrame:
    frames = packets_to_frames(uri, container.demux(stream), stats)
    first = next(frames, None)
    frames.close()
    if first is None or first.pts is None:
        raise NoSeek("no first frame with a timestamp")
    return first


def _packets(container, stream) -> list[tuple[int | None, int, bool]]:
    """``(pts, duration, is_keyframe)`` of the packets from the demuxer's position to the end (not decoded)."""
    return [(p.pts, p.duration, p.is_keyframe) for p in container.demux(stream) if p.size]


def _tail_packets(container, stream) -> list[tuple[int | None, int, bool]]:
    """:func:`_packets` from the last keyframe on."""
    time_base = stream.time_base
    end_pts = (stream.start_time or 0) + (stream.duration or 0)
    if not stream.duration and container.duration:
        end_pts = int(container.duration / av.time_base / time_base)
    if not end_pts:
        raise NoSeek("the stream states no duration")
    container.seek(end_pts, backward=True, any_frame=False, stream=stream)
    return _packets(container, stream)


class _Cursor:
    """Where the decoder is: the frames since the last seek, and the number of the last one it gave.

    Frames before ``target`` are decoded only as references (``skip_frame=NONREF``).
    """

    def __init__(self, uri: str, container, stream, grid: FrameGrid, stats: DecodeStats | None) -> None:
        self.uri, self.container, self.stream, self.grid, self.stats = uri, container, stream, grid, stats
        self.frames: Iterator[av.VideoFrame] | None = None
        self.pending: av.VideoFrame | None = None
        self.position = -1  # number of the last frame given since the last seek
        self.target = 0

    def _skip(self, pts: int | None) -> bool:
        return pts is not None and pts < self.grid.threshold(self.target)

    def go_to(self, n: int, near: int) -> None:
        """Make frame ``n`` the next one wanted: decode on to it when it is at most ``near`` frames after the
        next frame, else seek to the keyframe before it."""
        self.target = n
        if self.frames is not None and self.position < n <= self.position + 1 + near:
            return
        offset = round(self.grid.first_pts + n * self.grid.step)
        for _ in range(_RESEEKS):
            self.container.seek(offset, backward=True, any_frame=False, stream=self.stream)
            self.frames = packets_to_frames(self.uri, self.container.demux(self.stream), self.stats,
                                            skip=self._skip, codec=self.stream.codec_context)
            self.pending, self.position = next(self.frames, None), -1
            if self.pending is None:
                raise NoSeek(f"nothing to decode after seeking to frame {n}")
            landed = self.grid.number(self.pending.pts)
            if landed <= n:
                return
            offset -= round((landed - n + 1) * 2 * self.grid.step)  # after the target: seek earlier
        raise NoSeek(f"seeking to frame {n} lands after it")

    def give_back(self, number: int, frame: av.VideoFrame) -> None:
        """Make ``frame`` (number ``number``, just given) the next one again."""
        self.pending, self.position = frame, number - 1

    def next(self) -> tuple[int, av.VideoFrame] | None:
        """The next frame in presentation order with its number, or None at the end of the video."""
        frame, self.pending = self.pending or next(self.frames, None), None
        if frame is None:
            return None
        number = self.grid.number(frame.pts)
        if number <= self.position:
            raise NoSeek(f"frame {number} came after frame {self.position}")
        self.position = number
        return number, frame


class SeekingDecoder:
    """Decode chosen clips of one video by seeking (module docstring); a context manager around the open file.

    ``num_clips`` is N, as the full decode counts it; :meth:`clips` yields grid clips of given indices and
    :meth:`keyframe_clips` the keyframe candidates, each in time order. ``stats`` counts the frames decoded
    (references decoded to reach a clip included) and the bytes read. Raises :class:`NoSeek` where seeking
    cannot reproduce the full decode, :class:`~raycondi.video.container.VideoDecodeError` for a video that
    cannot be decoded at all.
    """

    def __init__(self, uri: str, spec: ClipSpec, *, skim_step: int = 1, limits: DecodeLimits | None = None,
                 storage: StorageOptions | None = None, stats: DecodeStats | None = None,
                 keyframes: bool = False) -> None:
        self.uri, self.spec, self.skim_step, self.limits = uri, spec, skim_step, limits or DecodeLimits()
        self._opened = open_video(uri, self.limits, storage, stats)
        self.container, self.stream = self._opened.__enter__()
        try:
            self.grid, self.keyframes = self._grid(stats, keyframes)
            check_limits(uri, self.limits, self.stream.width, self.stream.height, self.grid.end_s, self.grid.frames)
            check_complete(uri, self.container, self.stream, self.grid.end_s)
        except BaseException:
            self.close()
            raise
        self.convert = ResizeRGB(spec.size, self.stream.sample_aspect_ratio)
        self.cursor = _Cursor(uri, self.container, self.stream, self.grid, stats)

    def _grid(self, stats: DecodeStats | None, keyframes: bool) -> tuple[FrameGrid, list[int]]:
        """The grid, and with ``keyframes`` the keyframes' numbers.

        A stream whose header lists its frame count (MP4, MOV, AVI) is read from its last keyframe on; any
        other, and any stream whose keyframes are wanted, is demuxed whole (read, not decoded). The frames the
        timestamps span must be the frames listed: a gap in the timestamps would number frames otherwise
        than a full decode, which counts them.
        """
        container, stream = self.container, self.stream
        rate, time_base = stream.guessed_rate, stream.time_base
        if not rate or not time_base:
            raise NoSeek("the stream states no frame rate")
        if stream.average_rate and stream.average_rate != rate:
            raise NoSeek(f"variable frame rate (average {stream.average_rate} fps, base {rate} fps)")
        step = 1 / (Fraction(rate) * Fraction(time_base))
        whole = keyframes or not stream.frames
        if whole:
            packets = _packets(container, stream)
            container.seek(0, backward=True, any_frame=False, stream=stream)
        first = _first_frame(self.uri, container, stream, stats)
        if not whole:
            packets = _tail_packets(container, stream)
        if not packets or any(pts is None for pts, _, _ in packets):
            raise NoSeek("a packet has no timestamp")
        numbered = FrameGrid(first.pts, first.time or 0.0, step, 0, 0.0)
        last_pts, last_duration, _ = max(packets)
        duration = float(last_duration * time_base) if last_duration else float(step * time_base)
        grid = FrameGrid(first.pts, numbered.first_time, step, numbered.number(last_pts) + 1,
                         float(last_pts * time_base) - numbered.first_time + duration)
        listed = len(packets) if whole else stream.frames
        if listed != grid.frames:
            raise NoSeek(f"the timestamps span {grid.frames} frames, the stream has {listed}")
        return grid, sorted(grid.number(pts) for pts, _, key in packets if key) if keyframes else []

    def __enter__(self) -> SeekingDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._opened.__exit__(None, None, None)

    @property
    def num_clips(self) -> int:
        return count_clips(-(-self.grid.frames // self.spec.stride), self.spec.clip_len)

    def clip_at(self, index: int, first: int, near: int = 0) -> Clip:
        """The clip numbered ``index`` whose first frame is frame ``first``: ``clip_len`` frames every
        ``stride``-th (looped when the video ends first), ending where the frame after its span starts.
        Reached by decoding on when it starts at most ``near`` frames after the decoder's position."""
        spec, grid = self.spec, self.grid
        span = spec.clip_len * spec.stride
        self.cursor.go_to(first, near)
        builder, start, end = ClipBuilder(spec, self.skim_step, self.convert), None, grid.end_s
        while (item := self.cursor.next()) is not None:
            number, frame = item
            if number < first:
                continue
            time = frame.time - grid.first_time
            if number == first + span:
                end = time
                self.cursor.give_back(number, frame)  # the next clip may start with it
                break
            if start is None:
                if number != first:
                    raise NoSeek(f"frame {first} is missing from the stream")
                start = time
            if (number - first) % spec.stride == 0:
                check_limits(self.uri, self.limits, frame.width, frame.height, None, None)
                builder.add(frame)
        expected = min(spec.clip_len, -(-(grid.frames - first) // spec.stride))
        if start is None or builder.filled != expected:
            raise NoSeek(f"clip {index}: {builder.filled} of its {expected} frames are in the stream")
        return builder.clip(index, start, end)

    def clips(self, indices: Sequence[int]) -> Iterator[Clip]:
        """The grid clips ``indices`` (each in ``[0, num_clips)``), in increasing order."""
        span = self.spec.clip_len * self.spec.stride
        for index in sorted({int(i) for i in indices}):
            if not 0 <= index < self.num_clips:
                raise ValueError(f"clip index {index} outside [0, {self.num_clips})")
            yield self.clip_at(index, index * span, near=span)  # a clip's span on: cheaper than a seek

    def keyframe_clips(self) -> Iterator[Clip]:
        """The keyframe candidates (module docstring), numbered in time order; needs ``keyframes=True``."""
        starts = keyframe_starts(self.keyframes, self.spec.clip_len * self.spec.stride, self.grid.frames)
        for index, first in enumerate(starts):
            yield self.clip_at(index, first)  # a keyframe: seeking there costs nothing but the seek


def keyframe_starts(keyframes: Sequence[int], span: int, frames: int) -> list[int]:
    """The candidates' first frames: keyframes in time order, each at least ``span`` frames after the
    previous candidate's, all before frame ``frames``. ``[0, 12, 24, 36]`` with span 16 gives ``[0, 24]``."""
    starts: list[int] = []
    for keyframe in sorted(keyframes):
        if keyframe < frames and (not starts or keyframe >= starts[-1] + span):
            starts.append(keyframe)
    return starts
