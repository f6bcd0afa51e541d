"""The labelling job's Ray Data stages, and the per-video logic they call (plain functions, testable without Ray).

* :class:`ScoreAndSelect` decodes a video at the checkpoints' resize by the strategy's decode plan and
  chooses its clips by the strategy's rule (:func:`raycondi.pipeline.plans.choose_clips`): the samplers
  through the streaming top-K heap, the teacher-only strategies by seeking to their K clips (or, where a video
  cannot be sought, through the spool). It yields one :class:`Selection` per video.
* :class:`TeacherPredict` runs the teacher on the selected clips of a batch of videos at once, and
  :func:`video_prediction` merges them with the student's K_s predictions (Fig. 2c) into the video's label.
* :class:`ScoreSelectPredict` runs both in one actor and hands the selections over in memory.

Both models see their clips through :func:`raycondi.models.preprocess.model_input`, the function training and
evaluation use, with their own checkpoint's crop, frame step and normalisation. Between split stages a
:class:`Selection` travels as one Arrow row (:func:`selections_to_arrow`): the output columns known so far plus
three typed hand-off columns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import torch

from raycondi import selection
from raycondi.models.checkpoint import for_inference, load_checkpoint
from raycondi.models.preprocess import model_input
from raycondi.models.tuning import TunedModel, tune
from raycondi.pipeline.config import LabelConfig
from raycondi.pipeline.plans import choose_clips
from raycondi.pipeline.schema import OUTPUT_SCHEMA, STATUS_ERROR, STATUS_OK
from raycondi.pipeline.selected import SelectedClips
from raycondi.video.container import DecodeStats
from raycondi.video.decode import ClipSpec, VideoDecodeError
from raycondi.video.storage import StorageOptions

__all__ = [
    "STAGE_SCHEMA",
    "LoadedModel",
    "ScoreAndSelect",
    "ScoreSelectPredict",
    "Selection",
    "TeacherPredict",
    "arrow_to_selections",
    "base_row",
    "decode_columns",
    "device_for",
    "error_selection",
    "pack_frames",
    "selected",
    "selections_to_arrow",
    "unpack_frames",
    "video_prediction",
]

_TOP = 5

# The hand-off from ScoreAndSelect to TeacherPredict: the output columns plus the selection's arrays.
STAGE_SCHEMA = (
    OUTPUT_SCHEMA.append(pa.field("_teacher_frames", pa.large_binary()))  # uint8 (K_t, T, H, W, 3), C order
    .append(pa.field("_teacher_frames_shape", pa.list_(pa.int32(), 5)))
    .append(pa.field("_student_probs", pa.list_(pa.list_(pa.float32()))))  # (K_s, C)
    .append(pa.field("_teacher_confidence", pa.list_(pa.float32())))  # (K_t,): z~ of the teacher's clips
)


# --------------------------------------------------------------------------------------------------
# per-video logic
# --------------------------------------------------------------------------------------------------
def video_prediction(
    teacher_probs: np.ndarray,
    student_probs: np.ndarray | None = None,
    teacher_confidence: np.ndarray | None = None,
    class_names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Label one video from its teacher clips' ``(K_t, C)`` and student clips' ``(K_s, C)`` probabilities.

    The video's probabilities are :func:`raycondi.selection.aggregate` of the two groups (Fig. 2c;
    ``teacher_confidence`` weights the teacher's clips among themselves when given). Returns the
    ``label``, ``label_index`` (argmax, lowest index on ties), ``score``, ``top5_labels`` and
    ``top5_scores`` columns.
    """
    probs = selection.aggregate(teacher_probs, student_probs, teacher_weights=teacher_confidence)
    order = np.argsort(-probs, kind="stable")[:_TOP]
    names = [class_names[i] if class_names else str(i) for i in order]
    return {
        "label": names[0],
        "label_index": int(order[0]),
        "score": float(probs[order[0]]),
        "top5_labels": names,
        "top5_scores": [float(probs[i]) for i in order],
    }


@dataclass(frozen=True, eq=False)
class Selection:
    """ScoreAndSelect's result for one video: ``row``, the output columns known so far (complete on an
    error row), and for an ok video the teacher clips' pixels ``(K_t, T, H, W, 3)``, the student's
    probabilities on its clips ``(K_s, C)`` and the teacher clips' z̃ ``(K_t,)`` (None without a student)."""

    row: dict[str, Any]
    teacher_frames: np.ndarray
    student_probs: np.ndarray
    teacher_confidence: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.row["status"] == STATUS_OK


def pack_frames(frames: np.ndarray) -> tuple[bytes, list[int]]:
    """uint8 clips as the bytes and shape of two Arrow columns (:func:`unpack_frames` reverses it)."""
    frames = np.ascontiguousarray(frames)
    return frames.tobytes(), list(frames.shape)


def unpack_frames(data: bytes, shape: list[int]) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(shape)


def selections_to_arrow(selections: list[Selection]) -> pa.Table:
    """Selections as rows of :data:`STAGE_SCHEMA`, to cross the object store between split stages."""
    rows = []
    for s in selections:
        frames, shape = pack_frames(s.teacher_frames)
        rows.append({**s.row, "_teacher_frames": frames, "_teacher_frames_shape": shape,
                     "_student_probs": s.student_probs.tolist(),
                     "_teacher_confidence": None if s.teacher_confidence is None else s.teacher_confidence.tolist()})
    return pa.Table.from_pylist(rows, schema=STAGE_SCHEMA)


def arrow_to_selections(table: pa.Table) -> list[Selection]:
    """The inverse of :func:`selections_to_arrow`."""
    selections = []
    for row in table.to_pylist():
        frames = unpack_frames(row.pop("_teacher_frames"), row.pop("_teacher_frames_shape"))
        probs = np.asarray(row.pop("_student_probs"), np.float32)  # (K_s, C), or (0,) when K_s = 0
        weights = row.pop("_teacher_confidence")
        selections.append(Selection(row, frames, probs, None if weights is None else np.asarray(weights, np.float32)))
    return selections


# --------------------------------------------------------------------------------------------------
# Ray Data stages
# --------------------------------------------------------------------------------------------------
def device_for(gpus: float) -> str:
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


class LoadedModel:
    """A checkpoint loaded for inference: uint8 clips in, class probabilities (and z̃ for a student) out.

    The first call tunes how the model runs (:func:`raycondi.models.tuning.tune` with ``inference``: precision,
    layout, compilation, measured on a full batch of that call's clips where the model is on a GPU)."""

    def __init__(self, uri: str, device: str, storage: StorageOptions | None, inference: str = "auto") -> None:
        model, self.config = load_checkpoint(uri, map_location=device, storage=storage)
        self.model, self.device, self.inference = for_inference(model, device), device, inference
        self.name = f"{self.config.architecture} ({uri})"
        self.tuned: TunedModel | None = None

    def __call__(self, frames: np.ndarray | list[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(probs (n, C), z̃ (n,))`` for ``n`` clips (one array, or several read as one) in forward passes of
        ``batch_size`` (z̃ empty for a plain classifier)."""
        probs = [np.empty((0, self.config.num_classes), np.float32)]
        confidence = [np.empty(0, np.float32)]
        with torch.inference_mode():
            for batch in _batches(frames if isinstance(frames, list) else [frames], batch_size):
                x = model_input(batch, self.config, device=self.device)
                if self.tuned is None:
                    example = torch.cat([x, x[:1].expand(max(0, batch_size - len(x)), *x.shape[1:])])
                    self.tuned = tune(self.model, example, self.inference, name=self.name)[0]
                output = self.tuned(x)
                logits, z = output if isinstance(output, tuple) else (output, None)
                probs.append(logits.softmax(1).cpu().numpy())
                if z is not None:
                    confidence.append(z.sigmoid().cpu().numpy())
        return np.concatenate(probs), np.concatenate(confidence)


def _batches(parts: list[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The clips of ``parts``, in order, ``size`` at a time across the parts' boundaries; only a batch that
    spans two parts is copied."""
    pending: list[np.ndarray] = []
    held = 0
    for part in parts:
        start = 0
        while start < len(part):
            take = min(size - held, len(part) - start)
            pending.append(part[start:start + take])
            held, start = held + take, start + take
            if held == size:
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, held = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def base_row(config: LabelConfig, video: dict[str, str], models: dict[str, str | None]) -> dict[str, Any]:
    """The columns every row of ``video`` has, ok or not."""
    return {"video_id": video["video_id"], "uri": video["uri"], "strategy": config.strategy, "k": config.k,
            "k_student": config.k_student, "teacher_clips": 0, **models}


class Attempts(Protocol):
    """The run's record of each video's decodes, shared by every actor (:class:`~raycondi.pipeline.label.RunAttempts`
    in the job)."""

    def begin(self, video_id: str) -> int:
        """Record a start of ``video_id``'s decode; return how many earlier starts never finished (their worker
        died)."""

    def finish(self, video_id: str) -> None:
        """Record that the decode started last ended (with clips or a decode error)."""


def used_up(config: LabelConfig, video_id: str, attempts: Attempts | None) -> str | None:
    """Record this start of ``video_id``'s decode; when ``config.max_video_attempts`` earlier starts in this run
    never finished (the worker died each time, and Ray Data retries the task without limit), the reason of its
    error row; else None. Starts that finished do not count, so the other videos of a retried task are not
    blamed for the one that crashed it."""
    if attempts is None:
        return None
    died = attempts.begin(video_id)
    if died < config.max_video_attempts:
        return None
    attempts.finish(video_id)
    return (f"worker died decoding this video ({died} attempts, --max-video-attempts {config.max_video_attempts}): "
            "it may crash the decoder")


def error_selection(row: dict[str, Any], reason: str, decode_s: float, stats: DecodeStats,
                    clip: ClipSpec) -> Selection:
    """The :class:`Selection` of a video that could not be decoded: its error row, no clips."""
    row = {**row, "status": STATUS_ERROR, "error": reason, "decode_s": decode_s, "frames_decoded": stats.frames,
           "bytes_read": stats.bytes_read}
    return Selection(row, np.empty((0, *clip.frame_shape), np.uint8), np.empty((0, 0), np.float32))


def decode_columns(num_clips: int, duration_s: float, decode_s: float, stats: DecodeStats, mode: str,
                   fallback: str | None, clips: np.ndarray, decoder: str = "pyav") -> dict[str, Any]:
    """The columns describing how an ok video was decoded (``clips``: the grid clips decoded for scoring)."""
    return {"status": STATUS_OK, "num_clips": num_clips, "duration_s": duration_s, "decode_s": decode_s,
            "frames_decoded": stats.frames, "bytes_read": stats.bytes_read, "decode_mode": mode,
            "decode_fallback": fallback, "candidate_clips": clips.tolist() if mode == "keyframes" else None,
            "decoder": decoder}


def selected(config: LabelConfig, row: dict[str, Any], chosen: SelectedClips) -> Selection:
    """``row`` (an ok video's columns so far) with the selection's columns, as the :class:`Selection` the
    teacher completes."""
    order = np.concatenate([chosen.student_clips, chosen.teacher_clips])
    at = chosen.positions(order)
    row = {
        **row,
        "k": chosen.num_clips if config.strategy == "dense" else config.k,
        "selected_clips": order.tolist(),
        "selected_start_s": chosen.starts[at].tolist(),
        "selected_end_s": chosen.ends[at].tolist(),
        "selected_confidence": chosen.confidence[at].tolist() if chosen.confidence.size else None,
        "selected_by": ["student"] * len(chosen.student_clips) + ["teacher"] * len(chosen.teacher_clips),
        "clip_confidence": chosen.confidence.tolist(),
        "student_s": chosen.student_s,
    }
    return Selection(row, chosen.teacher_frames, chosen.student_probs, chosen.teacher_confidence)


class ScoreAndSelect:
    """Stage 1: per video, decode at ``clip`` (the checkpoints' clip length and resize), score with the
    student when the strategy has one, keep the clips the rule chooses. Input batches have ``video_id`` and
    ``uri``; decode failures, decodes over ``video_timeout`` and videos past ``max_video_attempts`` (with
    ``attempts``, the job's count of each video's starts) become error rows."""

    def __init__(self, config: LabelConfig, clip: ClipSpec, models: dict[str, str | None],
                 attempts: Attempts | None = None) -> None:
        torch.set_num_threads(max(1, int(config.cpus_per_actor)))
        self.config, self.clip, self.models, self.attempts = config, clip, models, attempts
        self.student: LoadedModel | None = None
        self.skim_step = 1
        if config.uses_student:
            self.student = LoadedModel(config.student, device_for(config.student_gpus), config.storage,
                                       config.inference)
            self.skim_step = self.student.config.frame_step

    def _score(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.student(frames, self.config.student_batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return selections_to_arrow([self.select(v) for v in batch.select(["video_id", "uri"]).to_pylist()])

    def select(self, video: dict[str, str]) -> Selection:
        """One video's :class:`Selection` (an error row when it cannot be decoded)."""
        config = self.config
        row = base_row(config, video, self.models)
        if reason := used_up(config, video["video_id"], self.attempts):
            return error_selection(row, reason, 0.0, DecodeStats(), self.clip)
        started, stats = time.perf_counter(), DecodeStats(timeout_s=config.video_timeout)
        try:
            chosen, mode, fallback = choose_clips(
                video["uri"], config.strategy, config.k, config.k_student, spec=self.clip,
                candidates=config.candidates, reach=config.keyframe_clips * self.clip.clip_len * self.clip.stride,
                seek=config.seek, scorer=self._score if self.student else None,
                batch_size=config.student_batch_size, rng=selection.video_rng(config.seed, video["video_id"]),
                skim_step=self.skim_step, limits=config.limits, storage=config.storage, stats=stats)
        except VideoDecodeError as error:
            return error_selection(row, error.reason, time.perf_counter() - started, stats, self.clip)
        finally:
            if self.attempts is not None:
                self.attempts.finish(video["video_id"])
        row.update(decode_columns(chosen.num_clips, chosen.duration_s, chosen.decode_s, stats, mode, fallback,
                                  chosen.clips))
        return selected(config, row, chosen)


class TeacherPredict:
    """Stage 2: the teacher on the selected clips of a batch of videos, merged into each video's label."""

    def __init__(self, config: LabelConfig, gpus: float) -> None:
        torch.set_num_threads(max(1, int(config.cpus_per_actor)))
        self.config = config
        self.teacher = LoadedModel(config.teacher, device_for(gpus), config.storage, config.inference)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist(self.predict(arrow_to_selections(batch)), schema=OUTPUT_SCHEMA)

    def predict(self, selections: list[Selection]) -> list[dict[str, Any]]:
        """The output rows of ``selections``: the teacher runs on all their clips in batches of
        ``teacher_batch_size`` and counts, per video, the clips it ran (``teacher_clips``)."""
        teacher = self.teacher.config
        ok = [s.teacher_frames for s in selections if s.ok]
        clips = sum(len(frames) for frames in ok)
        started = time.perf_counter()
        probs = self.teacher(np.concatenate(ok), self.config.teacher_batch_size)[0] if clips else None
        seconds_per_clip = (time.perf_counter() - started) / max(1, clips)
        rows, offset = [], 0
        for s in selections:
            if not s.ok:
                rows.append(s.row)
                continue
            count = len(s.teacher_frames)
            weights = s.teacher_confidence if self.config.weighting == "confidence" and count else None
            student_probs = s.student_probs.reshape(-1, teacher.num_classes)
            teacher_probs = probs[offset:offset + count] if count else np.empty((0, teacher.num_classes))
            offset += count
            rows.append({**s.row, **video_prediction(teacher_probs, student_probs, weights, teacher.class_names),
                         "teacher_clips": count, "teacher_s": count * seconds_per_clip})
        return rows


class ScoreSelectPredict:
    """Both stages in one actor, for clusters where both models run on CPU: one process (one torch import,
    about 0.6 GB) per actor instead of two, and the selections go from the student to the teacher in memory,
    not through Arrow and the object store. The rows are exactly those of the split stages."""

    def __init__(self, config: LabelConfig, clip: ClipSpec, models: dict[str, str | None],
                 attempts: Attempts | None = None) -> None:
        self.score_and_select = ScoreAndSelect(config, clip, models, attempts)
        self.teacher_predict = TeacherPredict(config, 0.0)

    def __call__(self, batch: pa.Table) -> pa.Table:
        videos = batch.select(["video_id", "uri"]).to_pylist()
        rows = self.teacher_predict.predict([self.score_and_select.select(v) for v in videos])
        return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)
