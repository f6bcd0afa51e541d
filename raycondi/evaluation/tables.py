"""The paper's tables as pure numpy: per-clip outputs in, rows out (Sec. IV, Tables III, IV, V).

Input is one :class:`VideoClips` per video -- the teacher's and every student's per-clip outputs in clip
order -- and every number comes from the :mod:`raycondi.selection` rule that :mod:`raycondi.strategies`
assigns to each strategy, with the per-clip score it names: the same table and the same rules the labelling
job uses, so ``raycondi label --strategy S`` picks the clips the row of S counted. Samplers rank clips by their
own student's score (``st_ent``: its entropy; ``bce_conf``, ``st_conf``, ``condi_sr``: its z̃); MaxProb by the
class head of ``max_prob_student`` (the condi_sr student when there is one, else the first student given).
A sampler exists only when its student was evaluated. Random's clips for a video are drawn from
:func:`raycondi.selection.video_rng` (mean over seeds, paper: 3 runs), the labelling job's generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from raycondi import selection, strategies
from raycondi.evaluation.timing import ClipCosts, clip_counts, video_seconds
from raycondi.train.metrics import auroc

__all__ = [
    "AmbiguityRow",
    "Result",
    "VideoClips",
    "ambiguity_rows",
    "clean_clips",
    "evaluate_strategy",
    "group_videos",
    "ks_sweep",
    "results",
    "select",
    "strategies_for",
]


@dataclass(frozen=True, eq=False)
class VideoClips:
    """One video's per-clip outputs, clips in index order.

    ``teacher_probs`` ``(N, C)``; ``student_probs[method]`` ``(N, C)`` and ``confidence[method]`` ``(N,)``
    (z̃) per evaluated student; ``clean`` ``(N,)`` the ground-truth clean clips, or None when unknown;
    ``candidates`` ``(N,)`` the clips a sampler may rank (keyframe candidates), or None for every clip.
    """

    video_id: str
    label: int
    teacher_probs: np.ndarray
    student_probs: Mapping[str, np.ndarray] = field(default_factory=dict)
    confidence: Mapping[str, np.ndarray] = field(default_factory=dict)
    clean: np.ndarray | None = None
    candidates: np.ndarray | None = None

    @property
    def num_clips(self) -> int:
        return int(self.teacher_probs.shape[0])


@dataclass(frozen=True)
class Result:
    """One strategy at one K (``k=None``: dense) and K_s over ``videos`` videos: its video accuracy and
    the labelling cost per video (mean clips decoded in a stream / scored by the student / run by the teacher /
    reached by seeking, and the timing model's seconds; zero counts and None seconds for the oracle, which no
    run can execute)."""

    strategy: str
    k: int | None
    k_student: int
    accuracy: float
    videos: int
    decoded_clips: float = 0.0
    student_clips: float = 0.0
    teacher_clips: float = 0.0
    seconds: float | None = None
    sought_clips: float = 0.0


def strategies_for(methods: Iterable[str]) -> tuple[str, ...]:
    """The strategies that can be evaluated with students of ``methods``, in Table III's order."""
    methods = set(methods)

    def available(strategy: strategies.Strategy) -> bool:
        if strategy.method:
            return strategy.name in methods
        return bool(methods) if strategy.needs_student else True

    return tuple(s.name for s in strategies.STRATEGIES if available(s))


def select(
    video: VideoClips, strategy: str, k: int | None, *, k_student: int = 0, seed: int = 0,
    max_prob_student: str | None = None,
) -> selection.Selection:
    """The :mod:`raycondi.selection` rule of ``strategy`` (:mod:`raycondi.strategies`) applied to ``video``.
    ``k_student`` is only for a strategy that splits (condi_sr, :func:`raycondi.selection.split_k`)."""
    entry = strategies.get(strategy)
    teacher = video.teacher_probs
    if k_student and not entry.splits:
        raise ValueError(f"k_student: only condi_sr splits the work with its student, not {strategy!r}")
    if entry.rule == "dense":
        return selection.dense(teacher)
    if k is None:
        raise ValueError(f"k: {strategy!r} needs K")
    if entry.rule == "oracle_k":
        return selection.oracle_k(teacher, video.label, k)
    if entry.rule == "random_k":
        return selection.random_k(teacher, k, selection.video_rng(seed, video.video_id))
    if entry.rule == "equidistant_k":
        return selection.equidistant_k(teacher, k)
    student = max_prob_student if entry.name == "max_prob" else entry.name
    probs, confidence = video.student_probs[student], video.confidence.get(student)
    pick = slice(None) if video.candidates is None else np.flatnonzero(video.candidates)  # the clips it may rank
    teacher, probs = teacher[pick], probs[pick]
    confidence = None if confidence is None else confidence[pick]
    if k_student:
        chosen = selection.split_k(teacher, probs, confidence, k, k_student)
    else:
        chosen = selection.score_k(teacher, strategies.clip_scores(entry.name, probs, confidence), k)
    if video.candidates is None:
        return chosen
    return selection.Selection(chosen.probs, pick[chosen.teacher_clips], pick[chosen.student_clips])


def evaluate_strategy(
    videos: Sequence[VideoClips], strategy: str, k: int | None, *, k_student: int = 0,
    costs: ClipCosts | None = None, seeds: Sequence[int] = (0, 1, 2), max_prob_student: str | None = None,
) -> Result:
    """Video accuracy and labelling cost of one strategy at one K; ``random`` is the mean over ``seeds``. The
    teacher-only strategies that seek are priced as seeking when ``costs`` has a seek cost; samplers on videos
    with keyframe candidates as decoding those."""
    if not videos:
        raise ValueError("videos: nothing to evaluate (no videos with clip outputs)")
    seek = costs is not None and costs.seek_s is not None
    runs = []
    for seed in seeds if strategy == "random" else seeds[:1]:
        correct, counts, seconds = 0, np.zeros(4), 0.0
        for video in videos:
            chosen = select(video, strategy, k, k_student=k_student, seed=seed, max_prob_student=max_prob_student)
            correct += chosen.label == video.label
            if strategies.get(strategy).labels:
                candidates = None if video.candidates is None else int(video.candidates.sum())
                count = clip_counts(strategy, video.num_clips, chosen, seek=seek, candidates=candidates)
                counts += (count.decoded, count.student, count.teacher, count.sought)
                if costs is not None:
                    sampler = max_prob_student if strategy == "max_prob" else strategy
                    seconds += video_seconds(count, costs, sampler)
        runs.append((correct, *counts, seconds))
    correct, decoded, student, teacher, sought, seconds = np.mean(runs, axis=0) / len(videos)
    timed = costs is not None and strategies.get(strategy).labels
    return Result(strategy, k, k_student, float(correct), len(videos), float(decoded), float(student),
                  float(teacher), float(seconds) if timed else None, float(sought))


def results(
    videos: Sequence[VideoClips], ks: Sequence[int], strategies: Sequence[str], *, costs: ClipCosts | None = None,
    seeds: Sequence[int] = (0, 1, 2), max_prob_student: str | None = None,
) -> list[Result]:
    """Every strategy at every K (dense once, ``k=None``), in ``strategies`` order then K."""
    rows = []
    for strategy in strategies:
        for k in [None] if strategy == "dense" else ks:
            rows.append(evaluate_strategy(videos, strategy, k, costs=costs, seeds=seeds,
                                          max_prob_student=max_prob_student))
    return rows


def ks_sweep(videos: Sequence[VideoClips], ks: Sequence[int], *, costs: ClipCosts | None = None) -> list[Result]:
    """Table V: condi_sr with K_s = 0..K student clips (Fig. 2c, ``split_k``) for every K in ``ks``."""
    return [evaluate_strategy(videos, "condi_sr", k, k_student=s, costs=costs) for k in ks for s in range(k + 1)]


@dataclass(frozen=True)
class AmbiguityRow:
    """How well a sampler's per-clip score ranks clips: AUROC for "the teacher is right" (z, Eq. 1), for the
    ground-truth clean clips, and for z among the ground-truth ambiguous clips alone (both NaN when unknown),
    over ``clips`` clips. The last tells whether the score finds the ambiguous clips the teacher still reads,
    beyond telling clean clips from ambiguous ones."""

    sampler: str
    score: str
    teacher_correct_auroc: float
    clean_auroc: float
    ambiguous_teacher_correct_auroc: float
    clips: int
    teacher_correct_share: float
    clean_share: float


def ambiguity_rows(videos: Sequence[VideoClips], *, max_prob_student: str | None = None,
                   seed: int = 0) -> list[AmbiguityRow]:
    """The AUROC of each sampler's score (higher = send to the teacher): z̃ for condi_sr, bce_conf and
    st_conf, the negative predictive entropy for st_ent, the max softmax probability for max_prob, and
    uniform noise (seeded) for random. The clean-clip AUROC uses the clips whose ground truth is known, the
    ambiguous-clip AUROC those known to be ambiguous."""
    z = np.concatenate([v.teacher_probs.argmax(axis=1) == v.label for v in videos])
    clean = np.concatenate([np.full(v.num_clips, np.nan) if v.clean is None else v.clean.astype(float)
                            for v in videos])
    known = ~np.isnan(clean)
    ambiguous = known & (clean == 0)
    scores: dict[str, tuple[str, np.ndarray]] = {}
    samplers = [s for s in strategies.STRATEGIES if s.needs_student]
    for sampler in samplers:
        student = max_prob_student if sampler.name == "max_prob" else sampler.name
        if student not in videos[0].student_probs:
            continue
        score = np.concatenate([strategies.clip_scores(sampler.name, v.student_probs[student],
                                                       v.confidence.get(student)) for v in videos])
        scores[sampler.name] = (strategies.SCORES[sampler.score].label, score)
    scores["random"] = ("uniform", np.random.default_rng(seed).random(z.size))
    return [
        AmbiguityRow(name, label, auroc(score, z), auroc(score[known], clean[known] > 0.5),
                     auroc(score[ambiguous], z[ambiguous]), int(z.size), float(z.mean()),
                     float(clean[known].mean()) if known.any() else float("nan"))
        for name, (label, score) in scores.items()
    ]


def clean_clips(starts: np.ndarray, ends: np.ndarray, truth_starts: np.ndarray, truth_ends: np.ndarray,
                truth_ambiguous: np.ndarray) -> np.ndarray:
    """Which clips ``[start, end)`` are clean: they overlap at least one ground-truth segment and none of the
    segments they overlap is ambiguous. Matching by time, not index, lets the shards' clip length differ from
    the one the synthetic benchmark was generated with. ``(N,)`` bool."""
    eps = 1e-6
    overlap = (truth_starts[None, :] < ends[:, None] - eps) & (truth_ends[None, :] > starts[:, None] + eps)
    return overlap.any(axis=1) & ~(overlap & truth_ambiguous[None, :].astype(bool)).any(axis=1)


def group_videos(table: pa.Table, methods: Sequence[str], truth: pa.Table | None = None, *,
                 reach: int | None = None) -> list[VideoClips]:
    """The per-clip table (``video_id, clip_index, label_index, start_s, end_s, teacher_probs`` and
    ``{method}_probs``/``{method}_confidence`` per student) as one :class:`VideoClips` per video, sorted by
    video id. ``truth`` (``ground_truth.parquet``: ``video_id, start_s, end_s, ambiguous``) fills ``clean``;
    ``reach`` (frames) fills ``candidates`` from the table's ``keyframe_offset`` column
    (:func:`raycondi.selection.keyframe_candidates`, the labelling job's rule)."""
    table = table.sort_by([("video_id", "ascending"), ("clip_index", "ascending")])
    ids = np.asarray(table["video_id"].to_pylist(), dtype=object)
    columns = {name: _matrix(table[name]) for name in ["teacher_probs"] + [f"{m}_probs" for m in methods]}
    columns.update({f"{m}_confidence": table[f"{m}_confidence"].to_numpy().astype(np.float64) for m in methods})
    labels = table["label_index"].to_numpy()
    starts, ends = table["start_s"].to_numpy(), table["end_s"].to_numpy()
    offsets = table["keyframe_offset"].to_numpy() if reach is not None else None
    segments = {}
    if truth is not None:
        truth = truth.sort_by("video_id")
        truth_ids = np.asarray(truth["video_id"].to_pylist(), dtype=object)
        for video_id in np.unique(truth_ids):
            rows = truth_ids == video_id
            segments[video_id] = tuple(truth[c].to_numpy()[rows] for c in ("start_s", "end_s", "ambiguous"))
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    videos = []
    for rows in np.split(np.arange(len(ids)), bounds):
        video_id = str(ids[rows[0]])
        videos.append(VideoClips(
            video_id=video_id,
            label=int(labels[rows[0]]),
            teacher_probs=columns["teacher_probs"][rows],
            student_probs={m: columns[f"{m}_probs"][rows] for m in methods},
            confidence={m: columns[f"{m}_confidence"][rows] for m in methods},
            clean=clean_clips(starts[rows], ends[rows], *segments[video_id]) if video_id in segments else None,
            candidates=None if offsets is None else selection.keyframe_candidates(offsets[rows], reach),
        ))
    return videos


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    return array.flatten().to_numpy().astype(np.float64).reshape(len(array), array.type.list_size)
