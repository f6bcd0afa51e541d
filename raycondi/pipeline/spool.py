"""Selection for the teacher-only strategies (``dense``, ``equidistant``, ``random``), which need N before they
can choose: each clip is spooled to a temporary file as it is decoded (memory up to ``SPOOL_BYTES``, then the
worker's disk), and the chosen ones are read back once N is known. ``dense`` chooses all N, so its selected
clips, like the N teacher clips it costs, are O(N)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from raycondi import selection
from raycondi.pipeline.selected import SelectedClips, stack_clips, teacher_only, timed
from raycondi.video.decode import Clip

__all__ = ["SPOOL_BYTES", "select_spooled"]

SPOOL_BYTES = 64 << 20


def select_spooled(clips: Iterable[Clip], rule: str, k: int, rng: np.random.Generator | int = 0) -> SelectedClips:
    """Consume one video's clips (in index order) and keep the teacher clips of ``rule`` (``dense``,
    ``equidistant_k`` or ``random_k``, with ``rng``; :mod:`raycondi.selection`), in temporal order.

    Raises whatever iterating ``clips`` raises (``VideoDecodeError``) and ``ValueError`` for no clips or
    another rule.
    """
    if rule not in ("dense", "equidistant_k", "random_k"):
        raise ValueError(f"rule: the spool serves dense, equidistant_k and random_k, not {rule!r}")
    decode_clock = [0.0]
    starts: list[float] = []
    ends: list[float] = []
    clip_shape: tuple[int, ...] = ()
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        for clip in timed(clips, decode_clock):
            starts.append(clip.start_s)
            ends.append(clip.end_s)
            clip_shape = clip.full_shape
            spool.write(np.ascontiguousarray(clip.full()).data)
        n = len(starts)
        if n == 0:
            raise ValueError("clips: the video has no clips")
        if rule == "dense":
            teacher_clips = np.arange(n, dtype=np.int64)
        elif rule == "equidistant_k":
            teacher_clips = selection.equidistant_indices(n, k)
        else:
            teacher_clips = selection.random_indices(n, k, rng)
        size = int(np.prod(clip_shape))
        frames = []
        for index in teacher_clips:
            spool.seek(int(index) * size)
            frames.append(np.frombuffer(spool.read(size), np.uint8).reshape(clip_shape))
    chosen = teacher_only(n, np.arange(n, dtype=np.int64), np.array(starts), np.array(ends), ends[-1] - starts[0],
                          teacher_clips, stack_clips(frames, clip_shape))
    return replace(chosen, decode_s=decode_clock[0])
