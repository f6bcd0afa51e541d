"""The report as one self-contained HTML page: inline CSS, every picture a ``data:`` URI, no script, no link out,
so the file can be mailed, attached to a ticket or opened from S3 as it is."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from raycondi.audit.scan import Totals

__all__ = ["ClipView", "VideoView", "render", "teacher_sentence"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd; padding: .25em .6em;
text-align: left; vertical-align: top; } th { background: #f3f3f3; } td.n { text-align: right; }
code { font-size: .9em; word-break: break-all; } .video { border: 1px solid #ccc; border-radius: 6px;
padding: .2em 1em 1em; margin: 1em 0; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; } figure { margin: 0; } figcaption { font-size: .85em; color: #555; } .note { color: #a33; }
.teacher { color: #b22; } .student { color: #c60; }
"""
RUN_IDS_SHOWN = 5


@dataclass(frozen=True)
class ClipView:
    """One selected clip: its index, times, who labelled it, z~ (None without a student) and its strip's PNG."""

    index: int
    start_s: float
    end_s: float
    selected_by: str
    confidence: float | None
    strip_png: bytes | None


@dataclass(frozen=True)
class VideoView:
    """A sampled row (:data:`~raycondi.audit.scan.DETAIL` columns), its clips, the name of its confidence chart
    (None for the teacher-only strategies) and a note when its frames could not be shown."""

    row: dict[str, Any]
    clips: tuple[ClipView, ...]
    chart: str | None
    note: str | None


def teacher_sentence(teacher_clips: int, dense_clips: int) -> str:
    """"The teacher ran on X of Y clips, Z % of dense." over the ok rows (dense runs it on every clip)."""
    if not dense_clips:
        return "No ok rows: the teacher ran on no clip."
    return (f"The teacher ran on {teacher_clips:,} of {dense_clips:,} clips, {100 * teacher_clips / dense_clips:.1f} % "
            "of dense.")


def render(labels: str, totals: Totals, charts: dict[str, bytes], videos: Sequence[VideoView]) -> str:
    """The page: the run, the classes, the scores, the teacher's share, the errors, then the sampled videos."""
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>raycondi report: {_e(labels)}"
             f"</title><style>{_CSS}</style></head><body>",
             "<h1>raycondi labelling report</h1>", _header(labels, totals),
             "<h2>Predicted classes and scores</h2><div class='row'>",
             _img(charts["classes.png"], "videos per predicted class"), _img(charts["scores.png"], "score histogram"),
             "</div>",
             "<h2>Teacher clips against dense</h2>", f"<p>{teacher_sentence(totals.teacher_clips, totals.dense_clips)}"
             "</p>", _img(charts["teacher_share.png"], "teacher clips against dense"),
             "<h2>Errors</h2>", _errors(totals),
             f"<h2>Videos: the {len(videos)} {'lowest' if totals.sample_order == 'lowest' else 'highest'}-scored</h2>",
             *(_video(view, charts) for view in videos), "</body></html>\n"]
    return "\n".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _table(header: Iterable[str] | None, rows: Iterable[Iterable[str]]) -> str:
    """A table of already-escaped cells."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _values(values: set, shown: int | None = None) -> str:
    ordered = sorted(values, key=str)
    more = f" and {len(ordered) - shown} more" if shown is not None and len(ordered) > shown else ""
    return ", ".join(f"<code>{_e(v)}</code>" for v in ordered[:shown]) + more or "—"


def _header(labels: str, totals: Totals) -> str:
    s = totals.settings
    rows = [("labels", f"<code>{_e(labels)}</code>"), ("rows", f"{totals.rows:,}"), ("ok", f"{totals.ok:,}"),
            ("error", f"{totals.errors:,}"), ("strategy", _values(s["strategy"])), ("K", _values(s["k"])),
            ("K_s", _values(s["k_student"])),
            ("student", f"{_values(s['student_model'])} ({_values(s['student_architecture'])})"),
            ("teacher", f"{_values(s['teacher_model'])} ({_values(s['teacher_architecture'])})"),
            ("run ids", _values(s["run_id"], RUN_IDS_SHOWN))]
    return _table(None, [(f"<b>{name}</b>", value) for name, value in rows])


def _errors(totals: Totals) -> str:
    groups = totals.error_groups.groups()
    if not groups:
        return "<p>No error rows.</p>"
    rows = [(_e(g.reason), f"{g.count:,}", "<br>".join(f"<code>{_e(v)}</code> ({_e(u)})" for v, u in g.examples))
            for g in groups]
    return ("<p>Error rows grouped by reason (the video's URI and numbers such as times replaced by # ).</p>"
            + _table(("reason", "rows", "examples"), rows))


def _score(p: float | None) -> str:
    return "–" if p is None else f"{p:.3f}"


def _video(view: VideoView, charts: dict[str, bytes]) -> str:
    row = view.row
    top5 = zip(row["top5_labels"] or [], row["top5_scores"] or [])
    parts = [f"<div class='video'><h3><code>{_e(row['video_id'])}</code></h3>",
             f"<p><code>{_e(row['uri'])}</code><br>label <b>{_e(row['label'])}</b>, score {_score(row['score'])}, "
             f"{row['num_clips']} clips, {row['duration_s'] or 0:.2f} s, {_e(row['strategy'])}</p>",
             "<div class='row'>", _table(("top-5", "score"), ((_e(name), _score(p)) for name, p in top5))]
    if view.chart:
        parts.append(_img(charts[view.chart], "student confidence over the clips"))
    parts.append("</div>")
    if view.note:
        parts.append(f"<p class='note'>{_e(view.note)}</p>")
    figures = []
    for clip in view.clips:
        confidence = "" if clip.confidence is None else f", z̃ {clip.confidence:.3f}"
        caption = (f"clip {clip.index}, {clip.start_s:.2f}–{clip.end_s:.2f} s, "
                   f"<span class='{_e(clip.selected_by)}'>{_e(clip.selected_by)}</span>{confidence}")
        picture = _img(clip.strip_png, f"frames of clip {clip.index}") if clip.strip_png else ""
        figures.append(f"<figure>{picture}<figcaption>{caption}</figcaption></figure>")
    parts.append(f"<div class='row'>{''.join(figures)}</div></div>")
    return "\n".join(parts)
