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

Without seeking (``seek=False``, or no seek cost measured: the videos could not be sought, or the shards hold
keyframe candidates, which the teacher-only strategies do not use in a labelling run), ``equidistant`` and
``random`` stream all N clips too.

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
    share of the frame grid and of the reference frames before it included), None when not measured."""

    decode_s: float
    teacher_s: float
    student_s: Mapping[str, float] = field(default_factory=dict)
    skim_decode_s: Mapping[str, float] = field(default_factory=dict)
    seek_s: float | None = None


@dataclass(frozen=True)
class ClipCounts:
    """Clips one video's labelling decodes in a stream, reaches by seeking, scores with the student, and sends
    to the teacher."""

    decoded: int
    student: int
    teacher: int
    sought: int = 0


def clip_counts(strategy: str, num_clips: int, chosen: Selection, *, seek: bool = False) -> ClipCounts:
    """What a labelling run of ``strategy`` does for a video of ``num_clips`` clips whose rule chose
    ``chosen`` (table in the module docstring; ``seek``: the run seeks where its plan does). Raises
    ``ValueError`` for the oracle or an unknown name."""
    entry = strategies.get(strategy)
    if not entry.labels:
        raise ValueError(f"strategy: no labelling run executes {strategy!r}; expected one of "
                         f"{', '.join(strategies.LABEL_STRATEGIES)}")
    teacher = len(chosen.teacher_clips)
    if strategies.decode_plan(strategy, seek=seek) == "seek":
        return ClipCounts(decoded=0, student=0, teacher=teacher, sought=teacher)
    return ClipCounts(decoded=num_clips, student=num_clips if entry.needs_student else 0, teacher=teacher)


def video_seconds(counts: ClipCounts, costs: ClipCosts, student: str | None = None) -> float:
    """Seconds a labelling run spends on a video: ``decoded·decode_s + sought·seek_s + student·student_s[student]
    + teacher·teacher_s``, and for a skimming student ``decoded·skim + teacher·(decode_s − skim)`` in place of
    the first term (module docstring). ``student`` names the sampler's method when ``counts.student > 0``."""
    if counts.sought and costs.seek_s is None:
        raise ValueError("costs: no measured seek cost for clips reached by seeking")
    seconds = counts.decoded * costs.decode_s + counts.teacher * costs.teacher_s + counts.sought * (costs.seek_s or 0)
    if counts.student:
        if student not in costs.student_s:
            raise ValueError(f"student: no measured cost for {student!r}; have {sorted(costs.student_s)}")
        seconds += counts.student * costs.student_s[student]
        if student in costs.skim_decode_s:
            seconds += (costs.skim_decode_s[student] - costs.decode_s) * (counts.decoded - counts.teacher)
    return seconds
