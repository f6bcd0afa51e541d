"""The Ray Data labelling pipeline: videos in object storage -> one Parquet row per video (``raycondi label``).

Modules, one job each: :mod:`~raycondi.pipeline.config` (:class:`LabelConfig`, :class:`LabelSummary`),
:mod:`~raycondi.pipeline.inputs` (the videos to label), :mod:`~raycondi.pipeline.checks` (the checkpoints'
checks), :mod:`~raycondi.pipeline.topk` and :mod:`~raycondi.pipeline.spool` (the two selection algorithms),
:mod:`~raycondi.pipeline.plans` (what each strategy decodes), :mod:`~raycondi.pipeline.stages` (the per-video
logic and the CPU layouts' actors), :mod:`~raycondi.pipeline.gpu` (the GPU layout's actors),
:mod:`~raycondi.pipeline.plan` (pool sizes), :mod:`~raycondi.pipeline.label` (the driver),
:mod:`~raycondi.pipeline.schema` (the output columns) and :mod:`~raycondi.pipeline.sink` (the Parquet writer and
the resume check). The names below are importable from here; the ones that need torch or Ray are
loaded on first use, so that Ray's write workers, which unpickle the sink, never import torch, and the per-video
logic and the stages run where Ray is not installed (``benchmarks/gpu_harness.py``).
"""

from importlib import import_module

from raycondi.pipeline.config import LabelConfig, LabelError, LabelSummary
from raycondi.pipeline.inputs import VIDEO_SUFFIXES, list_videos
from raycondi.pipeline.schema import OUTPUT_COLUMNS, OUTPUT_SCHEMA, columns_markdown

_LAZY = {
    "LabelSink": "raycondi.pipeline.sink",
    "labelled_ids": "raycondi.pipeline.sink",
    "label_videos": "raycondi.pipeline.label",
    "check_models": "raycondi.pipeline.checks",
    "ScoreAndSelect": "raycondi.pipeline.stages",
    "ScoreSelectPredict": "raycondi.pipeline.stages",
    "TeacherPredict": "raycondi.pipeline.stages",
    "select_clips": "raycondi.pipeline.plans",
    "choose_clips": "raycondi.pipeline.plans",
    "video_prediction": "raycondi.pipeline.stages",
}

__all__ = [
    "OUTPUT_COLUMNS", "OUTPUT_SCHEMA", "VIDEO_SUFFIXES", "LabelConfig", "LabelError", "LabelSink", "LabelSummary",
    "columns_markdown", "labelled_ids", "list_videos", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
