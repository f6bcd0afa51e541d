"""Per-video clip selection and aggregation (paper Sec. III-C, Fig. 2, and the baselines of Sec. IV).

A video is cut into N clips. Every function here works on one video's per-clip arrays, in numpy
(no torch, no Ray), with these shapes and meanings:

* ``teacher_probs``: ``(N, C)`` the teacher's class probabilities (softmax at temperature 1) per clip;
* ``student_probs``: ``(N, C)`` the student's class probabilities (softmax at temperature 1) per clip;
* ``confidence``: ``(N,)`` the student's z̃ per clip (sigmoid of its confidence logit, in [0, 1]).

The module separates **which clips** from **how to aggregate**:

* index pickers -- :func:`top_k`, :func:`bottom_k`, :func:`random_indices`,
  :func:`equidistant_indices`, :func:`split_indices` -- and the per-clip scores
  :func:`predictive_entropy` and :func:`max_prob` need only the scores, so the labelling pipeline,
  which knows the student's scores before it runs the teacher, calls exactly these;
* :func:`aggregate` turns the chosen clips' prediction vectors into the video's probabilities;
* the rules -- :func:`dense`, :func:`random_k`, :func:`equidistant_k`, :func:`score_k` (the samplers,
  by a per-clip score), :func:`split_k`, :func:`oracle_k` -- compose the two on full arrays (as the
  evaluation has them) and return a :class:`Selection`; :mod:`raycondi.strategies` says which strategy
  applies which rule with which score;
* :func:`video_rng` is the per-video random generator of ``random_k``, shared by the evaluation and the
  labelling job so that both draw the same clips.

Conventions shared by every rule:

* K ≥ N uses every clip; K < 1 raises ``ValueError``.
* Ranking is by score with ties broken by clip index, lower index first (a stable sort), i.e. the
  sort key is ``(-score, index)`` for "highest" and ``(score, index)`` for "lowest". A streaming
  implementation (a heap over clips in index order) that uses the same key picks the same clips.
* Clip indices are returned in rank order (best first) for score-based rules and in increasing
  (temporal) order for :func:`random_k`, :func:`equidistant_k` and :func:`dense`.
* Video probabilities are the mean of the chosen clips' probability vectors (the paper's average
  pooling), see :func:`aggregate`.
* Bad shapes, non-finite values and out-of-range arguments raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from numbers import Integral
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Selection",
    "top_k",
    "bottom_k",
    "random_indices",
    "equidistant_indices",
    "split_indices",
    "predictive_entropy",
    "max_prob",
    "aggregate",
    "dense",
    "random_k",
    "equidistant_k",
    "score_k",
    "split_k",
    "oracle_k",
    "keyframe_candidates",
    "video_rng",
]

@dataclass(frozen=True, eq=False)
class Selection:
    """The outcome of a selection rule for one video.

    Attributes:
        probs: ``(C,)`` float64 video class probabilities.
        teacher_clips: int64 indices of the clips classified by the teacher (K_t of them).
        student_clips: int64 indices of the clips classified by the student alone (K_s of them;
            empty for every rule but :func:`split_k`).

    The arrays are copied and made read-only. ``eq=False``: compare fields with numpy instead.
    """

    probs: np.ndarray
    teacher_clips: np.ndarray
    student_clips: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        probs = np.array(self.probs, dtype=np.float64)
        if probs.ndim != 1 or probs.size < 1:
            raise ValueError(f"probs: expected a non-empty (C,) array, got shape {probs.shape}")
        values = {"probs": probs}
        for name in ("teacher_clips", "student_clips"):
            clips = np.array(getattr(self, name), dtype=np.int64)
            if clips.ndim != 1:
                raise ValueError(f"{name}: expected a 1-D array of clip indices, got shape {clips.shape}")
            values[name] = clips
        if np.intersect1d(values["teacher_clips"], values["student_clips"]).size:
            raise ValueError("student_clips: a clip cannot be classified by both the teacher and the student")
        for name, value in values.items():
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def label(self) -> int:
        """The predicted class: ``argmax(probs)``, the lowest class index on ties."""
        return int(np.argmax(self.probs))


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------
def _check_k(name: str, k: int, minimum: int = 1) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise ValueError(f"{name}: expected an integer, got {k!r}")
    if k < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {k}")
    return int(k)


def _as_scores(name: str, scores: ArrayLike, n: int | None = None) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1 or array.size < 1:
        raise ValueError(f"{name}: expected a non-empty 1-D array with one score per clip, got shape {array.shape}")
    if n is not None and array.size != n:
        raise ValueError(f"{name}: expected {n} values (one per clip), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def _as_probs(
    name: str, probs: ArrayLike, shape: tuple[int, int] | None = None, *, allow_empty: bool = False
) -> np.ndarray:
    array = np.asarray(probs, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1 or (array.shape[0] < 1 and not allow_empty):
        raise ValueError(f"{name}: expected a (clips, classes) array with at least one class, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name}: shape {array.shape} does not match teacher_probs shape {shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


def _ranked(scores: np.ndarray, k: int, *, highest: bool) -> np.ndarray:
    """The first ``min(k, N)`` clip indices by score, ties by lower index (stable sort); k may be 0."""
    order = np.argsort(-scores if highest else scores, kind="stable")
    return order[:k].astype(np.int64)


# --------------------------------------------------------------------------------------------------
# per-clip scores and index pickers (no class probabilities of the teacher needed)
# --------------------------------------------------------------------------------------------------
def predictive_entropy(probs: ArrayLike) -> np.ndarray:
    """Per-clip predictive entropy ``H_i = −Σ_c p_ic log p_ic`` (natural log, ``0 log 0 = 0``), ``(N,)``.

    Used with the *student's* probabilities for ST-Ent (ranked lowest first) and for the student's
    share of :func:`split_k` (lower entropy = the student is surer of itself).
    """
    p = _as_probs("probs", probs)
    return -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=1)


def max_prob(probs: ArrayLike) -> np.ndarray:
    """Per-clip maximum class probability ``max_c p_ic``, ``(N,)`` (SCSampler's softmax confidence)."""
    return _as_probs("probs", probs).max(axis=1)


def top_k(scores: ArrayLike, k: int) -> np.ndarray:
    """Indices of the ``min(k, N)`` highest scores, highest first; ties by lower clip index first."""
    return _ranked(_as_scores("scores", scores), _check_k("k", k), highest=True)


def bottom_k(scores: ArrayLike, k: int) -> np.ndarray:
    """Indices of the ``min(k, N)`` lowest scores, lowest first; ties by lower clip index first."""
    return _ranked(_as_scores("scores", scores), _check_k("k", k), highest=False)


def video_rng(seed: int, video_id: str) -> np.random.Generator:
    """The generator :func:`random_indices` draws one video's clips from: ``default_rng([seed,
    crc32(video_id)])``, so that a video gets the same clips in every run, on every worker, whatever the order."""
    return np.random.default_rng([seed, zlib.crc32(video_id.encode())])


def keyframe_candidates(offsets: ArrayLike, reach: int) -> np.ndarray:
    """The clips a decoder reaches cheaply: those whose first frame lies fewer than ``reach`` frames after the
    keyframe at or before it, ``(N,)`` bool; ``offsets`` holds that distance per clip (negative where the
    video's keyframes are unknown: then every clip is a candidate, as the labelling job decodes such a video
    in full). Example: offsets ``[0, 16, 32, 8, 24]``, reach 32 -> ``[True, True, False, True, True]``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1:
        raise ValueError(f"offsets: expected one offset per clip, got shape {offsets.shape}")
    reach = _check_k("reach", reach)
    return (offsets < reach) if offsets.size and offsets.min() >= 0 else np.ones(offsets.shape, dtype=bool)


def random_indices(n: int, k: int, rng: np.random.Generator | int) -> np.ndarray:
    """``min(k, n)`` distinct clip indices drawn uniformly without replacement, in increasing order.

    ``rng`` is a ``numpy.random.Generator`` (advanced by the draw) or an integer seed for
    ``numpy.random.default_rng``. With ``k >= n`` every clip is returned and no random numbers are
    drawn.
    """
    n, k = _check_k("n", n), _check_k("k", k)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(_check_k("rng", rng, 0))
    return np.sort(generator.choice(n, size=k, replace=False)).astype(np.int64)


def equidistant_indices(n: int, k: int) -> np.ndarray:
    """The clips at the centres of ``k`` equal segments of the video, in increasing order.

    Clip ``floor((2j + 1) · n / (2k))`` for ``j = 0 .. k − 1`` (exact integer arithmetic): the clip
    containing the centre of segment j when the n clips are split into k segments of n/k clips.
    The positions are distinct for k <= n (consecutive centres are n/k >= 1 apart). Examples:
    n=10, k=3 -> [1, 5, 8]; n=8, k=2 -> [2, 6]; n=5, k=1 -> [2]. ``k >= n`` returns every clip.
    """
    n, k = _check_k("n", n), _check_k("k", k)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    j = np.arange(k, dtype=np.int64)
    return (2 * j + 1) * n // (2 * k)


def split_indices(entropy: ArrayLike, confidence: ArrayLike, k: int, k_student: int) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 2c's two ranked lists merged with K_s: ``(student_clips, teacher_clips)``.

    ``student_clips``: the ``min(k_student, N)`` clips with the lowest student ``entropy`` (lowest
    first). ``teacher_clips``: among the *remaining* clips, the ``K_t = k − k_student`` with the
    highest ``confidence`` z̃ (highest first), fewer when not enough clips remain. No clip is used
    twice; ties break by lower clip index in both lists. With ``k >= N`` every clip is used: the K_s
    surest clips by the student and all others by the teacher. ``0 <= k_student <= k``.
    """
    entropy = _as_scores("entropy", entropy)
    confidence = _as_scores("confidence", confidence, entropy.size)
    k = _check_k("k", k)
    k_student = _check_k("k_student", k_student, 0)
    if k_student > k:
        raise ValueError(f"k_student: must be <= k = {k}, got {k_student}")
    student = _ranked(entropy, k_student, highest=False)
    remaining = np.setdiff1d(np.arange(entropy.size, dtype=np.int64), student)  # increasing order
    teacher = remaining[_ranked(confidence[remaining], k - k_student, highest=True)]
    return student, teacher


# --------------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------------
def aggregate(
    teacher_probs: ArrayLike,
    student_probs: ArrayLike | None = None,
    *,
    teacher_weights: ArrayLike | None = None,
) -> np.ndarray:
    """A video's class probabilities from the chosen clips' prediction vectors, ``(C,)`` float64.

    ``teacher_probs`` is ``(K_t, C)``: the teacher's predictions on its clips; ``student_probs`` is
    ``(K_s, C)`` or None: the student's predictions on its clips (Fig. 2c). Either may have zero
    rows, not both.

    * Without ``teacher_weights`` the result is the plain mean of all ``K_t + K_s`` vectors (the
      paper's average pooling; every clip counts the same whoever classified it).
    * With ``teacher_weights`` (``(K_t,)``, non-negative, positive sum; e.g. the clips' z̃) the
      teacher's group is first averaged with those weights, ``T̄ = Σ w_i p_i / Σ w_i``, and then stands
      for its K_t clips: ``(K_t · T̄ + Σ_student p_j) / (K_t + K_s)``. This is one reading of Fig. 2c's
      "averaged based on confidence estimates"; it changes how the teacher's clips are weighted among
      themselves, not the share of the two groups.
    """
    teacher = _as_probs("teacher_probs", teacher_probs, allow_empty=True)
    classes = teacher.shape[1]
    student = (
        np.empty((0, classes))
        if student_probs is None
        else _as_probs("student_probs", student_probs, allow_empty=True)
    )
    if student.shape[1] != classes:
        raise ValueError(f"student_probs: has {student.shape[1]} classes, teacher_probs has {classes}")
    total = teacher.shape[0] + student.shape[0]
    if total == 0:
        raise ValueError("teacher_probs: no clips to aggregate (teacher_probs and student_probs are both empty)")
    teacher_sum = teacher.sum(axis=0)
    if teacher_weights is not None and teacher.shape[0] > 0:
        weights = _as_scores("teacher_weights", teacher_weights, teacher.shape[0])
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("teacher_weights: must be non-negative with a positive sum")
        teacher_sum = teacher.shape[0] * (weights @ teacher) / weights.sum()
    return (teacher_sum + student.sum(axis=0)) / total


# --------------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------------
def _teacher_rule(teacher: np.ndarray, clips: np.ndarray) -> Selection:
    return Selection(probs=aggregate(teacher[clips]), teacher_clips=clips)


def dense(teacher_probs: ArrayLike) -> Selection:
    """Dense sampling: the teacher on all N clips, probabilities averaged (the paper's baseline)."""
    teacher = _as_probs("teacher_probs", teacher_probs)
    return _teacher_rule(teacher, np.arange(teacher.shape[0], dtype=np.int64))


def random_k(teacher_probs: ArrayLike, k: int, rng: np.random.Generator | int) -> Selection:
    """Random sampling: K clips uniformly without replacement (:func:`random_indices`), teacher mean."""
    teacher = _as_probs("teacher_probs", teacher_probs)
    return _teacher_rule(teacher, random_indices(teacher.shape[0], k, rng))


def equidistant_k(teacher_probs: ArrayLike, k: int) -> Selection:
    """Equidistant sampling: the centres of K equal segments (:func:`equidistant_indices`), teacher mean."""
    teacher = _as_probs("teacher_probs", teacher_probs)
    return _teacher_rule(teacher, equidistant_indices(teacher.shape[0], k))


def score_k(teacher_probs: ArrayLike, scores: ArrayLike, k: int) -> Selection:
    """The K clips with the highest per-clip score, teacher mean: Fig. 2b with z̃ (ConDi-SR, BCE-Conf,
    ST-Conf), ST-Ent with the student's negative entropy, MaxProb (SCSampler-style) with its max softmax
    probability. The scores of each strategy are :func:`raycondi.strategies.clip_scores`."""
    teacher = _as_probs("teacher_probs", teacher_probs)
    scores = _as_scores("scores", scores, teacher.shape[0])
    return _teacher_rule(teacher, _ranked(scores, _check_k("k", k), highest=True))


def split_k(
    teacher_probs: ArrayLike,
    student_probs: ArrayLike,
    confidence: ArrayLike,
    k: int,
    k_student: int,
    *,
    weighting: Literal["mean", "confidence"] = "mean",
) -> Selection:
    """Fig. 2c: K_s clips classified by the student, K_t = K − K_s by the teacher.

    Clips come from :func:`split_indices` (student: lowest student entropy; teacher: highest z̃ among
    the rest). The video's probabilities merge the student's vectors on its clips with the teacher's
    on its clips by :func:`aggregate`: ``weighting="mean"`` (default) is the plain mean over all K
    vectors; ``weighting="confidence"`` weights the teacher's vectors among themselves by their z̃
    (the teacher group still counts as K_t clips). ``k_student=0`` is :func:`confidence_k`;
    ``k_student=k`` uses the student alone.
    """
    if weighting not in ("mean", "confidence"):
        raise ValueError(f"weighting: expected 'mean' or 'confidence', got {weighting!r}")
    teacher = _as_probs("teacher_probs", teacher_probs)
    student = _as_probs("student_probs", student_probs, teacher.shape)
    scores = _as_scores("confidence", confidence, teacher.shape[0])
    student_clips, teacher_clips = split_indices(predictive_entropy(student), scores, k, k_student)
    weights = scores[teacher_clips] if weighting == "confidence" else None
    probs = aggregate(teacher[teacher_clips], student[student_clips], teacher_weights=weights)
    return Selection(probs=probs, teacher_clips=teacher_clips, student_clips=student_clips)


def oracle_k(teacher_probs: ArrayLike, label: int, k: int) -> Selection:
    """Oracle (upper bound): the K clips with the highest teacher probability for the true ``label``."""
    teacher = _as_probs("teacher_probs", teacher_probs)
    label = _check_k("label", label, 0)
    if label >= teacher.shape[1]:
        raise ValueError(f"label: must be < the number of classes {teacher.shape[1]}, got {label}")
    return _teacher_rule(teacher, _ranked(teacher[:, label], _check_k("k", k), highest=True))
