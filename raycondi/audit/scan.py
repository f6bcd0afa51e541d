"""Reading a labelling output for the report in two passes, so that a million rows never sit in memory at once.

1. :func:`scan` streams the small scalar columns of every row (:data:`SCALARS`, a ``pyarrow.dataset`` scanner
   batch by batch) into :class:`Totals`: counts, the score histogram's bins, the clip sums, the error groups,
   the distinct settings, and the ``videos`` ok rows to sample -- kept as a running top-N, never all scores.
2. :func:`read_samples` reads the list columns (clips, top-5, confidences) of those rows only, by a dataset
   filter on ``video_id``.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from raycondi.audit.config import ReportConfig, ReportError
from raycondi.audit.errors import ErrorGroups
from raycondi.pipeline.schema import STATUS_OK, output_dataset, output_files
from raycondi.video.storage import exists

__all__ = ["DETAIL", "SCALARS", "SETTINGS", "Totals", "open_labels", "read_samples", "scan"]

# the run's settings: the header lists each one's distinct values
SETTINGS = ("strategy", "k", "k_student", "student_model", "student_architecture", "teacher_model",
            "teacher_architecture", "run_id")
SCALARS = ("video_id", "uri", "status", "error", "label", "score", "teacher_clips", "num_clips", *SETTINGS)
DETAIL = ("video_id", "uri", "label", "score", "top5_labels", "top5_scores", "num_clips", "duration_s", "strategy",
          "selected_clips", "selected_start_s", "selected_end_s", "selected_confidence", "selected_by",
          "clip_confidence", "candidate_clips", "teacher_model")


@dataclass
class Totals:
    """What the first pass adds up; ``sample`` holds ``(sort key, video_id)`` of the rows to show, best first."""

    bins: int
    videos: int
    sample_order: str = "lowest"
    rows: int = 0
    ok: int = 0
    errors: int = 0
    labels: Counter = field(default_factory=Counter)
    teacher_clips: int = 0
    dense_clips: int = 0
    settings: dict[str, set] = field(default_factory=lambda: {name: set() for name in SETTINGS})
    error_groups: ErrorGroups = field(default_factory=ErrorGroups)
    sample: list[tuple[tuple[float, str], str]] = field(default_factory=list)
    score_counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.score_counts = np.zeros(self.bins, np.int64)

    @property
    def score_edges(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.bins + 1)

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Fold one batch of :data:`SCALARS` rows in."""
        ok_mask = pc.fill_null(pc.equal(batch["status"], STATUS_OK), False)
        ok = batch.filter(ok_mask)
        self.rows += batch.num_rows
        self.ok += ok.num_rows
        self.errors += batch.num_rows - ok.num_rows
        for entry in pc.value_counts(ok["label"].drop_null()).to_pylist():
            self.labels[entry["values"]] += entry["counts"]
        scores = ok["score"].drop_null().to_numpy()
        self.score_counts += np.histogram(scores, bins=self.score_edges)[0]  # the last bin includes 1.0
        self.teacher_clips += pc.sum(ok["teacher_clips"]).as_py() or 0
        self.dense_clips += pc.sum(ok["num_clips"]).as_py() or 0
        for name in SETTINGS:
            self.settings[name].update(v for v in pc.unique(batch[name]).to_pylist() if v is not None)
        failed = batch.filter(pc.invert(ok_mask))
        for video_id, uri, error in zip(*(failed[c].to_pylist() for c in ("video_id", "uri", "error"))):
            self.error_groups.add(video_id, uri, error)
        self._keep(ok)

    def _keep(self, ok: pa.Table | pa.RecordBatch) -> None:
        """Merge this batch's best ``videos`` rows into the running sample (ties: the smaller video_id first)."""
        scored = ok.filter(pc.is_valid(ok["score"]))
        if not self.videos or not scored.num_rows:
            return
        order = "ascending" if self.sample_order == "lowest" else "descending"
        best = pc.select_k_unstable(scored, k=min(self.videos, scored.num_rows),
                                    sort_keys=[("score", order), ("video_id", "ascending")])
        sign = 1.0 if self.sample_order == "lowest" else -1.0
        chosen = scored.take(best)
        found = [((sign * s, v), v) for s, v in zip(chosen["score"].to_pylist(), chosen["video_id"].to_pylist())]
        self.sample = heapq.nsmallest(self.videos, self.sample + found)

    @property
    def sample_ids(self) -> list[str]:
        return [video_id for _, video_id in self.sample]


def open_labels(config: ReportConfig) -> pads.Dataset:
    """The labelling output's published Parquet files as one dataset with the output schema (columns an older
    file lacks read as nulls). Raises :class:`ReportError` when there are none."""
    if not exists(config.labels, config.storage):
        raise ReportError(config.labels, "no such directory or prefix: give a `raycondi label` output folder")
    files = output_files(config.labels, config.storage)
    if not files:
        raise ReportError(config.labels, "no Parquet files: not a labelling output, or no run has written rows yet")
    return output_dataset(files, config.storage)


def _batches(labels: str, dataset: pads.Dataset, columns: tuple[str, ...], batch_rows: int,
             expression: pc.Expression | None = None) -> Iterator[pa.RecordBatch]:
    try:  # one batch and one file read ahead: memory stays about one row group's columns (readahead buys no speed)
        yield from dataset.scanner(columns=list(columns), filter=expression, batch_size=batch_rows,
                                   batch_readahead=1, fragment_readahead=1).to_batches()
    except (OSError, pa.ArrowException) as error:
        raise ReportError(labels, f"cannot read the labelling output: {error}") from None


def scan(config: ReportConfig, dataset: pads.Dataset) -> Totals:
    """The first pass: every row's scalar columns, batch by batch."""
    totals = Totals(config.bins, config.videos, config.sample)
    for batch in _batches(config.labels, dataset, SCALARS, config.batch_rows):
        totals.add(batch)
    return totals


def read_samples(config: ReportConfig, dataset: pads.Dataset, video_ids: list[str]) -> list[dict[str, Any]]:
    """The second pass: the :data:`DETAIL` columns of ``video_ids``' rows, in that order."""
    if not video_ids:
        return []
    wanted = pc.field("video_id").isin(pa.array(video_ids, pa.string()))
    rows = {}
    for batch in _batches(config.labels, dataset, DETAIL, config.batch_rows, wanted):
        for row in batch.to_pylist():
            rows.setdefault(row["video_id"], row)
    return [rows[v] for v in video_ids if v in rows]
