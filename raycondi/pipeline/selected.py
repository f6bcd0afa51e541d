"""What the selection of one video hands to the teacher: :class:`SelectedClips`, and the helpers the two
selection algorithms (:mod:`~raycondi.pipeline.topk`, :mod:`~raycondi.pipeline.spool`) share. No torch, no Ray."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from raycondi.video.decode import Clip

__all__ = ["Scorer", "SelectedClips", "stack_clips", "teacher_only", "timed"]

Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Student on a (B, T, H, W, 3) uint8 batch -> (class probabilities (B, C), confidence z~ (B,))."""


@dataclass(frozen=True, eq=False)
class SelectedClips:
    """One video after selection.

    ``num_clips`` is the video's N grid clips. ``clips`` are the grid indices of the clips the decode produced,
    increasing (all N in a stream; only the chosen ones when seeking; the keyframe candidates), with their
    ``starts``/``ends`` and, when the student ran, ``confidence`` (z̃) and ``scores`` (what the strategy ranked
    by) in the same order (empty otherwise). ``student_clips`` and ``teacher_clips`` are the chosen grid indices
    in rank order (temporal order for the teacher-only strategies), ``student_probs`` ``(K_s, C)`` the student's
    probabilities on its clips, ``teacher_frames`` ``(K_t, T, H, W, 3)`` the teacher clips' pixels;
    ``duration_s`` the decoded video's duration, ``decode_s``/``student_s`` the time spent.
    """

    num_clips: int
    clips: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    duration_s: float
    confidence: np.ndarray
    scores: np.ndarray
    student_clips: np.ndarray
    student_probs: np.ndarray
    teacher_clips: np.ndarray
    teacher_frames: np.ndarray
    decode_s: float
    student_s: float

    def positions(self, indices: np.ndarray) -> np.ndarray:
        """Where the grid clips ``indices`` (all among ``clips``) stand in ``clips``."""
        return np.searchsorted(self.clips, np.asarray(indices, dtype=np.int64))

    @property
    def teacher_confidence(self) -> np.ndarray | None:
        """z̃ of the teacher's clips, in their order (the weights of ``weighting="confidence"``); None
        when the student did not run."""
        return self.confidence[self.positions(self.teacher_clips)] if self.confidence.size else None


def teacher_only(num_clips: int, clips: np.ndarray, starts: np.ndarray, ends: np.ndarray, duration_s: float,
                 teacher_clips: np.ndarray, teacher_frames: np.ndarray) -> SelectedClips:
    """The selection of a strategy that runs no student: no scores, no student clips (decode_s: 0, for the
    caller to time)."""
    empty = np.empty(0, np.float32)
    return SelectedClips(num_clips, clips, starts, ends, duration_s, empty, empty, np.empty(0, np.int64),
                         np.empty((0, 0), np.float32), teacher_clips, teacher_frames, 0.0, 0.0)


def timed(clips: Iterable[Clip], clock: list[float]) -> Iterator[Clip]:
    """``clips``, adding the time spent producing each one to ``clock[0]``."""
    iterator = iter(clips)
    while True:
        started = time.perf_counter()
        clip = next(iterator, None)
        clock[0] += time.perf_counter() - started
        if clip is None:
            return
        yield clip


def stack_clips(frames: list[np.ndarray], clip_shape: tuple[int, ...]) -> np.ndarray:
    """``frames`` as one ``(K, *clip_shape)`` uint8 array (``(0, *clip_shape)`` when there are none)."""
    return np.stack(frames) if frames else np.empty((0, *clip_shape), np.uint8)
