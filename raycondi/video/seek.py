"""Decode only the clips a strategy needs: seek to the keyframe before each, and produce exactly the clips a
full decode (:func:`raycondi.video.decode.iter_clips`) would, pixel for pixel, with the same ``start_s``.

**The frame grid.** A full decode numbers frames 0, 1, 2, ... in presentation order and cuts clip ``i`` from
frames ``i * clip_len * stride`` on. Seeking needs the same numbers without decoding everything before, so it
maps a frame's pts to its number on the stream's constant-frame-rate grid, ``n = round((pts - pts_0) * time_base
* rate)``. The whole file is demuxed once (its packets read, none decoded): the packets give the last frame and
the keyframes' numbers, and their count must be the frames the timestamps span; :class:`FrameGrid` holds that
and the first frame, decoded once, as a full decode's clock starts at it. Every frame a seek decodes is checked
against the grid too: a variable frame rate (a pts off the grid, or an average rate that is not the base rate),
a gap in the numbers, a seek that lands after its target, or a stream that states no rate raises
:class:`NoSeek`, and the caller decodes the whole video instead (and says why in ``decode_fallback``).

**Seeking.** For clip ``i`` the decoder needs the keyframe at or before the clip's first frame: when it has
already decoded past that keyframe it decodes on, else the demuxer seeks there. The packets shown before the
clip's first frame are decoded with ``skip_frame=NONREF`` (:func:`~raycondi.video.container.packets_to_frames`):
the reference frames the clip depends on are decoded, the rest skipped (decoders that ignore the flag, as
FFmpeg's VP9, decode them all). Clips are decoded in index order; each one continues to the first frame of the
next clip, whose time is its ``end_s`` (the last clip ends where the video ends).

**Keyframe candidates** (:meth:`SeekingDecoder.candidate_clips`, ``candidates="keyframes"``): the grid clips a
decoder reaches cheaply, those that start fewer than ``reach`` frames after a keyframe
(:func:`raycondi.selection.keyframe_candidates` on :meth:`SeekingDecoder.keyframe_offsets`). From each keyframe
the decoder decodes on through its candidates and skips to the next keyframe that has any: on a long-GOP stream
(a 60 s x264 stream with keyint 250 has 6 keyframes) a small share of the frames; on a stream with a keyframe
every clip, nearly all of them.

What seeking does not check: the frames it does not decode. Corruption there goes unnoticed (the full decode
would have failed the video); truncation is caught, because the grid's last frame must reach the declared
duration. Seeking reads the whole file (the demux) and decodes little of it: it saves decoding, not bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from raycondi.selection import keyframe_candidates
from raycondi.video.container import (
    DecodeLimits,
    DecodeStats,
    check_limits,
    open_video,
    packets_to_frames,
)
from raycondi.video.decode import Clip, ClipBuilder, ClipSpec, ResizeRGB, check_complete, count_clips
from raycondi.video.storage import StorageOptions

__all__ = ["FrameGrid", "NoSeek", "SeekingDecoder", "keyframe_offsets"]

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


def _seek(container, stream, pts: int) -> None:
    """Seek to the keyframe at or before ``pts``; :class:`NoSeek` where the demuxer refuses (FFmpeg's AVI demuxer
    answers EPERM for some files)."""
    try:
        container.seek(pts, backward=True, any_frame=False, stream=stream)
    except av.FFmpegError as error:
        raise NoSeek(f"the demuxer cannot seek ({error})") from None


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

    def go_to(self, n: int, keyframe: int) -> None:
        """Make frame ``n`` the next one wanted, ``keyframe`` being the last keyframe at or before it: decode on
        when the decoder is past that keyframe and before ``n``, else seek to it."""
        self.target = n
        if self.frames is not None and keyframe <= self.position + 1 and self.position < n:
            return
        offset = round(self.grid.first_pts + n * self.grid.step)
        for _ in range(_RESEEKS):
            _seek(self.container, self.stream, offset)
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

    ``num_clips`` is N, as the full decode counts it, ``keyframes`` the keyframes' frame numbers;
    :meth:`clips` yields grid clips of given indices and :meth:`keyframe_clips` the keyframe candidates, each in
    time order. ``stats`` counts the frames decoded
    (references decoded to reach a clip included) and the bytes read. Raises :class:`NoSeek` where seeking
    cannot reproduce the full decode, :class:`~raycondi.video.container.VideoDecodeError` for a video that
    cannot be decoded at all.
    """

    def __init__(self, uri: str, spec: ClipSpec, *, skim_step: int = 1, limits: DecodeLimits | None = None,
                 storage: StorageOptions | None = None, stats: DecodeStats | None = None) -> None:
        self.uri, self.spec, self.skim_step, self.limits = uri, spec, skim_step, limits or DecodeLimits()
        self._opened = open_video(uri, self.limits, storage, stats)
        self.container, self.stream = self._opened.__enter__()
        try:
            self.grid, self.keyframes = self._grid(stats)
            check_limits(uri, self.limits, self.stream.width, self.stream.height, self.grid.end_s, self.grid.frames)
            check_complete(uri, self.container, self.stream, self.grid.end_s)
        except BaseException:
            self.close()
            raise
        self.convert = ResizeRGB(spec.size, self.stream.sample_aspect_ratio)
        self.cursor = _Cursor(uri, self.container, self.stream, self.grid, stats)

    def _grid(self, stats: DecodeStats | None) -> tuple[FrameGrid, list[int]]:
        """The grid and the keyframes' numbers, from the packets of the whole file (module docstring)."""
        container, stream = self.container, self.stream
        rate, time_base = stream.guessed_rate, stream.time_base
        if not rate or not time_base:
            raise NoSeek("the stream states no frame rate")
        if stream.average_rate and stream.average_rate != rate:
            raise NoSeek(f"variable frame rate (average {stream.average_rate} fps, base {rate} fps)")
        step = 1 / (Fraction(rate) * Fraction(time_base))
        packets = []
        for p in container.demux(stream):
            if stats is not None:
                stats.check_time(self.uri)
            if p.size:
                packets.append((p.pts, p.duration, p.is_keyframe))
        if not packets or any(pts is None for pts, _, _ in packets):
            raise NoSeek("a packet has no timestamp")
        _seek(container, stream, 0)
        first = _first_frame(self.uri, container, stream, stats)
        numbered = FrameGrid(first.pts, first.time or 0.0, step, 0, 0.0)
        last_pts, last_duration, _ = max(packets)
        duration = float(last_duration * time_base) if last_duration else float(step * time_base)
        grid = FrameGrid(first.pts, numbered.first_time, step, numbered.number(last_pts) + 1,
                         float(last_pts * time_base) - numbered.first_time + duration)
        if len(packets) != grid.frames:
            raise NoSeek(f"the timestamps span {grid.frames} frames, the stream has {len(packets)}")
        keyframes = sorted(grid.number(pts) for pts, _, key in packets if key)
        if not keyframes or keyframes[0] != 0:
            raise NoSeek("the stream does not start with a keyframe")
        return grid, keyframes

    def __enter__(self) -> SeekingDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._opened.__exit__(None, None, None)

    @property
    def num_clips(self) -> int:
        return count_clips(-(-self.grid.frames // self.spec.stride), self.spec.clip_len)

    def clip_at(self, index: int, first: int) -> Clip:
        """The clip numbered ``index`` whose first frame is frame ``first``: ``clip_len`` frames every
        ``stride``-th (looped when the video ends first), ending where the frame after its span starts."""
        spec, grid = self.spec, self.grid
        span = spec.clip_len * spec.stride
        self.cursor.go_to(first, self.keyframes[bisect.bisect_right(self.keyframes, first) - 1])
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
            yield self.clip_at(index, index * span)

    def keyframe_offsets(self) -> np.ndarray:
        """Per grid clip, the frames from the keyframe at or before its first frame to it, ``(N,)`` int64."""
        span = self.spec.clip_len * self.spec.stride
        firsts = np.arange(self.num_clips, dtype=np.int64) * span
        keyframes = np.asarray(self.keyframes, dtype=np.int64)
        return firsts - keyframes[np.searchsorted(keyframes, firsts, side="right") - 1]

    def candidate_clips(self, reach: int) -> Iterator[Clip]:
        """The grid clips that start fewer than ``reach`` frames after a keyframe (module docstring), in order."""
        yield from self.clips(np.flatnonzero(keyframe_candidates(self.keyframe_offsets(), reach)))


def keyframe_offsets(uri: str, spec: ClipSpec, *, limits: DecodeLimits | None = None,
                     storage: StorageOptions | None = None) -> np.ndarray | None:
    """:meth:`SeekingDecoder.keyframe_offsets` of ``uri`` (reading its packets, decoding one frame); None when the
    video cannot be sought (the labelling job decodes such a video in full: every clip is a candidate).
    ``prepare`` stores them with the clips, for ``evaluate --candidates keyframes``."""
    try:
        with SeekingDecoder(uri, spec, limits=limits, storage=storage) as video:
            return video.keyframe_offsets()
    except NoSeek:
        return None
