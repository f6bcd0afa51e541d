"""Small real video files for tests, encoded with PyAV.

Frames are numpy arrays (H, W, 3) uint8. ``level_frames`` makes videos whose frame ``i`` is a flat grey of
``frame_level(i)``, so a decoded frame's index can be read back from its mean brightness (lossy codecs keep a
flat frame's mean within a couple of levels). ``gradient_frames`` is a cheap moving pattern for long videos.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "CODEC_DEFAULTS",
    "frame_level",
    "level_index",
    "level_frames",
    "gradient_frames",
    "quadrant_frames",
    "write_video",
    "write_audio_only",
]

# codec -> (pixel format, encoder options); the container comes from the file suffix.
CODEC_DEFAULTS: dict[str, tuple[str, dict[str, str]]] = {
    "h264": ("yuv420p", {"preset": "ultrafast", "crf": "18"}),
    "mpeg4": ("yuv420p", {"qscale": "2"}),
    "libvpx-vp9": ("yuv420p", {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}),
    "mjpeg": ("yuvj444p", {"qscale": "2"}),
}
_LEVEL_BASE, _LEVEL_STEP = 16, 8


def frame_level(index: int) -> int:
    """Grey level of frame ``index`` in ``level_frames`` (16, 24, 32, ...; at most 28 distinct levels)."""
    level = _LEVEL_BASE + _LEVEL_STEP * index
    if level > 240:
        raise ValueError(f"frame index {index} has no distinct level (at most 28 frames)")
    return level


def level_index(mean: float) -> int:
    """Inverse of ``frame_level`` for a decoded frame's mean brightness (rounds to the nearest level)."""
    return round((mean - _LEVEL_BASE) / _LEVEL_STEP)


def level_frames(n: int, width: int, height: int) -> Iterator[np.ndarray]:
    """``n`` flat grey frames; frame ``i`` has value ``frame_level(i)``."""
    for i in range(n):
        yield np.full((height, width, 3), frame_level(i), dtype=np.uint8)


def gradient_frames(n: int, width: int, height: int) -> Iterator[np.ndarray]:
    """``n`` frames of a diagonal colour gradient moving by 2 pixels a frame (compresses well, decodes like footage)."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = (xs + ys).astype(np.int64)
    for i in range(n):
        g = ((base + 2 * i) % 256).astype(np.uint8)
        yield np.stack([g, 255 - g, np.full_like(g, (4 * i) % 256)], axis=-1)


def quadrant_frames(n: int, width: int, height: int) -> Iterator[np.ndarray]:
    """Black frames whose top-left quadrant is white: shows where the top-left corner ends up after rotation."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[: height // 2, : width // 2] = 255
    for _ in range(n):
        yield frame


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    codec: str = "h264",
    fps: int = 25,
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    audio: bool = False,
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` to ``path`` (container from the suffix: .mp4, .webm, .mkv, .avi).

    ``times`` gives each frame's presentation time in seconds (variable frame rate; millisecond time base).
    ``rotation`` stores a display matrix rotating the picture counter-clockwise by that many degrees.
    ``audio`` adds a 440 Hz AAC (or Opus for .webm) track as long as the video.
    ``options`` override the codec's defaults; ``container_options`` go to the muxer
    (``{"movflags": "faststart"}`` puts an MP4's index first).
    """
    path = Path(path)
    default_fmt, default_options = CODEC_DEFAULTS[codec]
    with av.open(str(path), mode="w", container_options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options={**default_options, **(options or {})})
        stream.pix_fmt = pix_fmt or default_fmt
        time_base = Fraction(1, 1000) if times is not None else Fraction(1, fps)
        stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        tone = _add_tone_stream(container, "libopus" if path.suffix == ".webm" else "aac") if audio else None
        count = 0
        for i, array in enumerate(frames):
            if count == 0:
                stream.height, stream.width = array.shape[:2]
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = round(times[i] * 1000) if times is not None else i
            frame.time_base = time_base
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode())
        if tone is not None:
            _write_tone(container, tone, times[-1] + 1 / fps if times is not None else count / fps)
    return path


def write_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An AAC tone in an MP4 container: a valid media file with no video stream."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        _write_tone(container, _add_tone_stream(container, "aac"), seconds)
    return path


def _add_tone_stream(container: av.container.OutputContainer, codec: str) -> av.audio.stream.AudioStream:
    return container.add_stream(codec, rate=48000, layout="mono")


def _write_tone(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    rate = stream.rate
    chunk = 960
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total)) / rate
        samples = _tone_samples(t, stream.format.name)
        frame = av.AudioFrame.from_ndarray(samples, format=stream.format.name, layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _tone_samples(t: np.ndarray, sample_format: str) -> np.ndarray:
    wave = 0.2 * np.sin(2 * np.pi * 440 * t)
    if sample_format.startswith("s16"):
        return (wave * 32767).astype(np.int16)[None, :]
    return wave.astype(np.float32)[None, :]
