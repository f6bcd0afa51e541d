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
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

import numpy as np

from raycondi import selection, strategies
from raycondi.pipeline.selected import Scorer, SelectedClips, stack_clips, teacher_only
from raycondi.pipeline.spool import select_spooled
from raycondi.pipeline.topk import select_top_k
from raycondi.video import nvdec
from raycondi.video.container import DecodeLimits, DecodeStats
from raycondi.video.decode import Clip, ClipSpec, iter_clips
from raycondi.video.seek import NoSeek, SeekingDecoder
from raycondi.video.storage import StorageOptions

__all__ = ["PLANS", "CandidateClips", "Candidates", "choose_clips", "decode_candidates", "select_clips", "unscored"]

T = TypeVar("T")

logger = logging.getLogger("raycondi.label")

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


def _decode(uri: str, plan: str, spec: ClipSpec, decoder: dict, sought: Callable[[SeekingDecoder], T],
            streamed: Callable[[Iterable[Clip]], T], stream: Callable[..., Iterable[Clip]] = iter_clips,
            ) -> tuple[T, str, str | None]:
    """``sought(video)`` on a :class:`SeekingDecoder` for the ``seek`` and ``keyframes`` plans, else (or where the
    video cannot be sought) ``streamed(every clip)`` (``stream`` decodes them); returns the result, the plan used
    and why seeking was not."""
    fallback = None
    if plan in ("seek", "keyframes"):
        try:
            with SeekingDecoder(uri, spec, **decoder) as video:
                return sought(video), plan, None
        except NoSeek as why:
            plan, fallback = "full", str(why)
    return streamed(stream(uri, spec.clip_len, spec.size, spec.stride, **decoder)), plan, fallback


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

    def sought(video: SeekingDecoder) -> SelectedClips:
        if plan == "seek":
            return _select_sought(video, strategies.get(strategy).rule, k, copy.deepcopy(rng))
        chosen = select_clips(video.candidate_clips(reach), strategy, k, k_student, scorer=scorer,
                              batch_size=batch_size)
        return replace(chosen, num_clips=video.num_clips, duration_s=video.grid.end_s)

    def streamed(clips: Iterable[Clip]) -> SelectedClips:
        return select_clips(clips, strategy, k, k_student, scorer=scorer, batch_size=batch_size, rng=rng)

    plan = strategies.decode_plan(strategy, candidates, seek)
    decoder = dict(skim_step=skim_step, limits=limits, storage=storage, stats=stats)
    chosen, used, fallback = _decode(uri, plan, spec, decoder, sought, streamed)
    return replace(chosen, decode_s=time.perf_counter() - started - chosen.student_s), used, fallback


@dataclass(frozen=True, eq=False)
class CandidateClips:
    """A sampler's candidate clips of one video, decoded whole for a student that runs elsewhere (the GPU stage,
    :mod:`raycondi.pipeline.gpu`): grid indices ``clips`` (increasing) with their spans and uint8 ``frames``
    ``(n, T, H, W, 3)``, the video's ``num_clips`` N and ``duration_s``, the ``decode_s`` it took and the
    ``decoder`` that decoded it (``pyav`` or ``nvdec``)."""

    num_clips: int
    clips: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    frames: np.ndarray
    duration_s: float
    decode_s: float
    decoder: str = "pyav"


def decode_candidates(
    uri: str, *, spec: ClipSpec, candidates: Candidates = "clips", reach: int = 1, decoder: str = "pyav",
    limits: DecodeLimits | None = None, storage: StorageOptions | None = None, stats: DecodeStats | None = None,
) -> tuple[CandidateClips, str, str | None]:
    """Decode the clips a sampler scores (every clip, or the keyframe candidates), by the plan
    :func:`choose_clips` uses for them, and return them with the plan used and why seeking was not used.
    The same clips and pixels the streaming heap would score. With ``decoder="nvdec"`` a full decode runs on the
    GPU (:mod:`raycondi.video.nvdec`; the keyframes plan seeks with PyAV), or with PyAV where NVDEC cannot
    decode the video, which is logged once per reason and process. Raises ``VideoDecodeError`` for a video that
    cannot be decoded and ``ValueError`` for a video without clips."""
    started = time.perf_counter()
    used_decoder = "pyav"

    def gathered(clips: Iterable[Clip], num_clips: int | None = None, duration_s: float | None = None
                 ) -> CandidateClips:
        clips = list(clips)
        if not clips:
            raise ValueError(f"{uri}: the video has no clips")
        starts, ends = np.array([c.start_s for c in clips]), np.array([c.end_s for c in clips])
        return CandidateClips(len(clips) if num_clips is None else num_clips,
                              np.array([c.index for c in clips], np.int64), starts, ends,
                              stack_clips([c.full() for c in clips], spec.frame_shape),
                              float(ends[-1] - starts[0]) if duration_s is None else duration_s, 0.0)

    def sought(video: SeekingDecoder) -> CandidateClips:
        return gathered(video.candidate_clips(reach), video.num_clips, video.grid.end_s)

    def stream(uri: str, clip_len: int, size, stride: int, **options) -> Iterable[Clip]:
        nonlocal used_decoder
        if decoder == "nvdec":
            try:
                clips = nvdec.iter_clips(uri, spec, **options)
                used_decoder = "nvdec"
                return clips
            except nvdec.NoNvdec as why:
                _once(f"NVDEC not used, decoding with PyAV: {why}")
        return iter_clips(uri, clip_len, size, stride, **options)

    plan = "keyframes" if candidates == "keyframes" else "full"
    options = dict(limits=limits, storage=storage, stats=stats)
    found, used, fallback = _decode(uri, plan, spec, options, sought, gathered, stream)
    return replace(found, decode_s=time.perf_counter() - started, decoder=used_decoder), used, fallback


@functools.cache
def _once(message: str) -> None:
    logger.warning(message)
