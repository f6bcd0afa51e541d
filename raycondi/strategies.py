"""The one table of clip-selection strategies and distillation methods: every name is spelled here once.

Each :class:`Strategy` row says what the strategy is called on the command line and in files (``name``), its
row title in the paper's tables (``title``), the ``raycondi.selection`` rule it applies (``rule``), and, for the
samplers, the per-clip score they rank clips by (``score``: the K highest go to the teacher). A strategy whose
``method`` is true is also a distillation method: ``raycondi distill --method NAME`` trains its student, and its
loss lives in :mod:`raycondi.train.distill`. The CLI's choices, ``distill``, ``evaluate``, the quickstart and
``label`` all read this table, and :func:`strategies_markdown` renders the README's table from it.

Torch-free and Ray-free on purpose: the CLI parses its arguments, and the tables are computed, without either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from raycondi import selection

__all__ = [
    "ALIASES",
    "CANDIDATES",
    "KEYFRAME_CLIPS",
    "LABEL_STRATEGIES",
    "METHODS",
    "SCORES",
    "STRATEGIES",
    "Score",
    "Strategy",
    "clip_scores",
    "decode_plan",
    "get",
    "names",
    "strategies_markdown",
]

Rule = Literal["oracle_k", "random_k", "equidistant_k", "score_k", "dense"]


@dataclass(frozen=True)
class Score:
    """A per-clip score computed from a student's outputs; higher means "send this clip to the teacher".

    ``of(probs, confidence)`` takes the student's class probabilities ``(N, C)`` and its z̃ ``(N,)``.
    """

    label: str
    of: Callable[[np.ndarray, np.ndarray], np.ndarray]
    uses: str  # "confidence head" or "class head": which output the score reads


SCORES: dict[str, Score] = {
    "confidence": Score("z̃", lambda probs, confidence: np.asarray(confidence, np.float64), "confidence head"),
    "negative_entropy": Score("−entropy", lambda probs, confidence: -selection.predictive_entropy(probs),
                              "class head"),
    "max_prob": Score("max prob", lambda probs, confidence: selection.max_prob(probs), "class head"),
}


@dataclass(frozen=True)
class Strategy:
    """One clip-selection strategy (a row of Table III).

    Attributes:
        name: the name on the command line, in ``accuracy.csv`` and in the labels' ``strategy`` column.
        title: the row title in the paper's tables.
        rule: the :mod:`raycondi.selection` rule it applies: ``score_k`` ranks clips by ``score``; ``oracle_k``,
            ``random_k``, ``equidistant_k`` and ``dense`` need no student.
        score: a key of :data:`SCORES` for ``score_k`` strategies, else None.
        method: a distillation method: ``distill --method NAME`` trains a student for it, and ``evaluate``
            takes that student as ``--student NAME=CHECKPOINT``.
        splits: may hand K_s of its K clips to the student alone (Fig. 2c, :func:`raycondi.selection.split_k`).
        table_iv: a column of Table IV (time per video), as in the paper.
        paper: what the rule does, for the README.
    """

    name: str
    title: str
    rule: Rule
    score: str | None = None
    method: bool = False
    splits: bool = False
    table_iv: bool = False
    paper: str = ""

    @property
    def needs_student(self) -> bool:
        return self.rule == "score_k"

    @property
    def labels(self) -> bool:
        """``raycondi label`` can run it: everything but the oracle, which needs the true label."""
        return self.rule != "oracle_k"


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("oracle", "Oracle", "oracle_k", paper="upper bound: top-K clips by the teacher's probability of the "
                                                 "true label"),
    Strategy("random", "Random (mean)", "random_k", paper="K clips uniformly without replacement"),
    Strategy("equidistant", "Equidistant", "equidistant_k", table_iv=True, paper="the centres of K equal segments"),
    Strategy("max_prob", "MaxProb", "score_k", "max_prob", paper="SCSampler-style: the student's max softmax "
                                                               "probability"),
    Strategy("bce_conf", "BCE-Conf", "score_k", "confidence", method=True, paper="z̃ trained by plain BCE on z"),
    Strategy("st_ent", "ST-Ent", "score_k", "negative_entropy", method=True, table_iv=True,
             paper="a KD student's predictive entropy (lowest first)"),
    Strategy("st_conf", "ST-Conf", "score_k", "confidence", method=True, paper="DeVries–Taylor confidence"),
    Strategy("condi_sr", "ConDi-SR", "score_k", "confidence", method=True, splits=True, table_iv=True,
             paper="confidence distillation, Fig. 2b (Fig. 2c with K_s)"),
    Strategy("dense", "Dense", "dense", paper="the teacher on every clip, averaged"),
)
ALIASES: dict[str, str] = {"condi": "condi_sr"}  # the name `raycondi label` used before the table
# The clips a sampler scores: every clip of the grid (the paper's), or those a seeking decode reaches cheaply,
# starting fewer than KEYFRAME_CLIPS clip spans after a keyframe (raycondi.selection.keyframe_candidates).
CANDIDATES: tuple[str, ...] = ("clips", "keyframes")
KEYFRAME_CLIPS = 4  # keyframe candidates start fewer than this many clip spans after a keyframe

_BY_NAME = {s.name: s for s in STRATEGIES}
METHODS: tuple[str, ...] = tuple(s.name for s in STRATEGIES if s.method)
LABEL_STRATEGIES: tuple[str, ...] = tuple(s.name for s in STRATEGIES if s.labels)


def get(name: str) -> Strategy:
    """The strategy called ``name`` (or one of :data:`ALIASES`); ``ValueError`` listing the known names."""
    strategy = _BY_NAME.get(ALIASES.get(name, name))
    if strategy is None:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(_BY_NAME)}")
    return strategy


def names(*, method: bool | None = None, labels: bool | None = None) -> tuple[str, ...]:
    """Strategy names in Table III's order, filtered by being a distillation method and/or labelling."""
    return tuple(s.name for s in STRATEGIES
                 if (method is None or s.method == method) and (labels is None or s.labels == labels))


def clip_scores(name: str, probs: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """The per-clip score the sampler ``name`` ranks clips by, from a student's class probabilities ``(N, C)``
    and z̃ ``(N,)``: ``(N,)`` float64, higher first. ``ValueError`` for a strategy that does not score clips."""
    strategy = get(name)
    if strategy.score is None:
        raise ValueError(f"strategy {strategy.name!r} does not rank clips by a student's score")
    return SCORES[strategy.score].of(probs, confidence)


def decode_plan(name: str, candidates: str = "clips", seek: bool = True) -> str:
    """What the labelling job decodes for ``name`` (:mod:`raycondi.pipeline.plans`): ``seek`` (only the chosen
    clips, for the rules that know them from N), ``keyframes`` (the keyframe candidates a sampler scores with
    ``candidates="keyframes"``) or ``full`` (every frame)."""
    strategy = get(name)
    if strategy.rule in ("equidistant_k", "random_k") and seek:
        return "seek"
    if strategy.needs_student and candidates == "keyframes":
        return "keyframes"
    return "full"


def strategies_markdown() -> str:
    """The table as Markdown (name, title, rule, score, distillation method), for the README."""
    lines = ["| strategy | Table III row | rule (`raycondi.selection`) | ranks clips by | `distill --method` |",
             "|---|---|---|---|---|"]
    for s in STRATEGIES:
        rule = f"`{s.rule}`" + (" (`split_k` with K_s > 0)" if s.splits else "")
        score = f"{SCORES[s.score].label} ({SCORES[s.score].uses})" if s.score else "—"
        lines.append(f"| `{s.name}` | {s.title} | {rule}: {s.paper} | {score} | {'yes' if s.method else '—'} |")
    return "\n".join(lines)
