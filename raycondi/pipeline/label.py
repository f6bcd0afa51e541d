"""The labelling job: videos in object storage -> one Parquet row per video, the teacher seeing only K clips.

:func:`label_videos` checks the checkpoints and lists the input on the driver, then runs this Ray Data
pipeline::

    from_arrow(videos to label)                      one row per video (video_id, uri); resume skips done ones
      -> map_batches(ScoreAndSelect, actor pool)     decode, score every clip with the student, keep K clips
      -> map_batches(TeacherPredict, actor pool)     teacher on the K_t clips, merge the student's K_s, label
      -> write_datasink(LabelSink)                   Parquet files under the output URI, counts to the driver

On a cluster without GPUs (``stages="auto"``, the default) the two actor stages run fused in one
``ScoreSelectPredict`` actor per CPU: both models in one process, and the K clips never leave it. On a cluster
with GPUs the samplers run in the GPU layout (:mod:`~raycondi.pipeline.gpu`): ``DecodeClips`` actors on the CPUs,
then one ``GPUScoreSelectPredict`` actor per GPU running the student and the teacher.

The parts, one job each:

==============================  ===================================================================
:mod:`~raycondi.pipeline.config`   :class:`LabelConfig` and :class:`LabelSummary`
:mod:`~raycondi.pipeline.inputs`   :func:`list_videos`: a prefix or a dataset -> ``(video_id, uri)``
:mod:`~raycondi.pipeline.checks`   :func:`check_label_run`: the driver's checks, before Ray starts
:mod:`~raycondi.pipeline.topk`     the samplers' streaming top-K heap (memory O(K))
:mod:`~raycondi.pipeline.spool`    the teacher-only strategies, which need N before they choose
:mod:`~raycondi.pipeline.stages`   the per-video logic and the three CPU-layout actor classes
:mod:`~raycondi.pipeline.gpu`      the GPU layout's two actor classes
:mod:`~raycondi.pipeline.plan`     actor pool sizes from the cluster's nodes
:mod:`~raycondi.pipeline.sink`     atomic Parquet files and the resume check
this module                        the Ray wiring and the summary
==============================  ===================================================================

Design notes
------------
* **One picture per clip.** Both models see exactly what training and ``evaluate`` fed them: the video is
  decoded at the checkpoints' recorded ``resize`` (what ``prepare --size`` did to the shards), and each
  model takes its own centre crop, frame step and normalisation through
  :func:`raycondi.models.preprocess.model_input`. One decode serves both models, so the teacher and the
  student must agree on ``clip_len`` and ``resize`` (and on the classes); they may differ in ``crop_size``,
  ``frame_step``, ``mean`` and ``std``. :func:`check_models` refuses anything else before Ray starts.
* **The evaluation's rules.** Clips are chosen by the rule :mod:`raycondi.strategies` gives the strategy,
  through the same :mod:`raycondi.selection` functions the evaluation calls (and its per-video random
  generator), so a run labels each video as ``evaluate``'s row of that strategy counted it.
* **Memory is O(K) per video** in the CPU layouts, whatever its length: the decoder holds at most two clips,
  the student at most ``student_batch_size``, the heap K; only the K_t selected clips travel between stages.
  Clips are never fanned out as rows (no ``groupby`` shuffle of pixels). ``dense`` sends all N clips to the
  teacher and so holds all of them in its row: it costs O(N) memory, as it costs N teacher clips. The GPU
  layout holds a video's candidates while it is in flight (:mod:`~raycondi.pipeline.gpu`).
* **Failures are rows.** A :class:`~raycondi.video.decode.VideoDecodeError` (which covers unreadable and
  missing files; a video can fail after some clips were decoded and then fails as a whole) becomes a row
  with ``status="error"`` and the reason. Other exceptions are bugs and fail the job.
* **Actor death.** Ray Data starts pool actors with ``max_restarts=-1`` and ``max_task_retries=-1``
  (``ActorPoolMapOperator._apply_default_remote_args``; passing them to ``map_batches`` is deprecated in
  Ray 2.60): a dead actor is restarted, and the task it was running, whose output was never committed,
  is retried, so its videos are labelled once. Without limit, though: a video whose decode kills its process
  would be retried forever. So the decoding stage records every start and end of a video's decode in a run-wide
  actor (:class:`RunAttempts`) and, once ``max_video_attempts`` starts never ended, writes its error row instead
  of decoding it again. (A death in the teacher stages of the split and GPU layouts is retried as Ray retries
  it.) A decode slower than ``video_timeout`` fails as a decode error does.
* **Resume without duplicates.** On start, :func:`~raycondi.pipeline.checks.check_label_run` reads the
  ``video_id`` column of every output file (with the columns that must match this run's settings) and only the
  other videos enter the pipeline. A file is published whole: on S3 by a
  single PUT (or a multipart upload, which becomes visible only when complete), locally by writing
  ``.<name>.tmp`` and renaming it. Names are ``part-{run_id}-{write task index}.parquet``: a new run never
  overwrites an old file, and a retried write task replaces its own file with the same rows. So every
  video's row is either in exactly one published file or not there at all, and a rerun labels exactly
  the missing ones. (Two jobs running at once on the same output are not coordinated: don't.)
"""

from __future__ import annotations

import collections
import logging
import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raycondi.pipeline.checks import check_label_run, check_models
from raycondi.pipeline.config import SUMMARY_FILE, LabelConfig, LabelSummary
from raycondi.pipeline.gpu import DecodeClips, GPUScoreSelectPredict
from raycondi.pipeline.plan import plan_pools
from raycondi.pipeline.sink import LabelSink
from raycondi.pipeline.stages import ScoreAndSelect, ScoreSelectPredict, TeacherPredict
from raycondi.video.storage import join, write_bytes

__all__ = ["RunAttempts", "check_models", "label_videos", "video_blocks"]

logger = logging.getLogger("raycondi.label")


def _actor_pool(size: int) -> ray.data.ActorPoolStrategy:
    return ray.data.ActorPoolStrategy(min_size=1, max_size=size, initial_size=size)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class _AttemptLog:
    """Each video's decodes started in this run and not finished, across every actor and restart. Restarted
    (with its node), it starts again from nothing: the limit then only comes later."""

    def __init__(self) -> None:
        self.unfinished: collections.Counter[str] = collections.Counter()

    def begin(self, video_id: str) -> int:
        died = self.unfinished[video_id]
        self.unfinished[video_id] += 1
        return died

    def finish(self, video_id: str) -> None:
        self.unfinished[video_id] = max(0, self.unfinished[video_id] - 1)


class RunAttempts:
    """The stages' :class:`~raycondi.pipeline.stages.Attempts`: two calls per video to the run's log actor, which
    runs on the driver's node and lives as long as the driver."""

    def __init__(self) -> None:
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self._log = _AttemptLog.options(scheduling_strategy=here).remote()

    def begin(self, video_id: str) -> int:
        return ray.get(self._log.begin.remote(video_id))

    def finish(self, video_id: str) -> None:
        ray.get(self._log.finish.remote(video_id))


def video_blocks(videos: pa.Table, max_blocks: int = 10_000) -> list[pa.Table]:
    """The videos as Ray Data blocks: one per video, which balances videos of very different lengths across
    actors, and past ``max_blocks`` videos (the metadata of a block per video costs the driver) as few videos
    per block as keeps them at most ``max_blocks``."""
    per_block = max(1, -(-videos.num_rows // max_blocks))
    return [videos.slice(i, per_block) for i in range(0, videos.num_rows, per_block)]


def label_videos(config: LabelConfig, *, run_id: str | None = None) -> LabelSummary:
    """Label every video of ``config.input`` that has no row under ``config.output`` yet; see the module doc.

    Starts Ray when it is not running, after the driver's checks (:func:`~raycondi.pipeline.checks.check_label_run`),
    which raise ``ValueError`` (:class:`LabelError`) or ``StorageError`` naming the option for unusable inputs,
    output, checkpoints or endpoint. Writes the summary to ``{output}/_summary.json``.
    """
    started = time.perf_counter()
    run_id = run_id or uuid.uuid4().hex[:12]
    clip, models, videos, done = check_label_run(config)  # before Ray: one line naming the option per problem
    todo = videos.filter(pc.invert(pc.is_in(videos["video_id"], pa.array(sorted(done), pa.string()))))
    sink = LabelSink(config.output, run_id, config.rows_per_file, config.storage)
    plan = None
    if todo.num_rows:
        if not ray.is_initialized():
            ray.init()
        plan = plan_pools(config, [n["Resources"] for n in ray.nodes() if n["Alive"]], todo.num_rows)
        logger.info("labelling %d video(s) with %s", todo.num_rows, plan.describe())
        rows = ray.data.from_arrow(video_blocks(todo))
        attempts = RunAttempts()
        if plan.stages == "fused":
            rows = rows.map_batches(
                ScoreSelectPredict, fn_constructor_args=(config, clip, models, attempts), batch_size=1,
                batch_format="pyarrow", compute=_actor_pool(plan.student_actors), num_cpus=plan.cpus_per_actor)
        else:
            first, second = (DecodeClips, GPUScoreSelectPredict) if plan.stages == "gpu" else \
                (ScoreAndSelect, TeacherPredict)
            first_args = (config, clip, models, plan.decoder, attempts) if plan.stages == "gpu" else \
                (config, clip, models, attempts)
            rows = rows.map_batches(
                first, fn_constructor_args=first_args, batch_size=1, batch_format="pyarrow",
                compute=_actor_pool(plan.student_actors), num_cpus=plan.cpus_per_actor,
                num_gpus=plan.student_gpus or None,
            ).map_batches(
                second, fn_constructor_args=(config, plan.teacher_gpus),
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
