"""Streaming top-K selection for the samplers (ConDi-SR and the other strategies ranking clips by a student's
score): every clip is scored, only the K best clips' pixels are kept. Memory O(K), not O(N).

Clips arrive in index order and are scored in mini-batches. A min-heap keyed ``(score, -position)`` -- the
ranking of :mod:`raycondi.selection`: higher score first, lower index on ties -- keeps the K best so far
(the root is the worst kept clip); per-clip outputs are small and kept for every clip. When the video ends,
:func:`raycondi.selection.split_indices`, the evaluation's own rule, picks the K_s student clips (lowest
entropy) and the K_t teacher clips (highest score among the rest) from the full arrays. The heap holds every
teacher clip: they are the K_t best of the clips left after removing at most K_s, so among the K best.

A skim clip (:class:`~raycondi.video.decode.SkimClip`, a student with ``frame_step > 1``) enters the heap as
its whole clip: its other frames are converted only then, for the few clips that ever rank among the K best.
A batch whose clips hold ``PENDING_BYTES`` of decoded pictures is scored before it is full.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable

import numpy as np

from raycondi import selection
from raycondi.pipeline.selected import Scorer, SelectedClips, stack_clips, timed
from raycondi.video.decode import Clip

__all__ = ["PENDING_BYTES", "scored_selection", "select_top_k"]

PENDING_BYTES = 128 << 20  # a batch waiting for the student is scored early past this (skim clips hold pictures)

ClipScore = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(student probabilities (B, C), z~ (B,)) -> the per-clip score, higher first."""


class _TopK:
    """The K best clips so far by ``(score, -position)`` (positions in arrival order, which is index order),
    and every clip's student outputs."""

    def __init__(self, k: int, scorer: Scorer, score: ClipScore, decode_clock: list[float]) -> None:
        self.k, self.scorer, self.score, self.decode_clock = k, scorer, score, decode_clock
        self.heap: list[tuple[float, int, np.ndarray]] = []  # min-heap: the worst kept clip at the root
        self.probs: list[np.ndarray] = []
        self.confidence: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.student_s = 0.0

    def add(self, batch: list[Clip], first: int) -> None:
        """Score ``batch`` (its clips at positions ``first, first + 1, ...``) and keep those among the K best."""
        started = time.perf_counter()
        probs, confidence = self.scorer(np.stack([c.frames for c in batch]))
        self.student_s += time.perf_counter() - started
        probs, confidence = np.asarray(probs, np.float32), np.asarray(confidence, np.float32)
        scores = self.score(probs, confidence)
        self.probs.append(probs)
        self.confidence.append(confidence)
        self.scores.append(scores)
        for position, (clip, value) in enumerate(zip(batch, scores, strict=True), first):
            key = (float(value), -position)  # positions are unique: frames are never compared
            if len(self.heap) < self.k or key > self.heap[0][:2]:
                started = time.perf_counter()
                item = (*key, clip.full())  # a skim clip's other frames are converted only now
                self.decode_clock[0] += time.perf_counter() - started
                (heapq.heappush if len(self.heap) < self.k else heapq.heapreplace)(self.heap, item)

    def kept(self) -> dict[int, np.ndarray]:
        """The kept clips' whole frames by position."""
        return {-negative_position: frames for _, negative_position, frames in self.heap}


def select_top_k(
    clips: Iterable[Clip], k: int, k_student: int, *, scorer: Scorer, score: ClipScore, batch_size: int,
) -> SelectedClips:
    """Score every clip of ``clips`` (a video's clips or candidates, in index order) and keep the clips of the
    module docstring's rule. The selection's ``num_clips`` is the clips scored; ``duration_s`` from the first
    start to the last end (a caller that scored candidates only sets both from the video).

    Raises whatever iterating ``clips`` raises (``VideoDecodeError``) and ``ValueError`` for no clips.
    """
    decode_clock = [0.0]
    best = _TopK(k, scorer, score, decode_clock)
    indices: list[int] = []
    starts: list[float] = []
    ends: list[float] = []
    pending: list[Clip] = []
    pending_bytes, clip_shape = 0, ()
    for clip in timed(clips, decode_clock):
        indices.append(clip.index)
        starts.append(clip.start_s)
        ends.append(clip.end_s)
        clip_shape = clip.full_shape
        pending.append(clip)
        pending_bytes += clip.held_bytes
        if len(pending) == batch_size or pending_bytes >= PENDING_BYTES:
            best.add(pending, len(indices) - len(pending))
            pending, pending_bytes = [], 0
    if pending:
        best.add(pending, len(indices) - len(pending))
    if not starts:
        raise ValueError("clips: the video has no clips")
    probs, confidence, scores = (np.concatenate(part) for part in (best.probs, best.confidence, best.scores))
    kept = best.kept()
    return scored_selection(np.asarray(indices, dtype=np.int64), np.array(starts), np.array(ends), probs, confidence,
                            scores, k, k_student, lambda positions: stack_clips([kept[int(i)] for i in positions],
                                                                                clip_shape),
                            decode_s=decode_clock[0], student_s=best.student_s)


def scored_selection(
    clips: np.ndarray, starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, confidence: np.ndarray,
    scores: np.ndarray, k: int, k_student: int, frames_at: Callable[[np.ndarray], np.ndarray], *,
    decode_s: float = 0.0, student_s: float = 0.0,
) -> SelectedClips:
    """The samplers' rule on one video's scored clips (grid indices ``clips``, with their spans and student
    outputs): :func:`raycondi.selection.split_indices` picks the K_s student clips by entropy and the K_t teacher
    clips by ``scores``; ``frames_at(positions)`` gives the teacher clips' pixels. The streaming heap above and
    the GPU stage (:mod:`raycondi.pipeline.gpu`) both end here."""
    student, teacher = selection.split_indices(selection.predictive_entropy(probs), scores, k, k_student)
    return SelectedClips(len(clips), clips, starts, ends, float(ends[-1] - starts[0]), confidence, scores,
                         clips[student], probs[student], clips[teacher], frames_at(teacher), decode_s, student_s)
