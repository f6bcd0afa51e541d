"""The decode plans: which frames of one video each strategy decodes before it chooses its clips.

==============  ===============================================  =============================================
plan            strategies                                        decodes
==============  ===============================================  =============================================
``full``        ``dense``; the samplers with the paper's          every frame, streamed
                every-clip candidates (``candidates="clips"``)
``seek``        ``equidistant``, ``random``                       N from the container, then only the K clips,
                                                                  each from the keyframe before it
``keyframes``   the samplers with ``candidates="keyframes"``       the clips that start at a keyframe
==============  ===============================================  =============================================

``seek`` and ``keyframes`` use :class:`~raycondi.video.seek.SeekingDecoder`. Where it cannot reproduce the
full decode (:class:`~raycondi.video.seek.NoSeek`: a variable frame rate, a missing or inconsistent index), the
video is decoded in full instead and the reason is returned, for the ``decode_fallback`` column. ``seek`` gives
exactly the clips the full decode gives; ``keyframes`` changes the candidate set, which ``prepare --candidates
keyframes`` reproduces for training and ``evaluate``. :func:`choose_clips` is what the labelling job, the
evaluation's decode timing and ``benchmarks/decode_throughput.py`` run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Literal

import numpy as np

from raycondi import selection, strategies
from raycondi.pipeline.selected import Scorer, SelectedClips, stack_clips, teacher_only
from raycondi.pipeline.spool import select_spooled
from raycondi.pipeline.topk import select_top_k
from raycondi.video.container import DecodeLimits, DecodeStats
from raycondi.video.decode import ClipSpec, iter_clips
from raycondi.video.seek import NoSeek, SeekingDecoder
from raycondi.video.storage import StorageOptions

__all__ = ["PLANS", "Candidates", "choose_clips", "select_clips"]

Candidates = Literal["clips", "keyframes"]  # raycondi.strategies.CANDIDATES
PLANS: tuple[str, ...] = ("full", "seek", "keyframes")


def select_clips(
    clips, strategy: str, k: int, k_student: int = 0, *, scorer: Scorer | None = None, batch_size: int = 16,
    rng: np.random.Generator | int = 0,
) -> SelectedClips:
    """Consume one video's clips (in index order) and choose the clips that will label it, by the rule of
    ``strategy`` in :mod:`raycondi.strategies` (the evaluation's rule): a sampler scores every clip with
    ``scorer`` in batches of ``batch_size`` and keeps the top K by its score (K_s of them for the student
    when the strategy splits); ``dense``, ``equidistant`` and ``random`` (with ``rng``) need no student.
    Raises whatever iterating ``clips`` raises (``VideoDecodeError``) and ``ValueError`` for no clips or a
    strategy ``label`` cannot run."""
    entry = strategies.get(strategy)
    if not entry.labels:
        raise ValueError(f"strategy: expected one of {', '.join(strategies.LABEL_STRATEGIES)}, got {strategy!r}")
    if k_student and not entry.splits:
        raise ValueError(f"k_student: only condi_sr splits the work with its student, not {strategy!r}")
    if not entry.needs_student:
        return select_spooled(clips, entry.rule, k, rng)
    if scorer is None:
        raise ValueError(f"scorer: strategy {strategy!r} needs the student")
    return select_top_k(clips, k, k_student, scorer=scorer, score=strategies.SCORES[entry.score].of,
                        batch_size=batch_size)


def _select_sought(video: SeekingDecoder, rule: str, k: int, rng: np.random.Generator | int) -> SelectedClips:
    """``equidistant_k`` or ``random_k`` by seeking: N from the grid, then the chosen clips only."""
    started = time.perf_counter()
    n = video.num_clips
    chosen = selection.equidistant_indices(n, k) if rule == "equidistant_k" else selection.random_indices(n, k, rng)
    clips = list(video.clips(chosen))  # chosen is increasing, as the clips come
    starts, ends = np.full(n, np.nan), np.full(n, np.nan)
    for clip in clips:
        starts[clip.index], ends[clip.index] = clip.start_s, clip.end_s
    frames = stack_clips([c.full() for c in clips], video.spec.frame_shape)
    return teacher_only(starts, ends, video.grid.end_s, chosen, frames, time.perf_counter() - started)


def choose_clips(
    uri: str, strategy: str, k: int, k_student: int = 0, *, spec: ClipSpec, candidates: Candidates = "clips",
    seek: bool = True, scorer: Scorer | None = None, batch_size: int = 16, rng: np.random.Generator | int = 0,
    skim_step: int = 1, limits: DecodeLimits | None = None, storage: StorageOptions | None = None,
    stats: DecodeStats | None = None,
) -> tuple[SelectedClips, str, str | None]:
    """Decode ``uri`` by the plan of ``strategy`` (module docstring) and choose its clips.

    Returns ``(selection, plan used, why seeking was not used or None)``; ``stats`` counts the frames decoded
    and bytes read by every pass. Raises ``VideoDecodeError`` for a video that cannot be decoded.
    """
    plan, fallback = strategies.decode_plan(strategy, candidates, seek), None
    decoder = dict(skim_step=skim_step, limits=limits, storage=storage, stats=stats)
    if plan == "seek":
        try:
            with SeekingDecoder(uri, spec, **decoder) as video:
                return _select_sought(video, strategies.get(strategy).rule, k, copy.deepcopy(rng)), plan, None
        except NoSeek as why:
            fallback = str(why)
    elif plan == "keyframes":
        try:
            with SeekingDecoder(uri, spec, keyframes=True, **decoder) as video:
                chosen = select_clips(video.keyframe_clips(), strategy, k, k_student, scorer=scorer,
                                      batch_size=batch_size)
                return replace(chosen, duration_s=video.grid.end_s), plan, None
        except NoSeek as why:
            fallback = str(why)
    clips = iter_clips(uri, spec.clip_len, spec.size, spec.stride, **decoder)
    return select_clips(clips, strategy, k, k_student, scorer=scorer, batch_size=batch_size, rng=rng), "full", fallback
