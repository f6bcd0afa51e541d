"""The timing model: what a labelling run of each strategy decodes and runs, times measured per-clip costs.

A labelling run (:mod:`raycondi.pipeline.label`) of one video decodes by its strategy's plan
(:func:`raycondi.strategies.decode_plan`, :mod:`raycondi.pipeline.plans`): ``equidistant`` and ``random`` seek
to their K clips (each decoded from the keyframe before it), every other strategy streams all N clips of the
shards' candidate set (every clip, or the keyframe candidates); then it runs the student on every clip when the
strategy has a sampler, and the teacher on the K_t clips the rule chose. :func:`clip_counts` counts exactly
that from a :class:`~raycondi.selection.Selection`; :func:`video_seconds` prices the counts with measured
per-clip costs (:class:`ClipCosts`):

================================  ========  ==========  ========  ==========================
strategy                          decoded   sought      student   teacher
================================  ========  ==========  ========  ==========================
dense                             N         0           0         N
equidistant, random               0         min(K, N)   0         min(K, N)
max_prob, st_ent, st_conf,        N         0           N         min(K, N)
bce_conf, condi_sr
condi_sr with K_s (Fig. 2c)       N         0           N         K_t = min(K − K_s, N − min(K_s, N))
================================  ========  ==========  ========  ==========================

Without seeking (``seek=False``, or no seek cost measured: the videos could not be sought), ``equidistant`` and
``random`` stream all N clips too. With keyframe candidates (``label --candidates keyframes``) a sampler
decodes and scores only its C candidates, each reached by seeking: sought C, student C, at the keyframe plan's
measured cost per candidate.

The student's K_s clips cost nothing extra: their probabilities come from the pass that scored every clip.
The oracle needs the true label, so no labelling run can execute it and it has no cost.

A sampler whose student skims (``frame_step`` > 1, :class:`~raycondi.video.decode.SkimClip`) decodes its N
clips at the skim cost and completes its teacher clips at the rest of a full decode each; the other clips
that entered its top-K heap on the way and were completed too are not counted (about K·ln(N/K) more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from raycondi import strategies
from raycondi.selection import Selection

__all__ = ["ClipCosts", "ClipCounts", "clip_counts", "video_seconds"]


@dataclass(frozen=True)
class ClipCosts:
    """Measured seconds per clip: decoding one clip in a stream, the teacher on one clip, and each student on
    one clip (keyed by distillation method); ``skim_decode_s`` the decode of one clip for the methods whose
    student skims (converting only its frames); ``seek_s`` reaching and decoding one clip by seeking (its
    share of the frame grid and of the reference frames before it included), ``keyframe_s`` decoding one
    keyframe candidate; None when not measured."""

    decode_s: float
    teacher_s: float
    student_s: Mapping[str, float] = field(default_factory=dict)
    skim_decode_s: Mapping[str, float] = field(default_factory=dict)
    seek_s: float | None = None
    keyframe_s: float | None = None


@dataclass(frozen=True)
class ClipCounts:
    """Clips one video's labelling decodes in a stream, scores with the student, sends to the teacher, and
    reaches by seeking (by the ``plan``: ``seek``, Equidistant's and Random's clips; ``keyframes``, the keyframe
    candidates)."""

    decoded: int
    student: int
    teacher: int
    sought: int = 0
    plan: str = "full"


def clip_counts(strategy: str, num_clips: int, chosen: Selection, *, seek: bool = False,
                candidates: int | None = None) -> ClipCounts:
    """What a labelling run of ``strategy`` does for a video of ``num_clips`` clips whose rule chose
    ``chosen`` (table in the module docstring; ``seek``: the run seeks where its plan does; ``candidates``:
    a sampler ranks only that many keyframe candidates). Raises ``ValueError`` for the oracle or an unknown
    name."""
    entry = strategies.get(strategy)
    if not entry.labels:
        raise ValueError(f"strategy: no labelling run executes {strategy!r}; expected one of "
                         f"{', '.join(strategies.LABEL_STRATEGIES)}")
    teacher = len(chosen.teacher_clips)
    plan = strategies.decode_plan(strategy, "keyframes" if candidates is not None else "clips", seek)
    if plan == "seek":
        return ClipCounts(decoded=0, student=0, teacher=teacher, sought=teacher, plan=plan)
    if plan == "keyframes":
        return ClipCounts(decoded=0, student=candidates, teacher=teacher, sought=candidates, plan=plan)
    return ClipCounts(decoded=num_clips, student=num_clips if entry.needs_student else 0, teacher=teacher)


def video_seconds(counts: ClipCounts, costs: ClipCosts, student: str | None = None) -> float:
    """Seconds a labelling run spends on a video: ``decoded·decode_s + sought·seek_s + student·student_s[student]
    + teacher·teacher_s``, and for a skimming student ``decoded·skim + teacher·(decode_s − skim)`` in place of
    the first term (module docstring). ``student`` names the sampler's method when ``counts.student > 0``."""
    sought_s = costs.keyframe_s if counts.plan == "keyframes" else costs.seek_s
    if counts.sought and sought_s is None:
        raise ValueError(f"costs: no measured cost for clips reached by seeking ({counts.plan} plan)")
    seconds = counts.decoded * costs.decode_s + counts.teacher * costs.teacher_s + counts.sought * (sought_s or 0)
    if counts.student:
        if student not in costs.student_s:
            raise ValueError(f"student: no measured cost for {student!r}; have {sorted(costs.student_s)}")
        seconds += counts.student * costs.student_s[student]
        if student in costs.skim_decode_s:
            seconds += (costs.skim_decode_s[student] - costs.decode_s) * (counts.decoded - counts.teacher)
    return seconds
