"""The decode plans: which frames of one video each strategy decodes before it chooses its clips.

==============  ===============================================  =============================================
plan            strategies                                        decodes
==============  ===============================================  =============================================
``full``        ``dense``; the samplers with the paper's          every frame, streamed
                every-clip candidates (``candidates="clips"``)
``seek``        ``equidistant``, ``random``                       N from the container, then only the K clips,
                                                                  each from the keyframe before it
``keyframes``   the samplers with ``candidates="keyframes"``       the grid clips that start within ``reach``
                                                                  frames after a keyframe, decoded on from it
==============  ===============================================  =============================================

``seek`` and ``keyframes`` use :class:`~raycondi.video.seek.SeekingDecoder`. Where it cannot reproduce the
full decode (:class:`~raycondi.video.seek.NoSeek`: a variable frame rate, a missing or inconsistent index), the
video is decoded in full instead and the reason is returned, for the ``decode_fallback`` column (for a sampler,
every clip is then a candidate). Both give exactly the clips the full decode gives; ``keyframes`` scores a subset
of them, :func:`raycondi.selection.keyframe_candidates` of the clips' keyframe offsets, which ``prepare`` stores
in the shards so that ``evaluate --candidates keyframes`` scores the same subset. :func:`choose_clips` is what
the labelling job and ``benchmarks/decode_throughput.py`` run.
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

__all__ = ["PLANS", "Candidates", "choose_clips", "select_clips", "unscored"]

Candidates = Literal["clips", "keyframes"]  # raycondi.strategies.CANDIDATES
PLANS: tuple[str, ...] = ("full", "seek", "keyframes")


def unscored(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in student that costs nothing (the same scores for every clip; ties keep the earliest), to time
    a sampler's decode alone."""
    return np.full((len(frames), 2), 0.5, np.float32), np.zeros(len(frames), np.float32)


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
    n = video.num_clips
    chosen = selection.equidistant_indices(n, k) if rule == "equidistant_k" else selection.random_indices(n, k, rng)
    clips = list(video.clips(chosen))  # chosen is increasing, as the clips come
    return teacher_only(n, chosen, np.array([c.start_s for c in clips]), np.array([c.end_s for c in clips]),
                        video.grid.end_s, chosen, stack_clips([c.full() for c in clips], video.spec.frame_shape))


def choose_clips(
    uri: str, strategy: str, k: int, k_student: int = 0, *, spec: ClipSpec, candidates: Candidates = "clips",
    reach: int = 1, seek: bool = True, scorer: Scorer | None = None, batch_size: int = 16,
    rng: np.random.Generator | int = 0, skim_step: int = 1, limits: DecodeLimits | None = None,
    storage: StorageOptions | None = None, stats: DecodeStats | None = None,
) -> tuple[SelectedClips, str, str | None]:
    """Decode ``uri`` by the plan of ``strategy`` (module docstring) and choose its clips; ``reach``: the
    keyframe candidates' reach in frames.

    Returns ``(selection, plan used, why seeking was not used or None)``; the selection's ``decode_s`` is all
    the time spent but the student's (every pass, opening and probing the file included), and ``stats`` counts
    the frames decoded and bytes read by every pass. Raises ``VideoDecodeError`` for a video that cannot be
    decoded.
    """
    started = time.perf_counter()
    plan, fallback = strategies.decode_plan(strategy, candidates, seek), None
    decoder = dict(skim_step=skim_step, limits=limits, storage=storage, stats=stats)
    chosen = None
    if plan in ("seek", "keyframes"):
        try:
            with SeekingDecoder(uri, spec, **decoder) as video:
                if plan == "seek":
                    chosen = _select_sought(video, strategies.get(strategy).rule, k, copy.deepcopy(rng))
                else:
                    chosen = select_clips(video.candidate_clips(reach), strategy, k, k_student, scorer=scorer,
                                          batch_size=batch_size)
                    chosen = replace(chosen, num_clips=video.num_clips, duration_s=video.grid.end_s)
        except NoSeek as why:
            plan, fallback = "full", str(why)
    if chosen is None:
        clips = iter_clips(uri, spec.clip_len, spec.size, spec.stride, **decoder)
        chosen = select_clips(clips, strategy, k, k_student, scorer=scorer, batch_size=batch_size, rng=rng)
    return replace(chosen, decode_s=time.perf_counter() - started - chosen.student_s), plan, fallback
