"""``raycondi report``: a labelling output read back as one self-contained HTML page and its charts as PNG files.

Modules, one job each: :mod:`~raycondi.audit.config` (:class:`ReportConfig`, :class:`ReportSummary`,
:class:`ReportError`), :mod:`~raycondi.audit.scan` (one pass over the small columns of every row, then the list
columns of the sampled rows only), :mod:`~raycondi.audit.errors` (error rows grouped by reason),
:mod:`~raycondi.audit.frames` (frame strips of the selected clips, decoded by seeking), :mod:`~raycondi.audit.charts`
(the PNG charts), :mod:`~raycondi.audit.page` (the HTML) and :mod:`~raycondi.audit.report` (:func:`write_report`).
Plain pyarrow, PyAV and matplotlib, and the checkpoint's config to cut the clips as the job did: no Ray.
"""

from raycondi.audit.config import SAMPLES, ReportConfig, ReportError, ReportSummary
from raycondi.audit.report import write_report

__all__ = ["SAMPLES", "ReportConfig", "ReportError", "ReportSummary", "write_report"]
