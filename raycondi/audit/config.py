"""What ``raycondi report`` is asked to do (:class:`ReportConfig`) and what it did (:class:`ReportSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from raycondi.video.container import DecodeLimits
from raycondi.video.storage import StorageOptions, UriError, join

__all__ = ["REPORT_FOLDER", "SAMPLES", "ReportConfig", "ReportError", "ReportSummary"]

# which ok rows the report shows in detail: the least sure labels (the ones to check first) or the surest
SAMPLES = ("lowest", "highest")
REPORT_FOLDER = "_report"  # under the labels, by default


class ReportError(UriError):
    """The labelling output cannot be reported on (missing, holds no Parquet files, unreadable)."""


@dataclass(frozen=True)
class ReportConfig:
    """``labels``: a labelling output folder (local or ``s3://``); ``out``: where ``index.html`` and the PNG files
    go (default ``{labels}/_report``: a leading ``_`` hides the folder from pyarrow, pandas, Ray Data and the
    resume check, so the report never looks like output rows); ``videos``: how many ok rows to show clip by clip, chosen by ``sample``
    (``lowest`` or ``highest`` score; ties by ``video_id``); ``frames``: frames shown per selected clip,
    ``frame_height`` pixels high; ``bins``: of the score histogram on [0, 1]; ``batch_rows``: rows per scanned
    batch (memory, not results, depends on it)."""

    labels: str
    out: str | None = None
    videos: int = 8
    sample: str = "lowest"
    frames: int = 4
    frame_height: int = 64
    bins: int = 20
    batch_rows: int = 65_536
    storage: StorageOptions | None = None
    limits: DecodeLimits = field(default_factory=DecodeLimits)

    def __post_init__(self) -> None:
        if self.videos < 0:
            raise ReportError("--videos", f"must be 0 or more, got {self.videos}")
        if self.sample not in SAMPLES:
            raise ReportError("--sample", f"must be one of {', '.join(SAMPLES)}, got {self.sample!r}")
        for name in ("frames", "frame_height", "bins", "batch_rows"):
            if getattr(self, name) < 1:
                raise ReportError(name, f"must be 1 or more, got {getattr(self, name)}")

    @property
    def out_uri(self) -> str:
        return self.out or join(self.labels, REPORT_FOLDER)


@dataclass(frozen=True)
class ReportSummary:
    """``html``: the page's URI; ``pngs``: the chart files beside it; ``rows`` (all of them feed the counts and
    charts: nothing is sampled for them), ``ok`` and ``errors``; ``videos``: the video_ids shown clip by clip;
    ``seconds``: wall time."""

    html: str
    pngs: tuple[str, ...]
    rows: int
    ok: int
    errors: int
    videos: tuple[str, ...]
    seconds: float
