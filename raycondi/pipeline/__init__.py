"""The Ray Data labelling pipeline: videos in object storage -> one Parquet row per video (``raycondi label``).

Modules: :mod:`~raycondi.pipeline.label` (configuration, per-video logic, the stages and the Ray wiring),
:mod:`~raycondi.pipeline.schema` (the output columns) and :mod:`~raycondi.pipeline.sink` (the Parquet writer
and the resume check). The names below are importable from here; the ones from ``label`` are loaded on
first use, so that Ray's write workers, which unpickle the sink, never import torch.
"""

from importlib import import_module

from raycondi.pipeline.schema import OUTPUT_COLUMNS, OUTPUT_SCHEMA, columns_markdown
from raycondi.pipeline.sink import LabelError, LabelSink, labelled_ids

_FROM_LABEL = (
    "STRATEGIES", "LabelConfig", "LabelSummary", "ScoreAndSelect", "TeacherPredict", "label_videos", "list_videos",
    "select_clips", "video_prediction",
)

__all__ = [
    "OUTPUT_COLUMNS", "OUTPUT_SCHEMA", "LabelError", "LabelSink", "columns_markdown", "labelled_ids", *_FROM_LABEL,
]


def __getattr__(name: str):
    if name in _FROM_LABEL:
        return getattr(import_module("raycondi.pipeline.label"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
