"""Validation metrics of teacher training and distillation, in plain numpy (no torch, no Ray).

* :func:`auroc` -- how well a per-clip score ranks the clips the teacher gets right (z = 1, Eq. 1) above
  the others: the paper's measure of a sampler's confidence;
* :func:`clip_accuracy` -- argmax of per-clip logits or probabilities against the labels;
* :func:`video_accuracy` -- a video's label from its clips' teacher probabilities, either averaged over
  every clip (dense) or over the top-K clips by a score (Fig. 2b). The selection and the averaging are
  :mod:`raycondi.selection`'s rules (``dense``, ``score_k``); this module only groups clips by video.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from raycondi.selection import dense, score_k

__all__ = ["auroc", "clip_accuracy", "video_accuracy"]


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (True/1 = positive).

    Computed as the Mann-Whitney U statistic: the probability that a random positive scores higher than a
    random negative, a tie counting one half (tied scores get their average rank). Returns NaN when
    ``labels`` has no positive or no negative: the AUROC is undefined there.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"scores and labels: expected 1-D arrays of one length, got {scores.shape}, {labels.shape}")
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # average rank (1-based) of each run of tied scores
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = starts + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def clip_accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    """Share of clips whose argmax over ``logits`` (``(N, C)``, logits or probabilities) is the label."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits and labels: expected (N, C) and (N,), got {logits.shape} and {labels.shape}")
    return float((logits.argmax(axis=1) == labels).mean()) if labels.size else float("nan")


def video_accuracy(
    video_ids: ArrayLike,
    clip_indices: ArrayLike,
    labels: ArrayLike,
    teacher_probs: ArrayLike,
    scores: ArrayLike | None = None,
    k: int | None = None,
) -> float:
    """Share of videos whose predicted class is their label.

    Clips (one row each: ``video_ids``, ``clip_indices``, ``labels`` per clip, ``teacher_probs`` ``(N, C)``)
    may come in any order; they are grouped by video and put in clip order. Without ``scores`` a video's
    prediction is :func:`raycondi.selection.dense` (the mean of all its clips' probabilities); with
    ``scores`` (``(N,)``, higher = send to the teacher) and ``k`` it is
    :func:`raycondi.selection.score_k`: the mean over the K highest-scoring clips (all clips when
    K >= N; ties go to the lower clip index).
    """
    video_ids = np.asarray(video_ids)
    clip_indices = np.asarray(clip_indices)
    labels = np.asarray(labels)
    probs = np.asarray(teacher_probs, dtype=np.float64)
    n = video_ids.shape[0]
    if clip_indices.shape != (n,) or labels.shape != (n,) or probs.ndim != 2 or probs.shape[0] != n:
        raise ValueError("video_ids, clip_indices, labels, teacher_probs: expected N, N, N and (N, C) rows")
    if (scores is None) != (k is None):
        raise ValueError("scores and k: give both (top-K selection) or neither (dense)")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"scores: expected shape ({n},), got {scores.shape}")
    if n == 0:
        return float("nan")
    videos, inverse = np.unique(video_ids, return_inverse=True)
    order = np.lexsort((clip_indices, inverse))
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    correct = 0
    for rows in np.split(order, bounds):
        selection = dense(probs[rows]) if scores is None else score_k(probs[rows], scores[rows], k)
        correct += selection.label == labels[rows[0]]
    return float(correct / len(videos))
