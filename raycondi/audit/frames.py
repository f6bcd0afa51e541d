"""Frame strips of the clips that decided a label: a few frames of each selected clip, side by side, small.

The clips are the job's own, pixel for pixel: cut at the teacher checkpoint's ``clip_len`` and ``resize`` (the
decode both models took, :func:`raycondi.pipeline.checks.check_models`), by the seeking decoder of
:mod:`raycondi.video.seek` -- which decodes only the clips asked for, reading the file once to find them, and
raises ``NoSeek`` where seeking could not reproduce the full decode (no frame rate, a variable one, an unusable
index) -- else by the full decode. So a strip shows what the models saw, rotation and pixel aspect included,
whatever the container's timestamps look like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raycondi.video.container import DecodeLimits
from raycondi.video.decode import ClipSpec, iter_clips
from raycondi.video.seek import NoSeek, SeekingDecoder
from raycondi.video.storage import StorageOptions

__all__ = ["clip_strips", "decoded_clips", "frame_indices", "strip"]

GAP = 2  # white pixels between the frames of a strip


def frame_indices(clip_len: int, frames: int) -> np.ndarray:
    """``frames`` of a clip's ``clip_len`` frames, evenly spread: the one in the middle of each share."""
    return ((np.arange(min(frames, clip_len)) + 0.5) * clip_len / min(frames, clip_len)).astype(int)


def strip(pictures: Sequence[np.ndarray], height: int) -> np.ndarray:
    """RGB frames scaled to ``height`` pixels (nearest neighbour) and set side by side, ``GAP`` white pixels apart."""
    h, w = pictures[0].shape[:2]
    rows = (np.arange(height) * h // height).clip(0, h - 1)
    cols = (np.arange(max(1, round(w * height / h))) * h // height).clip(0, w - 1)
    gap = np.full((height, GAP, 3), 255, np.uint8)
    pieces = [piece for picture in pictures for piece in (picture[rows][:, cols], gap)][:-1]
    return np.concatenate(pieces, axis=1)


def decoded_clips(uri: str, indices: Sequence[int], spec: ClipSpec, *, limits: DecodeLimits,
                  storage: StorageOptions | None) -> dict[int, np.ndarray]:
    """The frames ``(clip_len, H, W, 3)`` of clips ``indices`` of ``uri``, as the labelling job decoded them
    (module docstring). Raises :class:`~raycondi.video.container.VideoDecodeError` when the video cannot be read."""
    wanted = sorted(set(indices))
    try:
        with SeekingDecoder(uri, spec, limits=limits, storage=storage) as decoder:
            return {clip.index: clip.full() for clip in decoder.clips([i for i in wanted if i < decoder.num_clips])}
    except NoSeek:
        return {clip.index: clip.full() for clip in iter_clips(uri, spec.clip_len, spec.size, spec.stride,
                                                              limits=limits, storage=storage)
                if clip.index in wanted}


def clip_strips(uri: str, indices: Sequence[int], spec: ClipSpec, *, frames: int, height: int, limits: DecodeLimits,
                storage: StorageOptions | None) -> list[np.ndarray | None]:
    """One strip per clip index (None for an index the video does not have), ``frames`` frames each."""
    clips = decoded_clips(uri, indices, spec, limits=limits, storage=storage)
    shown = frame_indices(spec.clip_len, frames)
    return [strip(list(clips[i][shown]), height) if i in clips else None for i in indices]
