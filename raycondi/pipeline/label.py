"""The labelling job: videos in object storage -> one Parquet row per video, the teacher seeing only K clips.

:func:`label` runs this Ray Data pipeline::

    from_arrow(videos to label)                      one row per video (video_id, uri); resume skips done ones
      -> map_batches(ScoreAndSelect, actor pool)     decode, score every clip with the student, keep K clips
      -> map_batches(TeacherPredict, actor pool)     teacher on the K_t clips, merge the student's K_s, label
      -> write_datasink(LabelSink)                   Parquet files under the output URI, counts to the driver

On a cluster without GPUs (``stages="auto"``, the default) the two actor stages run fused in one
:class:`ScoreSelectPredict` actor per CPU: both models in one process, and the K clips never leave it.

Stages
------
* :class:`ScoreAndSelect` (CPU actors by default, ``student_gpus`` to put them on GPUs) loads the student
  once and calls :func:`select_clips` per video: clips stream out of
  :func:`~raycondi.video.decode.iter_clips` at the checkpoint's ``clip_len``/``crop_size``, are scored in
  mini-batches of ``student_batch_size``, and only the K best clips' pixels are kept, in a heap keyed like
  :mod:`raycondi.selection`'s ranking (confidence, then lower index); per-clip scores are small and kept
  for every clip. When the video ends, :func:`raycondi.selection.split_indices` -- the evaluation's own
  rule -- picks the K_s student clips and the K_t teacher clips from the full score arrays; the heap
  provably holds the teacher clips (they are among the K most confident). A student trained with
  ``frame_step`` s > 1 makes the decode a *skim*: only every s-th frame of a clip is resized and converted
  for it, and a clip's other frames only when it enters the heap (:class:`~raycondi.video.decode.SkimClip`),
  so the conversions fall from N x T to about N x T / s plus the heap's entries. The row carries those K_t
  clips' pixels and the K_s clips' student probabilities to the next stage.
* :class:`TeacherPredict` (one actor per GPU when there are GPUs, CPU actors otherwise) runs the teacher
  on the K_t clips of a batch of videos at once, and :func:`video_prediction` merges them with the
  student's K_s predictions through :func:`raycondi.selection.aggregate` (Fig. 2c), giving the label and
  the top 5. It counts the clips it actually ran per video (``teacher_clips``).
* :class:`~raycondi.pipeline.sink.LabelSink` writes each write task's rows to one Parquet file with the
  schema of :mod:`raycondi.pipeline.schema`, atomically, and returns counts for the summary.

Sizing
------
:func:`plan_pools` reads the resources of the cluster's live nodes and chooses the actors; the plan is
logged (logger ``raycondi.label``), and recorded in the summary. With GPUs: one ``TeacherPredict`` actor per
GPU, and ``ScoreAndSelect`` actors on the CPUs the teachers leave, counted per node -- the CPU-only nodes
first, where Ray's scheduler puts actors that ask for no GPU (it avoids GPU nodes for them while CPU nodes
have room), then the GPU nodes' spare CPUs. Without GPUs: one fused actor per ``cpus_per_actor`` CPUs.
No pool is larger than the number of videos to label. Every number can be overridden.

Design notes
------------
* **Memory is O(K) per video**, whatever its length: the decoder holds at most two clips, the student at
  most ``student_batch_size`` (fewer when a skim batch's decoded pictures pass ``_PENDING_BYTES``), the heap
  K; only the K_t selected clips travel between stages. Clips are never fanned out as rows (no ``groupby``
  shuffle of pixels). The comparison strategies ``equidistant`` and ``random`` need N before they can
  choose, so they spool clips to a temporary file (memory up to ``_SPOOL_BYTES``, then the worker's disk);
  ``dense`` sends all N clips to the teacher and so holds all of them in its row: it costs O(N) memory, as
  it costs N teacher clips.
* **Failures are rows.** A :class:`~raycondi.video.decode.VideoDecodeError` (which covers unreadable and
  missing files; a video can fail after some clips were decoded and then fails as a whole) becomes a row
  with ``status="error"`` and the reason. Other exceptions are bugs and fail the job.
* **Actor death.** Ray Data starts pool actors with ``max_restarts=-1`` and ``max_task_retries=-1``
  (``ActorPoolMapOperator._apply_default_remote_args``; passing them to ``map_batches`` is deprecated in
  Ray 2.60): a dead actor is restarted, and the task it was running, whose output was never committed,
  is retried, so its videos are labelled once.
* **Resume without duplicates.** On start, :func:`labelled_ids` reads the ``video_id`` column of every
  output file and only the other videos enter the pipeline. A file is published whole: on S3 by a
  single PUT (or a multipart upload, which becomes visible only when complete), locally by writing
  ``.<name>.tmp`` and renaming it. Names are ``part-{run_id}-{write task index}.parquet``: a new run never
  overwrites an old file, and a retried write task replaces its own file with the same rows. So every
  video's row is either in exactly one published file or not there at all, and a rerun labels exactly
  the missing ones. (Two jobs running at once on the same output are not coordinated: don't.)
"""

from __future__ import annotations

import heapq
import json
import logging
import posixpath
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch

from raycondi import selection
from raycondi.datasets.manifests import ManifestError, detect_format, read_dataset
from raycondi.models.checkpoint import CONFIG_FILE, CheckpointConfig, for_inference, load_checkpoint
from raycondi.pipeline.schema import OUTPUT_SCHEMA, STATUS_ERROR, STATUS_OK
from raycondi.pipeline.sink import LabelError, LabelSink, labelled_ids
from raycondi.video.decode import Clip, ClipSpec, DecodeLimits, VideoDecodeError, iter_clips
from raycondi.video.storage import StorageError, StorageOptions, join, list_files, read_bytes, write_bytes

__all__ = [
    "STRATEGIES",
    "VIDEO_SUFFIXES",
    "LabelConfig",
    "LabelError",
    "LabelSink",
    "LabelSummary",
    "ScoreAndSelect",
    "SelectedClips",
    "TeacherPredict",
    "label_videos",
    "labelled_ids",
    "list_videos",
    "select_clips",
    "to_model_input",
    "video_prediction",
]

STRATEGIES: tuple[str, ...] = ("condi", "dense", "equidistant", "random")
VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp",
)
SUMMARY_FILE = "_summary.json"
STAGES = ("auto", "split", "fused")
_SPOOL_BYTES = 64 << 20
_PENDING_BYTES = 128 << 20  # a batch waiting for the student is scored early past this (skim clips hold pictures)
_TOP = 5

# Columns only carried from ScoreAndSelect to TeacherPredict.
_STAGE_SCHEMA = (
    OUTPUT_SCHEMA.append(pa.field("_frames", pa.large_binary()))  # the K_t teacher clips, uint8 (K_t, T, H, W, 3)
    .append(pa.field("_frames_shape", pa.list_(pa.int32())))
    .append(pa.field("_student_probs", pa.list_(pa.float32())))  # the K_s student clips' probabilities, flat
)

logger = logging.getLogger("raycondi.label")

Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Student on a (B, T, H, W, 3) uint8 batch -> (class probabilities (B, C), confidence z~ (B,))."""


@dataclass(frozen=True)
class LabelConfig:
    """Everything the labelling job needs; built once (by the CLI) and passed down.

    Attributes:
        input: a prefix (every file under it with a :data:`VIDEO_SUFFIXES` extension) or a dataset/manifest
            that :func:`~raycondi.datasets.manifests.read_dataset` reads (CSV/Parquet manifest, UCF-101 or
            Kinetics layout); local or ``s3://``.
        output: folder (local or ``s3://``) for the Parquet files and ``_summary.json``.
        teacher, student: checkpoint directories. The student is only run for ``strategy="condi"``.
        k, k_student: K clips per video, K_s of them labelled by the student alone (Fig. 2c).
        strategy: ``condi`` (student confidence, Fig. 2b/2c), or ``dense``/``equidistant``/``random`` (the
            teacher alone, to compare costs through the same job).
        weighting: how the teacher's K_t predictions are averaged (``selection.aggregate``): plain ``mean``
            or weighted by the student's ``confidence`` (condi only).
        seed: seeds ``random`` (per video, with its id, so a rerun picks the same clips).
        split: with a dataset input, label only this split (``train``/``val``/``test``); None labels all.
        stride: temporal step between sampled frames.
        student_batch_size: clips per student forward pass.
        teacher_batch_size: clips per teacher forward pass.
        videos_per_teacher_call: videos per TeacherPredict call (their clips are batched together).
        rows_per_file: videos gathered into one output file (smaller: less work redone after a crash).
        stages: ``split`` runs ScoreAndSelect and TeacherPredict in separate actor pools; ``fused`` runs both
            in one :class:`ScoreSelectPredict` actor (one process and one torch per actor instead of two,
            and the K clips stay in it: the memory-lean choice when both models run on CPU); ``auto`` fuses
            exactly when no stage has a GPU.
        student_actors, teacher_actors: actor pool sizes (``student_actors`` sizes the fused pool); None
            derives them from the cluster's resources (:func:`plan_pools`).
        student_gpus, teacher_gpus: GPUs per actor; ``teacher_gpus=None`` is 1 when the cluster has GPUs.
        cpus_per_actor: CPUs reserved by each actor (and its torch threads).
        limits, storage: decode limits and S3 settings.
    """

    input: str
    output: str
    teacher: str
    student: str | None = None
    k: int = 5
    k_student: int = 0
    strategy: Literal["condi", "dense", "equidistant", "random"] = "condi"
    weighting: Literal["mean", "confidence"] = "mean"
    seed: int = 0
    split: str | None = None
    stride: int = 1
    student_batch_size: int = 16
    teacher_batch_size: int = 32
    videos_per_teacher_call: int = 8
    rows_per_file: int = 256
    stages: Literal["auto", "split", "fused"] = "auto"
    student_actors: int | None = None
    teacher_actors: int | None = None
    student_gpus: float = 0.0
    teacher_gpus: float | None = None
    cpus_per_actor: float = 1.0
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    storage: StorageOptions | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.weighting not in ("mean", "confidence"):
            problems.append(f"weighting must be 'mean' or 'confidence', got {self.weighting!r}")
        if self.weighting == "confidence" and self.strategy != "condi":
            problems.append("weighting='confidence' needs strategy='condi' (the other strategies have no z~)")
        if self.k < 1:
            problems.append(f"k must be >= 1, got {self.k}")
        if not 0 <= self.k_student <= self.k:
            problems.append(f"k_student must be between 0 and k={self.k}, got {self.k_student}")
        if self.k_student and self.strategy != "condi":
            problems.append(f"k_student needs strategy='condi', got {self.strategy!r}")
        if self.strategy == "condi" and not self.student:
            problems.append("strategy='condi' needs a student checkpoint")
        if self.stages not in STAGES:
            problems.append(f"stages must be one of {', '.join(STAGES)}, got {self.stages!r}")
        if self.stages == "fused" and (self.student_gpus or self.teacher_gpus):
            problems.append("stages='fused' runs both models on CPU: it takes no student_gpus or teacher_gpus")
        if self.split not in (None, "train", "val", "test"):
            problems.append(f"split must be train, val or test, got {self.split!r}")
        for name in ("stride", "student_batch_size", "teacher_batch_size", "videos_per_teacher_call",
                     "rows_per_file"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("student_actors", "teacher_actors"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.student_gpus < 0 or (self.teacher_gpus or 0) < 0 or self.cpus_per_actor <= 0:
            problems.append("student_gpus and teacher_gpus must be >= 0, cpus_per_actor > 0")
        if problems:
            raise ValueError("invalid LabelConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class LabelSummary:
    """What a run did; printed by the CLI and written to ``{output}/_summary.json``.

    ``clips_scored``: clips the student scored (ok videos); ``clips_to_teacher``: clips the teacher ran on;
    ``dense_clips``: clips of the ok videos, i.e. what dense sampling would have sent to the teacher;
    ``teacher_share = clips_to_teacher / dense_clips``; ``plan``: the actors the run used (:class:`PoolPlan`).
    """

    run_id: str
    input: str
    output: str
    strategy: str
    k: int
    k_student: int
    videos_in_input: int
    videos_already_labelled: int
    videos_labelled: int
    videos_ok: int
    videos_error: int
    clips_scored: int
    clips_to_teacher: int
    dense_clips: int
    teacher_share: float | None
    seconds: float
    videos_per_second: float | None
    files: tuple[str, ...] = ()
    plan: str | None = None

    @property
    def nothing_labelled(self) -> bool:
        """True when there were videos to label and none of them came out ok (the CLI then exits 1)."""
        return self.videos_labelled > 0 and self.videos_ok == 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# --------------------------------------------------------------------------------------------------
# inputs and resume
# --------------------------------------------------------------------------------------------------
def list_videos(uri: str, storage: StorageOptions | None = None, *, split: str | None = None) -> pa.Table:
    """The videos to label as a table ``(video_id, uri)``, sorted by ``video_id``.

    A dataset (CSV/Parquet manifest, UCF-101 or Kinetics layout; :func:`detect_format`) gives its rows,
    filtered to ``split`` when given; missing files are not checked here, they become error rows.
    Anything else is a prefix: every file under it with a :data:`VIDEO_SUFFIXES` extension, ``video_id``
    being its path under the prefix without extension. Raises :class:`LabelError` naming ``uri`` when
    nothing can be listed or no video is found.
    """
    try:
        fmt = detect_format(uri, storage)
    except ManifestError as error:
        if uri.lower().endswith((".csv", ".parquet")):
            raise LabelError(uri, f"unusable manifest: {error}") from None
        fmt = None
    except StorageError as error:
        raise LabelError(uri, f"cannot read the input: {error.reason}") from None
    if fmt is not None:
        try:
            table = read_dataset(uri, fmt, storage, check_files=False)
        except (ManifestError, StorageError) as error:
            raise LabelError(uri, f"unusable {fmt} dataset: {error}") from None
        if split is not None:
            table = table.filter(pc.equal(table["split"], split))
        videos = table.select(["video_id", "uri"])
    else:
        try:
            files = list_files(uri, VIDEO_SUFFIXES, storage)
        except StorageError as error:
            raise LabelError(uri, f"cannot list the input prefix: {error.reason}") from None
        root = uri.rstrip("/") + "/"
        ids = [posixpath.splitext(f[len(root):] if f.startswith(root) else posixpath.basename(f))[0] for f in files]
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
        if duplicates:
            raise LabelError(uri, f"several files share a video id (same path, other extension): {duplicates[:5]}")
        videos = pa.table({"video_id": pa.array(ids, pa.string()), "uri": pa.array(files, pa.string())})
    if videos.num_rows == 0:
        what = f"in split {split!r}" if split else f"with an extension among {', '.join(VIDEO_SUFFIXES)}"
        raise LabelError(uri, f"no video found {what}")
    return videos.sort_by("video_id")


# --------------------------------------------------------------------------------------------------
# per-video logic (no Ray)
# --------------------------------------------------------------------------------------------------
def to_model_input(frames: np.ndarray, mean, std, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 clips ``(B, T, H, W, 3)`` -> float ``(B, 3, T, H, W)`` normalised as ``(x / 255 - mean) / std``.

    The pixels move to ``device`` as uint8 (4x less traffic) and are converted there.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 4, 1, 2, 3).float().div_(255)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    return (x - m) / s


@dataclass(frozen=True, eq=False)
class SelectedClips:
    """One video after :func:`select_clips`.

    ``starts``/``ends``/``confidence`` have one entry per clip (``confidence`` is empty when the student
    did not run); ``student_clips``/``teacher_clips`` are the chosen indices in rank order,
    ``student_probs`` ``(K_s, C)`` the student's probabilities on its clips, ``teacher_frames``
    ``(K_t, T, H, W, 3)`` the teacher clips' pixels; ``decode_s``/``student_s`` the time spent.
    """

    starts: np.ndarray
    ends: np.ndarray
    confidence: np.ndarray
    student_clips: np.ndarray
    student_probs: np.ndarray
    teacher_clips: np.ndarray
    teacher_frames: np.ndarray
    decode_s: float
    student_s: float

    @property
    def num_clips(self) -> int:
        return len(self.starts)

    @property
    def duration_s(self) -> float:
        return float(self.ends[-1] - self.starts[0])


def _timed(clips: Iterable[Clip], clock: list[float]) -> Iterator[Clip]:
    """``clips``, adding the time spent producing each one to ``clock[0]``."""
    iterator = iter(clips)
    while True:
        started = time.perf_counter()
        clip = next(iterator, None)
        clock[0] += time.perf_counter() - started
        if clip is None:
            return
        yield clip


def select_clips(
    clips: Iterable[Clip],
    strategy: str,
    k: int,
    k_student: int = 0,
    *,
    scorer: Scorer | None = None,
    batch_size: int = 16,
    rng: np.random.Generator | int = 0,
) -> SelectedClips:
    """Consume one video's clips (in index order) and choose the clips that will label it.

    ``condi``: every clip is scored by ``scorer`` in batches of ``batch_size``; the K clips with the
    highest confidence are kept in a heap (key ``(confidence, -index)``, the ranking of
    :mod:`raycondi.selection`), then :func:`raycondi.selection.split_indices` chooses the K_s student
    and K_t = K - K_s teacher clips from the full per-clip arrays. ``dense``, ``equidistant`` and
    ``random`` use :func:`numpy.arange`, :func:`~raycondi.selection.equidistant_indices` and
    :func:`~raycondi.selection.random_indices` (with ``rng``) and do not run the student.
    Raises whatever iterating ``clips`` raises (``VideoDecodeError``) and ``ValueError`` for no clips.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "condi" and scorer is None:
        raise ValueError("scorer: strategy 'condi' needs the student")
    decode_clock, student_s = [0.0], 0.0
    starts: list[float] = []
    ends: list[float] = []
    heap: list[tuple[float, int, np.ndarray]] = []  # min-heap: the worst kept clip at the root
    confidence: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    pending: list[Clip] = []
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) if strategy != "condi" else None
    clip_shape: tuple[int, ...] = ()

    def score_pending() -> None:
        nonlocal student_s
        started = time.perf_counter()
        batch_probs, batch_confidence = scorer(np.stack([c.frames for c in pending]))
        student_s += time.perf_counter() - started
        probs.append(np.asarray(batch_probs, np.float32))
        confidence.append(np.asarray(batch_confidence, np.float32))
        for clip, score in zip(pending, confidence[-1]):
            key = (float(score), -clip.index)  # indices are unique: frames are never compared
            if len(heap) < k or key > heap[0][:2]:
                started = time.perf_counter()
                item = (*key, clip.full())  # a skim clip's other frames are converted only now
                decode_clock[0] += time.perf_counter() - started
                (heapq.heappush if len(heap) < k else heapq.heapreplace)(heap, item)
        pending.clear()

    pending_bytes = 0
    try:
        for clip in _timed(clips, decode_clock):
            starts.append(clip.start_s)
            ends.append(clip.end_s)
            clip_shape = clip.full_shape
            if spool is not None:
                spool.write(clip.full().tobytes())
                continue
            pending.append(clip)
            pending_bytes += clip.held_bytes
            if len(pending) == batch_size or pending_bytes >= _PENDING_BYTES:
                score_pending()
                pending_bytes = 0
        if pending:
            score_pending()
        n = len(starts)
        if n == 0:
            raise ValueError("clips: the video has no clips")
        empty = np.empty(0, np.int64)
        if strategy == "condi":
            all_probs, all_confidence = np.concatenate(probs), np.concatenate(confidence)
            entropy = selection.predictive_entropy(all_probs)
            student_clips, teacher_clips = selection.split_indices(entropy, all_confidence, k, k_student)
            kept = {-negative_index: frames for _, negative_index, frames in heap}
            frames = [kept[i] for i in teacher_clips]  # the teacher's clips are among the K most confident
            return SelectedClips(
                np.array(starts), np.array(ends), all_confidence, student_clips, all_probs[student_clips],
                teacher_clips, _stack(frames, clip_shape), decode_clock[0], student_s,
            )
        if strategy == "dense":
            teacher_clips = np.arange(n, dtype=np.int64)
        elif strategy == "equidistant":
            teacher_clips = selection.equidistant_indices(n, k)
        else:
            teacher_clips = selection.random_indices(n, k, rng)
        frames = []
        size = int(np.prod(clip_shape))
        for index in teacher_clips:
            spool.seek(int(index) * size)
            frames.append(np.frombuffer(spool.read(size), np.uint8).reshape(clip_shape))
        return SelectedClips(
            np.array(starts), np.array(ends), np.empty(0, np.float32), empty, np.empty((0, 0), np.float32),
            teacher_clips, _stack(frames, clip_shape), decode_clock[0], 0.0,
        )
    finally:
        if spool is not None:
            spool.close()


def _stack(frames: list[np.ndarray], clip_shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(frames) if frames else np.empty((0, *clip_shape), np.uint8)


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


def _video_rng(seed: int, video_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(video_id.encode())])


# --------------------------------------------------------------------------------------------------
# Ray Data stages
# --------------------------------------------------------------------------------------------------
def _device(gpus: float) -> str:
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


class ScoreAndSelect:
    """Stage 1: per video, decode, score with the student, keep the K clips the rules choose.

    Input batches have ``video_id`` and ``uri``; output rows have the output columns known so far plus
    the teacher clips' pixels. Decode failures become error rows.
    """

    def __init__(self, config: LabelConfig, clip: ClipSpec, models: dict[str, str | None]) -> None:
        torch.set_num_threads(max(1, int(config.cpus_per_actor)))
        self.config, self.clip, self.models = config, clip, models
        self.device = _device(config.student_gpus)
        self.scorer: Scorer | None = None
        self.skim_step = 1
        if config.strategy == "condi":
            model, checkpoint = load_checkpoint(config.student, map_location=self.device, storage=config.storage)
            self.model, self.mean, self.std = for_inference(model, self.device), checkpoint.mean, checkpoint.std
            self.scorer, self.skim_step = self._score, checkpoint.frame_step

    def _score(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            logits, confidence_logit = self.model(to_model_input(frames, self.mean, self.std, self.device))
            return logits.float().softmax(1).cpu().numpy(), confidence_logit.float().sigmoid().cpu().numpy()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return pa.Table.from_pylist([self.video_row(v) for v in batch.to_pylist()], schema=_STAGE_SCHEMA)

    def video_row(self, video: dict[str, str]) -> dict[str, Any]:
        config = self.config
        base = {"video_id": video["video_id"], "uri": video["uri"], "strategy": config.strategy, "k": config.k,
                "k_student": config.k_student, "teacher_clips": 0, **self.models}
        started = time.perf_counter()
        clips = iter_clips(video["uri"], self.clip.clip_len, self.clip.size, self.clip.stride,
                           skim_step=self.skim_step, limits=config.limits, storage=config.storage)
        try:
            chosen = select_clips(clips, config.strategy, config.k, config.k_student, scorer=self.scorer,
                                  batch_size=config.student_batch_size, rng=_video_rng(config.seed, video["video_id"]))
        except VideoDecodeError as error:
            return {**base, "status": STATUS_ERROR, "error": error.reason, "decode_s": time.perf_counter() - started}
        order = np.concatenate([chosen.student_clips, chosen.teacher_clips])
        by = ["student"] * len(chosen.student_clips) + ["teacher"] * len(chosen.teacher_clips)
        return {
            **base,
            "status": STATUS_OK,
            "num_clips": chosen.num_clips,
            "duration_s": chosen.duration_s,
            "k": chosen.num_clips if config.strategy == "dense" else config.k,
            "selected_clips": order.tolist(),
            "selected_start_s": chosen.starts[order].tolist(),
            "selected_end_s": chosen.ends[order].tolist(),
            "selected_confidence": chosen.confidence[order].tolist() if chosen.confidence.size else None,
            "selected_by": by,
            "clip_confidence": chosen.confidence.tolist(),
            "decode_s": chosen.decode_s,
            "student_s": chosen.student_s,
            "_frames": chosen.teacher_frames.tobytes(),
            "_frames_shape": list(chosen.teacher_frames.shape),
            "_student_probs": chosen.student_probs.ravel().tolist(),
        }


class TeacherPredict:
    """Stage 2: the teacher on the selected clips of a batch of videos, merged into each video's label."""

    def __init__(self, config: LabelConfig, gpus: float) -> None:
        torch.set_num_threads(max(1, int(config.cpus_per_actor)))
        self.config = config
        self.device = _device(gpus)
        model, self.checkpoint = load_checkpoint(config.teacher, map_location=self.device, storage=config.storage)
        self.model = for_inference(model, self.device)

    def _probs(self, frames: np.ndarray) -> np.ndarray:
        """Teacher probabilities ``(n, C)`` for ``n`` whole clips, in forward passes of ``teacher_batch_size``;
        a teacher with ``frame_step`` s > 1 sees every s-th frame of each, as in training."""
        out = [np.empty((0, self.checkpoint.num_classes), np.float32)]
        step, frame_step = self.config.teacher_batch_size, self.checkpoint.frame_step
        with torch.inference_mode():
            for i in range(0, len(frames), step):
                x = to_model_input(frames[i:i + step, ::frame_step], self.checkpoint.mean, self.checkpoint.std,
                                   self.device)
                out.append(self.model(x).float().softmax(1).cpu().numpy())
        return np.concatenate(out)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        ok = [r for r in rows if r["status"] == STATUS_OK]
        frames = [np.frombuffer(r["_frames"], np.uint8).reshape(r["_frames_shape"]) for r in ok]
        counts = [len(f) for f in frames]
        started = time.perf_counter()
        probs = self._probs(np.concatenate(frames)) if sum(counts) else np.empty((0, 0), np.float32)
        seconds_per_clip = (time.perf_counter() - started) / max(1, sum(counts))
        classes, offset = self.checkpoint.num_classes, 0
        for row, count in zip(ok, counts):
            teacher_probs = probs[offset:offset + count].reshape(count, classes)
            offset += count
            student_probs = np.asarray(row["_student_probs"], np.float32).reshape(-1, classes)
            weights = None
            if self.config.weighting == "confidence" and count:
                weights = np.asarray(row["selected_confidence"][len(student_probs):], np.float64)
            row.update(video_prediction(teacher_probs, student_probs, weights, self.checkpoint.class_names))
            row["teacher_clips"] = count
            row["teacher_s"] = count * seconds_per_clip
        return pa.Table.from_pylist(rows, schema=_STAGE_SCHEMA).select(OUTPUT_SCHEMA.names)


class ScoreSelectPredict:
    """Both stages in one actor, for clusters where both models run on CPU: one process (one torch import,
    about 0.6 GB) per actor instead of two, and the selected clips go from the student to the teacher in
    memory instead of through the object store. The rows are exactly those of the split stages."""

    def __init__(self, config: LabelConfig, clip: ClipSpec, models: dict[str, str | None]) -> None:
        self.score_and_select = ScoreAndSelect(config, clip, models)
        self.teacher_predict = TeacherPredict(config, 0.0)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.teacher_predict(self.score_and_select(batch))


# --------------------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------------------
def _checkpoint_config(uri: str, storage: StorageOptions | None) -> CheckpointConfig:
    config_uri = join(uri, CONFIG_FILE)
    try:
        return CheckpointConfig.from_json(read_bytes(config_uri, storage).decode())
    except StorageError as error:
        raise LabelError(config_uri, f"cannot read the checkpoint config: {error.reason}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise LabelError(config_uri, f"not a raycondi checkpoint config: {error}") from None


def _clip_spec(config: LabelConfig) -> tuple[ClipSpec, dict[str, str | None]]:
    """The clip geometry both models take, and the model identifier columns; LabelError when they disagree."""
    teacher = _checkpoint_config(config.teacher, config.storage)
    if teacher.student:
        raise LabelError(config.teacher, "is a two-headed student checkpoint; --teacher needs a plain classifier")
    models = {"teacher_model": config.teacher, "teacher_architecture": teacher.architecture,
              "student_model": None, "student_architecture": None}
    if config.strategy == "condi":
        student = _checkpoint_config(config.student, config.storage)
        if not student.student:
            raise LabelError(config.student, "is not a two-headed student checkpoint (no confidence head)")
        for name in ("num_classes", "class_names", "clip_len", "crop_size"):
            if getattr(student, name) != getattr(teacher, name):
                raise LabelError(config.student, f"{name} {getattr(student, name)!r} differs from the teacher's "
                                                 f"{getattr(teacher, name)!r} ({config.teacher})")
        models.update(student_model=config.student, student_architecture=student.architecture)
    return ClipSpec(teacher.clip_len, teacher.crop_size, config.stride), models


@dataclass(frozen=True)
class PoolPlan:
    """The actors a run uses: ``student_actors`` ScoreAndSelect (or fused ScoreSelectPredict) actors and
    ``teacher_actors`` TeacherPredict actors (0 when fused), with their GPUs each."""

    fused: bool
    student_actors: int
    teacher_actors: int
    student_gpus: float
    teacher_gpus: float
    cpus_per_actor: float
    basis: str

    def describe(self) -> str:
        def each(gpus: float) -> str:
            return f"{self.cpus_per_actor:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")

        if self.fused:
            pools = f"{self.student_actors} ScoreSelectPredict actor(s) x {each(0)} (stages fused)"
        else:
            pools = (f"{self.student_actors} ScoreAndSelect actor(s) x {each(self.student_gpus)}, "
                     f"{self.teacher_actors} TeacherPredict actor(s) x {each(self.teacher_gpus)}")
        return f"{pools}; {self.basis}"


def plan_pools(config: LabelConfig, nodes: list[dict[str, float]], videos: int) -> PoolPlan:
    """Size the actor pools from the live nodes' resources (``ray.nodes()[i]["Resources"]``); see "Sizing"."""
    nodes = [node for node in nodes if node.get("CPU", 0) or node.get("GPU", 0)]  # not a head that only schedules
    gpus = sum(node.get("GPU", 0) for node in nodes)
    cpu_nodes = [node.get("CPU", 0) for node in nodes if not node.get("GPU", 0)]
    gpu_nodes = [node.get("CPU", 0) for node in nodes if node.get("GPU", 0)]
    basis = (f"cluster: {len(cpu_nodes)} CPU node(s) with {sum(cpu_nodes):g} CPUs, "
             f"{len(gpu_nodes)} GPU node(s) with {gpus:g} GPUs and {sum(gpu_nodes):g} CPUs; {videos} video(s)")
    per_actor = config.cpus_per_actor
    teacher_gpus = config.teacher_gpus if config.teacher_gpus is not None else (1.0 if gpus else 0.0)
    fused = config.stages == "fused" or (config.stages == "auto" and not teacher_gpus and not config.student_gpus)
    if fused:
        actors = config.student_actors or int(sum(cpu_nodes + gpu_nodes) // per_actor)
        return PoolPlan(True, max(1, min(actors, videos)), 0, 0.0, 0.0, per_actor, basis)
    teachers = config.teacher_actors or (int(gpus // teacher_gpus) if teacher_gpus else 1)
    teachers = max(1, min(teachers, videos))
    if config.student_actors:
        students = config.student_actors
    elif config.student_gpus:
        students = int(max(0.0, gpus - teachers * teacher_gpus) // config.student_gpus)
    else:  # CPU-only nodes whole; on GPU nodes what the teachers leave (a CPU-only cluster: the teachers' CPUs)
        spare = sum(cpu_nodes) + sum(gpu_nodes) - teachers * per_actor
        students = int(max(0.0, spare) // per_actor)
    return PoolPlan(False, max(1, min(students, videos)), teachers, config.student_gpus, teacher_gpus, per_actor,
                    basis)


def _actor_pool(size: int) -> ray.data.ActorPoolStrategy:
    return ray.data.ActorPoolStrategy(min_size=1, max_size=size, initial_size=size)


def label_videos(config: LabelConfig, *, run_id: str | None = None) -> LabelSummary:
    """Label every video of ``config.input`` that has no row under ``config.output`` yet; see the module doc.

    Starts Ray when it is not running. Raises :class:`LabelError` (naming the URI) for unusable inputs,
    output or checkpoints, before any video is decoded. Writes the summary to ``{output}/_summary.json``.
    """
    started = time.perf_counter()
    run_id = run_id or uuid.uuid4().hex[:12]
    clip, models = _clip_spec(config)
    videos = list_videos(config.input, config.storage, split=config.split)
    done = labelled_ids(config.output, config.storage)
    todo = videos.filter(pc.invert(pc.is_in(videos["video_id"], pa.array(sorted(done), pa.string()))))
    sink = LabelSink(config.output, run_id, config.rows_per_file, config.storage)
    plan = None
    if todo.num_rows:
        if not ray.is_initialized():
            ray.init()
        plan = plan_pools(config, [n["Resources"] for n in ray.nodes() if n["Alive"]], todo.num_rows)
        logger.info("labelling %d video(s) with %s", todo.num_rows, plan.describe())
        # One block per video (up to a bound): balances videos of very different lengths across actors.
        blocks = [todo.slice(i, 1) for i in range(todo.num_rows)] if todo.num_rows <= 10_000 else [todo]
        rows = ray.data.from_arrow(blocks)
        if plan.fused:
            rows = rows.map_batches(
                ScoreSelectPredict, fn_constructor_args=(config, clip, models), batch_size=1,
                batch_format="pyarrow", compute=_actor_pool(plan.student_actors), num_cpus=plan.cpus_per_actor)
        else:
            rows = rows.map_batches(
                ScoreAndSelect, fn_constructor_args=(config, clip, models), batch_size=1, batch_format="pyarrow",
                compute=_actor_pool(plan.student_actors), num_cpus=plan.cpus_per_actor,
                num_gpus=plan.student_gpus or None,
            ).map_batches(
                TeacherPredict, fn_constructor_args=(config, plan.teacher_gpus),
                batch_size=config.videos_per_teacher_call, batch_format="pyarrow",
                compute=_actor_pool(plan.teacher_actors), num_cpus=plan.cpus_per_actor,
                num_gpus=plan.teacher_gpus or None,
            )
        rows.write_datasink(sink, ray_remote_args={"num_cpus": 0})  # tiny rows: never wait for a CPU
    seconds = time.perf_counter() - started
    counts = sink.counts
    labelled = counts.get("videos_ok", 0) + counts.get("videos_error", 0)
    dense = counts.get("dense_clips", 0)
    summary = LabelSummary(
        run_id=run_id, input=config.input, output=config.output, strategy=config.strategy, k=config.k,
        k_student=config.k_student, videos_in_input=videos.num_rows,
        videos_already_labelled=videos.num_rows - todo.num_rows, videos_labelled=labelled,
        videos_ok=counts.get("videos_ok", 0), videos_error=counts.get("videos_error", 0),
        clips_scored=counts.get("clips_scored", 0), clips_to_teacher=counts.get("clips_to_teacher", 0),
        dense_clips=dense, teacher_share=counts.get("clips_to_teacher", 0) / dense if dense else None,
        seconds=seconds, videos_per_second=labelled / seconds if labelled else None, files=tuple(sink.files),
        plan=plan.describe() if plan else None,
    )
    write_bytes(join(config.output, SUMMARY_FILE), summary.to_json().encode(), config.storage)
    return summary
