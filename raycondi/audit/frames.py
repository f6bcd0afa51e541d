"""Frame strips of the clips that decided a label: a few frames of each selected clip, side by side, small.

Only the selected clips are decoded: the video is opened through the storage layer (ranged reads, never a
download), and for each clip the demuxer seeks to the keyframe before its start and decodes on to its last
wanted frame. The wanted times are ``frames`` points evenly spaced inside ``[start, end)`` (each the middle of
its share of the clip), on the labelling job's clock: seconds after the stream's first timestamp; each is shown
by the decoded frame nearest to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np

from raycondi.video.container import DecodeLimits, VideoDecodeError, describe, open_video, packets_to_frames
from raycondi.video.storage import StorageOptions

__all__ = ["clip_strips", "frame_times", "strip"]

GAP = 2  # white pixels between the frames of a strip


def frame_times(start: float, end: float, frames: int) -> np.ndarray:
    """``frames`` times evenly spaced in ``[start, end)``: the middle of each ``1/frames`` of the clip."""
    return start + (np.arange(frames) + 0.5) * (end - start) / frames


def strip(pictures: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-height RGB frames side by side, ``GAP`` white pixels apart."""
    height = pictures[0].shape[0]
    gap = np.full((height, GAP, 3), 255, np.uint8)
    pieces = [piece for picture in pictures for piece in (picture, gap)][:-1]
    return np.concatenate(pieces, axis=1)


def clip_strips(uri: str, clips: Sequence[tuple[float, float]], *, frames: int, height: int,
                limits: DecodeLimits, storage: StorageOptions | None) -> list[np.ndarray]:
    """One strip per ``(start_s, end_s)`` clip, each ``frames`` frames of ``height`` pixels (the video's aspect
    ratio kept). Raises :class:`~raycondi.video.container.VideoDecodeError` when the video cannot be read."""
    with open_video(uri, limits, storage) as (container, stream):
        width = max(1, round(stream.width * height / stream.height))
        return [strip(_nearest_frames(uri, container, stream, frame_times(start, end, frames), width, height))
                for start, end in clips]


def _nearest_frames(uri: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    times: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """The decoded frames nearest to ``times`` (ascending), resized to ``width`` x ``height`` RGB."""
    origin = stream.start_time or 0
    try:
        container.seek(origin + int(times[0] / stream.time_base), stream=stream, backward=True)
    except (av.FFmpegError, OSError) as error:
        raise VideoDecodeError(uri, f"cannot seek to {times[0]:.2f} s ({describe(error)})") from error
    best: list[tuple[float, av.VideoFrame] | None] = [None] * len(times)
    for frame in packets_to_frames(uri, container.demux(stream)):
        if frame.pts is None:
            continue
        time = float((frame.pts - origin) * stream.time_base)
        for i, target in enumerate(times):
            if best[i] is None or abs(time - target) < best[i][0]:
                best[i] = (abs(time - target), frame)
        if time >= times[-1]:  # frames come in presentation order: none later is nearer
            break
    if best[0] is None:  # no frame at or after the seek point: a blank strip rather than a failed report
        return [np.full((height, width, 3), 255, np.uint8)] * len(times)
    return [frame.reformat(width=width, height=height, format="rgb24").to_ndarray() for _, frame in best]
