"""The evaluation's files: CSV tables, Markdown tables shaped like the paper's, PNG plots and ``report.md``.

Every function takes rows from :mod:`raycondi.evaluation.tables` and returns text or PNG bytes; writing
them (local or ``s3://``) is the job's business.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, fields

from raycondi.evaluation.tables import AmbiguityRow, Result
from raycondi.plotting import plt, png
from raycondi.strategies import STRATEGIES, get

__all__ = [
    "accuracy_csv",
    "accuracy_vs_k_png",
    "accuracy_vs_time_png",
    "ambiguity_csv",
    "ks_sweep_csv",
    "report_files",
    "report_markdown",
    "table_iii",
    "table_iv",
    "table_v",
    "timing_csv",
]

# ConDi-SR first, then the baselines the paper's Table IV times
TABLE_IV_STRATEGIES = ("condi_sr", *(s.name for s in STRATEGIES if s.table_iv and s.name != "condi_sr"))


def _csv(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _k(result: Result) -> str:
    return "all" if result.k is None else str(result.k)


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.2f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g} s" if value >= 1 else f"{1000 * value:.3g} ms"


def accuracy_csv(rows: Sequence[Result]) -> str:
    """``strategy,k,accuracy,videos`` (k = ``all`` for dense)."""
    return _csv(["strategy", "k", "accuracy", "videos"], [(r.strategy, _k(r), r.accuracy, r.videos) for r in rows])


def timing_csv(rows: Sequence[Result]) -> str:
    """``strategy,k,k_student,accuracy,seconds_per_video,decoded_clips,sought_clips,student_clips,teacher_clips,
    videos`` (clips: mean per video; decoded in a stream, reached by seeking), for every strategy a labelling run
    can execute (not the oracle)."""
    header = ["strategy", "k", "k_student", "accuracy", "seconds_per_video", "decoded_clips", "sought_clips",
              "student_clips", "teacher_clips", "videos"]
    return _csv(header, [(r.strategy, _k(r), r.k_student, r.accuracy, r.seconds, r.decoded_clips, r.sought_clips,
                          r.student_clips, r.teacher_clips, r.videos) for r in rows if r.strategy != "oracle"])


ks_sweep_csv = timing_csv  # the same columns: one row per (K, K_s) of condi_sr


def ambiguity_csv(rows: Sequence[AmbiguityRow]) -> str:
    """One row per sampler: ``sampler,score,teacher_correct_auroc,clean_auroc,ambiguous_teacher_correct_auroc,...``."""
    names = [f.name for f in fields(AmbiguityRow)]
    return _csv(names, [[asdict(r)[n] for n in names] for r in rows])


def table_iii(rows: Sequence[Result]) -> str:
    """Table III: video accuracy (%) per strategy (rows) and K (columns), Dense in the last column for every
    row as in the paper; the best non-oracle value of each column in bold."""
    ks = sorted({r.k for r in rows if r.k is not None})
    dense = next((r.accuracy for r in rows if r.strategy == "dense"), float("nan"))
    cells = {(r.strategy, r.k): r.accuracy for r in rows}
    strategies = list(dict.fromkeys(r.strategy for r in rows if r.strategy != "dense"))
    best = {k: max((cells[s, k] for s in strategies if s != "oracle" and (s, k) in cells), default=None) for k in ks}
    lines = ["| Strategy | " + " | ".join(f"K={k}" for k in ks) + " | Dense |",
             "|---|" + "---:|" * (len(ks) + 1)]
    for s in strategies:
        values = []
        for k in ks:
            text = _percent(cells[s, k]) if (s, k) in cells else "—"
            values.append(f"**{text}**" if s != "oracle" and cells.get((s, k)) == best[k] else text)
        lines.append(f"| {get(s).title} | " + " | ".join(values) + f" | {_percent(dense)} |")
    if "dense" in {r.strategy for r in rows}:
        lines.append("| Dense | " + " | ".join(_percent(dense) for _ in ks) + f" | {_percent(dense)} |")
    return "\n".join(lines)


def table_iv(rows: Sequence[Result]) -> str:
    """Table IV: mean time per video (accuracy %) per K for ConDi-SR, Equidistant and ST-Ent, and Dense."""
    present = [s for s in TABLE_IV_STRATEGIES if any(r.strategy == s for r in rows)]
    cells = {(r.strategy, r.k): r for r in rows}
    ks = sorted({r.k for r in rows if r.k is not None})
    lines = ["| K | " + " | ".join(get(s).title for s in present) + " |", "|---|" + "---:|" * len(present)]
    for k in ks:
        values = [f"{_seconds(cells[s, k].seconds)} ({_percent(cells[s, k].accuracy)})" if (s, k) in cells else "—"
                  for s in present]
        lines.append(f"| {k} | " + " | ".join(values) + " |")
    dense = cells.get(("dense", None))
    if dense is not None:
        lines.append(f"| All (Dense) | {_seconds(dense.seconds)} ({_percent(dense.accuracy)}) |"
                     + " |" * (len(present) - 1))
    return "\n".join(lines)


def table_v(rows: Sequence[Result]) -> str:
    """Table V: condi_sr's accuracy and time per video for K_s = 0..K clips labelled by the student."""
    lines = ["| K | K_s | K_t (mean) | Accuracy (%) | Mean time per video |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.k} | {r.k_student} | {r.teacher_clips:.2f} | {_percent(r.accuracy)} | {_seconds(r.seconds)} |"
              for r in rows]
    return "\n".join(lines)


def accuracy_vs_k_png(rows: Sequence[Result]) -> bytes:
    """Video accuracy against K, a line per strategy; Dense as a dashed horizontal line."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for strategy in dict.fromkeys(r.strategy for r in rows if r.k is not None):
        points = sorted((r.k, 100 * r.accuracy) for r in rows if r.strategy == strategy)
        axes.plot(*zip(*points), marker="o", label=get(strategy).title, linestyle=":" if strategy == "oracle" else "-")
    for r in rows:
        if r.strategy == "dense":
            axes.axhline(100 * r.accuracy, color="black", linestyle="--", label="Dense")
    axes.set(xlabel="K (clips per video)", ylabel="video accuracy (%)", title="Accuracy against K")
    axes.set_xticks(sorted({r.k for r in rows if r.k is not None}))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return png(figure, 120)


def accuracy_vs_time_png(rows: Sequence[Result]) -> bytes:
    """Video accuracy against the timing model's seconds per video: a point per strategy and K (labelled
    with K), Dense as a black star."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for strategy in dict.fromkeys(r.strategy for r in rows if r.seconds is not None):
        points = sorted((r.seconds, 100 * r.accuracy, r.k) for r in rows if r.strategy == strategy)
        if strategy == "dense":
            axes.scatter([p[0] for p in points], [p[1] for p in points], marker="*", s=220, color="black",
                         label="Dense", zorder=3)
            continue
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=get(strategy).title)
        for seconds, accuracy, k in points:
            axes.annotate(f"K={k}", (seconds, accuracy), textcoords="offset points", xytext=(3, 3), fontsize=7)
    axes.set(xlabel="mean time per video (s, timing model)", ylabel="video accuracy (%)",
             title="Accuracy against time per video")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return png(figure, 120)


def _auroc(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def report_markdown(rows: Sequence[Result], sweep: Sequence[Result], ambiguity: Sequence[AmbiguityRow],
                    setup: Sequence[str]) -> str:
    """``report.md``: the ``setup`` lines (what was evaluated, the measured costs), Tables III-V, the AUROC
    table, the two plots and links to the CSV files."""
    parts = ["# raycondi evaluation", "", *[f"- {line}" for line in setup], "",
             "## Table III: video accuracy (%) by K",
             "The best non-oracle value of each column is in bold; Dense uses every clip.", "",
             table_iii(rows), "", "![accuracy against K](accuracy_vs_k.png)", "",
             "## Table IV: mean time per video (accuracy %)",
             "Timing model: each strategy decodes as the labelling job does (Equidistant and Random seek to their "
             "K clips when a seek cost was measured; the others decode all N clips); samplers run their student on "
             "all N clips; the teacher runs on the clips the rule chose (all N for Dense).", "",
             table_iv(rows), "", "![accuracy against time per video](accuracy_vs_time.png)"]
    if sweep:
        parts += ["", "## Table V: ConDi-SR dividing the work (K_s clips labelled by the student)", "",
                  table_v(sweep)]
    parts += ["", "## Confidence as a predictor (AUROC)", "",
              "| sampler | score | teacher right (z, Eq. 1) | ground-truth clean clip | teacher right, among "
              "ambiguous clips |", "|---|---|---:|---:|---:|"]
    parts += [f"| {'Random' if r.sampler == 'random' else get(r.sampler).title} | {r.score} | "
              f"{_auroc(r.teacher_correct_auroc)} | {_auroc(r.clean_auroc)} | "
              f"{_auroc(r.ambiguous_teacher_correct_auroc)} |" for r in ambiguity]
    links = ["accuracy.csv", "timing.csv", *(["ks_sweep.csv"] if sweep else []), "ambiguity.csv", "costs.json",
             "clip_outputs.parquet"]
    parts += ["", "Files: " + ", ".join(f"[{name}]({name})" for name in links)]
    return "\n".join(parts) + "\n"


def report_files(rows: Sequence[Result], sweep: Sequence[Result], ambiguity: Sequence[AmbiguityRow],
                 setup: Sequence[str]) -> dict[str, bytes]:
    """Every table, plot and ``report.md`` as ``{file name: bytes}`` (``ks_sweep.csv`` and ``table_v.md``
    only with a sweep)."""
    files = {
        "accuracy.csv": accuracy_csv(rows).encode(),
        "accuracy.md": (table_iii(rows) + "\n").encode(),
        "timing.csv": timing_csv(rows).encode(),
        "table_iv.md": (table_iv(rows) + "\n").encode(),
        "ambiguity.csv": ambiguity_csv(ambiguity).encode(),
        "accuracy_vs_k.png": accuracy_vs_k_png(rows),
        "accuracy_vs_time.png": accuracy_vs_time_png(rows),
    }
    if sweep:
        files["ks_sweep.csv"] = ks_sweep_csv(sweep).encode()
        files["table_v.md"] = (table_v(sweep) + "\n").encode()
    files["report.md"] = report_markdown(rows, sweep, ambiguity, setup).encode()
    return files
