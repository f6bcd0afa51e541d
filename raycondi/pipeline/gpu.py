"""The GPU layout of the labelling job (``stages="gpu"``): CPU actors decode, one actor per GPU runs both models.

::

    map_batches(DecodeClips, CPU actors)               decode each video's candidate clips, uint8
      -> map_batches(GPUScoreSelectPredict, 1/GPU)     student on the candidates of several videos at once,
                                                       the sampler's rule per video, teacher on the K_t clips

Why this layout: on a GPU node the student on CPU actors is what binds (a 3D student scores tens of clips/s per
core, the GPU thousands), and a student on its own GPU actor beside the teacher's would ship every candidate clip
twice. Here the candidates cross the object store once, as uint8 (a quarter of float32), and are normalised on
the GPU (:func:`~raycondi.models.preprocess.model_input`); the student batches clips across the videos of a call
(``student_batch_size`` clips per pass, whatever their video), and the K_t clips the rule picks never leave the
GPU actor. Each model runs at the setting :func:`raycondi.models.tuning.tune` measured (``inference``).

The selection is :func:`raycondi.pipeline.topk.scored_selection`, the streaming heap's own ending, on the scores
:func:`raycondi.strategies.clip_scores` gives, so a video gets the row the fused and split layouts give it.

Memory: a video's candidates are held whole while it is in flight (O(N) clips, about 1 MB per 16-frame clip at
128x171; a 60 s video at 25 fps is about 100 MB), unlike the CPU layouts' O(K). For archives of long videos, use
``candidates="keyframes"`` (a few clips per GOP) or ``stages="split"``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from raycondi import strategies
from raycondi.pipeline.config import LabelConfig
from raycondi.pipeline.plans import CandidateClips, decode_candidates
from raycondi.pipeline.schema import OUTPUT_SCHEMA, STATUS_OK
from raycondi.pipeline.stages import (
    Attempts,
    LoadedModel,
    Selection,
    TeacherPredict,
    base_row,
    decode_columns,
    device_for,
    error_selection,
    pack_frames,
    selected,
    unpack_frames,
    used_up,
)
from raycondi.pipeline.topk import scored_selection
from raycondi.video.container import DecodeStats
from raycondi.video.decode import ClipSpec, VideoDecodeError

__all__ = ["CANDIDATE_SCHEMA", "DecodeClips", "GPUScoreSelectPredict"]

# The hand-off from DecodeClips to GPUScoreSelectPredict: the output columns known so far and the candidates.
CANDIDATE_SCHEMA = (
    OUTPUT_SCHEMA.append(pa.field("_frames", pa.large_binary()))  # uint8 (n, T, H, W, 3), C order
    .append(pa.field("_frames_shape", pa.list_(pa.int32(), 5)))
    .append(pa.field("_clips", pa.list_(pa.int64())))
    .append(pa.field("_starts", pa.list_(pa.float64())))
    .append(pa.field("_ends", pa.list_(pa.float64())))
)


class DecodeClips:
    """CPU stage of the GPU layout: per video, decode the sampler's candidate clips (every clip, or the keyframe
    candidates) at ``clip``, with ``decoder`` (``pyav``, or ``nvdec`` in actors given a share of a GPU). Input
    batches have ``video_id`` and ``uri``; decode failures become error rows (as in
    :class:`~raycondi.pipeline.stages.ScoreAndSelect`)."""

    def __init__(self, config: LabelConfig, clip: ClipSpec, models: dict[str, str | None],
                 decoder: str = "pyav", attempts: Attempts | None = None) -> None:
        torch.set_num_threads(1)  # decoding only: no model runs here
        self.config, self.clip, self.models, self.decoder = config, clip, models, decoder
        self.attempts = attempts

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.decode(v) for v in batch.select(["video_id", "uri"]).to_pylist()],
                                    schema=CANDIDATE_SCHEMA)

    def decode(self, video: dict[str, str]) -> dict[str, Any]:
        """One video's row: its decode columns and candidates, or its error row."""
        config = self.config
        row = base_row(config, video, self.models)
        if reason := used_up(config, video["video_id"], self.attempts):
            return error_selection(row, reason, 0.0, DecodeStats(), self.clip).row
        started, stats = time.perf_counter(), DecodeStats(timeout_s=config.video_timeout)
        try:
            found, mode, fallback = decode_candidates(
                video["uri"], spec=self.clip, candidates=config.candidates,
                reach=config.keyframe_clips * self.clip.clip_len * self.clip.stride, decoder=self.decoder,
                limits=config.limits, storage=config.storage, stats=stats)
        except VideoDecodeError as error:
            return error_selection(row, error.reason, time.perf_counter() - started, stats, self.clip).row
        finally:
            if self.attempts is not None:
                self.attempts.finish(video["video_id"])
        frames, shape = pack_frames(found.frames)
        return {**row, **decode_columns(found.num_clips, found.duration_s, found.decode_s, stats, mode, fallback,
                                        found.clips, found.decoder),
                "_frames": frames, "_frames_shape": shape, "_clips": found.clips.tolist(),
                "_starts": found.starts.tolist(), "_ends": found.ends.tolist()}


def arrow_to_candidates(table: pa.Table) -> list[tuple[dict[str, Any], CandidateClips | None]]:
    """DecodeClips' rows as (output columns so far, candidates; None on an error row)."""
    videos = []
    for row in table.to_pylist():
        data, shape = row.pop("_frames"), row.pop("_frames_shape")
        clips, starts, ends = row.pop("_clips"), row.pop("_starts"), row.pop("_ends")
        found = None
        if row["status"] == STATUS_OK:
            found = CandidateClips(row["num_clips"], np.asarray(clips, np.int64), np.asarray(starts),
                                   np.asarray(ends), unpack_frames(data, shape), row["duration_s"], row["decode_s"])
        videos.append((row, found))
    return videos


class GPUScoreSelectPredict:
    """GPU stage: the student on every candidate of a batch of videos, the sampler's rule per video, then the
    teacher (:class:`~raycondi.pipeline.stages.TeacherPredict`) on the chosen clips, both models on one device
    (``gpus`` > 0 and CUDA present: the GPU; else the CPU, as in CI)."""

    def __init__(self, config: LabelConfig, gpus: float) -> None:
        self.config = config
        self.teacher_predict = TeacherPredict(config, gpus)
        self.student = LoadedModel(config.student, device_for(gpus), config.storage, config.inference)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist(self.teacher_predict.predict(self.select(arrow_to_candidates(batch))),
                                    schema=OUTPUT_SCHEMA)

    def select(self, videos: list[tuple[dict[str, Any], CandidateClips | None]]) -> list[Selection]:
        """Each video's :class:`Selection`; the student's time is shared out by clip count."""
        config = self.config
        ok = [found for _, found in videos if found is not None]
        started = time.perf_counter()
        if ok:  # one run over every candidate of the batch: full batches across video boundaries
            probs, confidence = self.student([f.frames for f in ok], config.student_batch_size)
        seconds_per_clip = (time.perf_counter() - started) / max(1, sum(len(f.clips) for f in ok))
        selections, offset = [], 0
        for row, found in videos:
            if found is None:
                selections.append(Selection(row, np.empty(0, np.uint8), np.empty((0, 0), np.float32)))
                continue
            n = len(found.clips)
            p, z = probs[offset:offset + n], confidence[offset:offset + n]
            offset += n
            chosen = scored_selection(found.clips, found.starts, found.ends, p, z,
                                      strategies.clip_scores(config.strategy, p, z), config.k, config.k_student,
                                      lambda positions, frames=found.frames: frames[positions],
                                      decode_s=found.decode_s, student_s=n * seconds_per_clip)
            chosen = replace(chosen, num_clips=found.num_clips, duration_s=found.duration_s)  # keyframe candidates
            selections.append(selected(config, row, chosen))
        return selections
