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
from raycondi.video.container import VideoDecodeError
from raycondi.video.storage import join, write_bytes

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
    videos = []
    for number, row in enumerate(read_samples(config, dataset, totals.sample_ids), start=1):
        view = video_view(row, f"confidence-{number:02d}.png", config)
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


def video_view(row: dict[str, Any], chart: str, config: ReportConfig) -> VideoView:
    """A sampled row's section: its selected clips with their frame strips (or a note saying why there are none)
    and ``chart`` as its confidence chart's name when the student scored its clips."""
    starts, ends = row["selected_start_s"] or [], row["selected_end_s"] or []
    note, strips = None, [None] * len(starts)
    try:
        strips = [image_png(s) for s in clip_strips(row["uri"], list(zip(starts, ends)), frames=config.frames,
                                                    height=config.frame_height, limits=config.limits,
                                                    storage=config.storage)]
    except VideoDecodeError as error:  # the report shows the rest of the video's section
        note = f"frames not shown: {error.reason}"
    confidences = row["selected_confidence"] or [None] * len(starts)
    clips = tuple(ClipView(index, start, end, by, confidence, png) for index, start, end, by, confidence, png
                  in zip(row["selected_clips"] or [], starts, ends, row["selected_by"] or [], confidences, strips))
    return VideoView(row, clips, chart if row["clip_confidence"] else None, note)


def _confidence_chart(row: dict[str, Any]) -> bytes:
    """z~ against the clip index: ``candidate_clips`` says which clips were scored, when not all of them."""
    confidence = row["clip_confidence"]
    clips = row["candidate_clips"] if row["candidate_clips"] is not None else list(range(len(confidence)))
    return confidence_png(confidence, clips, row["selected_clips"] or [], row["selected_by"] or [])
