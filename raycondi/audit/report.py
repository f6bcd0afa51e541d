""":func:`write_report`: a labelling output in, ``index.html`` and its charts as PNG files out (local or s3://).

Two passes over the output (:mod:`~raycondi.audit.scan`), the sampled videos' selected clips decoded
(:mod:`~raycondi.audit.frames`), the pictures drawn (:mod:`~raycondi.audit.charts`) and the page written
(:mod:`~raycondi.audit.page`). Everything is written under ``config.out_uri``, by names chosen here, never
anywhere else: the charts as ``classes.png``, ``scores.png``, ``teacher_share.png`` and one
``confidence-NN.png`` per sampled video that has confidences, the page as ``index.html``, written last.
"""

from __future__ import annotations

import time
from typing import Any

from raycondi.audit.charts import classes_png, confidence_png, image_png, scores_png, teacher_share_png
from raycondi.audit.config import ReportConfig, ReportSummary
from raycondi.audit.frames import clip_strips
from raycondi.audit.page import ClipView, VideoView, render
from raycondi.audit.scan import open_labels, read_samples, scan
from raycondi.models.checkpoint import CheckpointError, read_checkpoint_config
from raycondi.video.container import VideoDecodeError
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import StorageError, join, write_bytes

__all__ = ["write_report"]


def write_report(config: ReportConfig) -> ReportSummary:
    """Write the report of ``config.labels`` to ``config.out_uri``; raises
    :class:`~raycondi.audit.config.ReportError` when the output cannot be read."""
    started = time.perf_counter()
    dataset = open_labels(config)
    totals = scan(config, dataset)
    charts = {"classes.png": classes_png(totals.labels),
              "scores.png": scores_png(totals.score_counts, totals.score_edges),
              "teacher_share.png": teacher_share_png(totals.teacher_clips, totals.dense_clips)}
    videos, specs = [], {}
    for number, row in enumerate(read_samples(config, dataset, totals.sample_ids), start=1):
        if row["teacher_model"] not in specs:
            specs[row["teacher_model"]] = _clip_spec(row["teacher_model"], config)
        view = video_view(row, f"confidence-{number:02d}.png", config, specs[row["teacher_model"]])
        if view.chart:
            charts[view.chart] = _confidence_chart(row)
        videos.append(view)
    page = render(config.labels, totals, charts, videos)
    out = config.out_uri
    for name, data in charts.items():
        write_bytes(join(out, name), data, config.storage)
    write_bytes(join(out, "index.html"), page.encode(), config.storage)
    return ReportSummary(html=join(out, "index.html"), pngs=tuple(join(out, name) for name in charts),
                         rows=totals.rows, ok=totals.ok, errors=totals.errors,
                         videos=tuple(v.row["video_id"] for v in videos), seconds=time.perf_counter() - started)


def _clip_spec(teacher: str | None, config: ReportConfig) -> ClipSpec | str:
    """How the job cut the videos it labelled with ``teacher``: that checkpoint's ``clip_len`` and ``resize``
    (the decode both models share, stride 1 as ``label`` runs); or why it cannot be known."""
    try:
        model = read_checkpoint_config(teacher, storage=config.storage)
    except (CheckpointError, StorageError) as error:
        return f"frames not shown: the teacher checkpoint that says how the clips were cut cannot be read ({error})"
    return ClipSpec(model.clip_len, model.resize)


def video_view(row: dict[str, Any], chart: str, config: ReportConfig, spec: ClipSpec | str) -> VideoView:
    """A sampled row's section: its selected clips with their frame strips (or a note saying why there are none)
    and ``chart`` as its confidence chart's name when the student scored its clips."""
    indices = row["selected_clips"] or []
    note, strips = (spec, [None] * len(indices)) if isinstance(spec, str) else (None, [None] * len(indices))
    if not isinstance(spec, str):
        try:
            strips = [None if s is None else image_png(s) for s in clip_strips(
                row["uri"], indices, spec, frames=config.frames, height=config.frame_height, limits=config.limits,
                storage=config.storage)]
        except VideoDecodeError as error:  # the report shows the rest of the video's section
            note = f"frames not shown: {error.reason}"
    column = {name: row[name] or [None] * len(indices)
              for name in ("selected_start_s", "selected_end_s", "selected_by", "selected_confidence")}
    clips = tuple(ClipView(*view) for view in zip(indices, column["selected_start_s"], column["selected_end_s"],
                                                  column["selected_by"], column["selected_confidence"], strips))
    chart_ok = bool(row["clip_confidence"]) and len(_scored(row)) == len(row["clip_confidence"])
    return VideoView(row, clips, chart if chart_ok else None, note)


def _scored(row: dict[str, Any]) -> list[int]:
    """The clip indices ``clip_confidence`` belongs to: ``candidate_clips`` when the student scored only those."""
    return row["candidate_clips"] if row["candidate_clips"] is not None else list(range(len(row["clip_confidence"])))


def _confidence_chart(row: dict[str, Any]) -> bytes:
    """z~ against the clip index: ``candidate_clips`` says which clips were scored, when not all of them."""
    return confidence_png(row["clip_confidence"], _scored(row), row["selected_clips"] or [], row["selected_by"] or [])
