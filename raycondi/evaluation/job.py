"""``raycondi evaluate``: the teacher and every student over a split's clips once, then the paper's tables.

:func:`evaluate` runs, top to bottom:

1. check the inputs (shards' ``dataset.json``, checkpoints that fit them) before any model runs;
2. :func:`~raycondi.evaluation.inference.predict_clips`: per-clip outputs and per-model seconds (Ray Data);
3. the per-clip costs (:class:`~raycondi.evaluation.timing.ClipCosts`): the models' measured seconds per
   clip, and decode seconds per clip timed on the split's source videos (or given), also at the frame step
   of each student that skims;
4. every selection rule per video (:mod:`raycondi.evaluation.tables`) and the files of
   :mod:`raycondi.evaluation.report` into ``out``:

=====================  ========================================================================
file                   content
=====================  ========================================================================
clip_outputs.parquet   the per-clip table (probabilities, z̃, seconds per model)
accuracy.csv/.md       Table III: video accuracy per strategy and K, Dense
timing.csv, table_iv.md  Table IV: timing-model seconds per video and accuracy
ks_sweep.csv, table_v.md Table V: condi_sr with K_s = 0..K (only with a condi_sr student)
ambiguity.csv          AUROC of each sampler's score for z (Eq. 1) and for ground-truth clean clips
costs.json             per-clip costs and where they come from
accuracy_vs_k.png, accuracy_vs_time.png, report.md
=====================  ========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray

from raycondi.evaluation import report
from raycondi.evaluation.inference import measure_plan_seconds, predict_clips, read_ground_truth
from raycondi.evaluation.tables import ambiguity_rows, group_videos, ks_sweep, results, strategies_for
from raycondi.evaluation.timing import ClipCosts
from raycondi.models.checkpoint import CheckpointConfig
from raycondi.pipeline.checks import check_builds, check_folder, read_checkpoint
from raycondi.strategies import CANDIDATES, KEYFRAME_CLIPS, METHODS, get
from raycondi.train.preflight import check_classes, reachable, read_shards
from raycondi.video.decode import ClipSpec, frame_size
from raycondi.video.storage import (
    StorageOptions,
    UriError,
    exists,
    join,
    open_output,
    resolve,
    write_bytes,
)

__all__ = ["EvaluateConfig", "EvaluationError", "EvaluationSummary", "evaluate"]


class EvaluationError(UriError):
    """An input the evaluation cannot use. ``str()`` = f"{uri}: {reason}" (``uri``: a URI or an option)."""


@dataclass(frozen=True)
class EvaluateConfig:
    """An evaluation run.

    Attributes:
        clips: clip shards from ``raycondi prepare``; ``split`` is evaluated.
        teacher: teacher checkpoint; students: ``{method: checkpoint}`` with distillation methods of
            :data:`raycondi.strategies.METHODS`.
        out: output folder (local or ``s3://``).
        ks: the K of the tables. seeds: Random's seeds (paper: three runs).
        ground_truth: a ``ground_truth.parquet``; None looks for one in the dataset folder recorded in the
            shards' ``dataset.json`` (the synthetic benchmark writes it) and goes without when absent.
        decode_seconds: seconds to decode one clip; None times decoding ``decode_videos`` of the split's
            source videos (the labelling job decodes every clip at the teacher's clip length and resize).
        max_prob_student: the student whose class head MaxProb uses; None: condi_sr, else the first given.
        seek: price Equidistant and Random as the labelling job runs them by default, seeking to their clips
            (timed on the source videos at the largest K); False prices them as decoding every clip
            (``label --no-seek``).
        candidates, keyframe_clips: ``keyframes`` makes the samplers rank only the keyframe candidates, as
            ``label --candidates keyframes --keyframe-clips M`` does (from the shards' ``keyframe_offset``), and
            prices them as decoding those; ``clips`` (default): every clip, the paper's.
        actors, gpu, batch_size: the inference actor pool, one GPU per actor, clips per batch.
    """

    clips: str
    teacher: str
    students: Mapping[str, str]
    out: str
    ks: tuple[int, ...] = (1, 3, 5, 7)
    split: str = "test"
    ground_truth: str | None = None
    decode_seconds: float | None = None
    decode_videos: int = 4
    max_prob_student: str | None = None
    seek: bool = True
    candidates: str = "clips"
    keyframe_clips: int = KEYFRAME_CLIPS
    seeds: tuple[int, ...] = (0, 1, 2)
    actors: int = 1
    gpu: bool = False
    batch_size: int = 32
    storage: StorageOptions | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "students", dict(self.students))
        object.__setattr__(self, "ks", tuple(sorted(set(self.ks))))
        if self.max_prob_student is None and self.students:
            default = "condi_sr" if "condi_sr" in self.students else next(iter(self.students))
            object.__setattr__(self, "max_prob_student", default)
        problems = [f"--student {m}={uri}: unknown student method {m!r}; use one of {', '.join(METHODS)}"
                    for m, uri in self.students.items() if m not in METHODS]
        if not self.ks or min(self.ks) < 1:
            problems.append(f"--k {','.join(map(str, self.ks))}: expected positive integers (clips per video)")
        if self.split not in ("train", "val", "test"):
            problems.append(f"--split {self.split}: expected train, val or test")
        if self.max_prob_student is not None and self.max_prob_student not in self.students:
            problems.append(f"--max-prob-student {self.max_prob_student}: not among the students given "
                            f"({', '.join(self.students) or 'none'}); give it with --student "
                            f"{self.max_prob_student}=CHECKPOINT")
        if self.decode_seconds is not None and self.decode_seconds < 0:
            problems.append(f"--decode-seconds {self.decode_seconds:g}: must be >= 0")
        if self.candidates not in CANDIDATES:
            problems.append(f"--candidates {self.candidates}: expected one of {', '.join(CANDIDATES)}")
        if self.keyframe_clips < 1:
            problems.append(f"--keyframe-clips {self.keyframe_clips}: must be >= 1")
        for option, value in (("--actors", self.actors), ("--batch-size", self.batch_size),
                              ("--decode-videos", self.decode_videos)):
            if value < 1:
                problems.append(f"{option} {value}: must be >= 1")
        if not self.seeds:
            problems.append("seeds: must not be empty")
        if problems:
            raise ValueError("invalid EvaluateConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class EvaluationSummary:
    """What :func:`evaluate` wrote: ``files`` under ``out``, the videos and clips evaluated, the costs, and
    Table III as Markdown (the CLI prints it)."""

    out: str
    videos: int
    clips: int
    costs: ClipCosts
    files: tuple[str, ...]
    table_iii: str
    notes: tuple[str, ...] = field(default_factory=tuple)


def _check_models(config: EvaluateConfig) -> tuple[CheckpointConfig, str, ClipSpec, dict[str, int]]:
    """The teacher's config, the shards' dataset folder and clip spec, and each student's ``frame_step``;
    ``ValueError`` or :class:`EvaluationError`, one line naming the option, when something does not fit.

    Every model's resize must be the shards' (``prepare --size``): ``label`` decodes at the checkpoint's
    resize, so evaluating on shards of another size would report the accuracy of other pictures."""
    reachable((config.clips, config.teacher, *config.students.values(), config.out, config.ground_truth),
              config.storage)
    summary = read_shards(config.clips, config.storage)
    if not summary.videos.get(config.split):
        present = ", ".join(f"{split} ({n} videos)" for split, n in summary.videos.items() if n) or "none"
        raise EvaluationError(f"--split {config.split}", f"the shards have no {config.split} videos "
                                                         f"({config.clips}); evaluate a split they have: {present}")
    check_folder("--out", config.out, config.storage)
    if config.ground_truth is not None and not exists(config.ground_truth, config.storage):
        raise EvaluationError(f"--ground-truth {config.ground_truth}", "no such file; give a ground_truth.parquet, "
                                                                       "or leave it out")
    if config.decode_seconds is None and not exists(summary.dataset, config.storage):
        raise EvaluationError(f"--clips {config.clips}", f"its source videos ({summary.dataset}) are gone, and "
                                                         "decoding is timed on them; give --decode-seconds (e.g. a "
                                                         "label run's decode_s / num_clips)")
    loaded = {}
    for name, uri in {"teacher": config.teacher, **config.students}.items():
        option, sep = ("--teacher", " ") if name == "teacher" else (f"--student {name}", "=")
        what = f"{option}{sep}{uri}"
        loaded[name] = read_checkpoint(option, uri, config.storage, student=name != "teacher", sep=sep)
        check_builds(what, loaded[name])
        if loaded[name].clip_len != summary.clip.clip_len:
            raise EvaluationError(what, f"clip_len {loaded[name].clip_len} differs from the shards' "
                                        f"{summary.clip.clip_len} ({config.clips}); prepare shards with --clip-len "
                                        f"{loaded[name].clip_len}")
        if frame_size(loaded[name].resize) != frame_size(summary.clip.size):
            raise EvaluationError(what, f"resize {loaded[name].resize!r} differs from the shards' --size "
                                        f"{summary.clip.size!r} ({config.clips}): `raycondi label` decodes at the "
                                        "checkpoint's resize, so evaluate on shards prepared at it (or, for a "
                                        "checkpoint that records no resize, add the shards' \"resize\" to its "
                                        "config.json)")
        check_classes(what, loaded[name], summary, config.clips, "evaluate models trained on these shards' classes")
        # the crop fits: a checkpoint's crop fits its resize (CheckpointConfig), which is the shards' size
    if config.candidates == "keyframes" and exists(join(config.clips, config.split), config.storage):
        filesystem, path = resolve(join(config.clips, config.split), config.storage)
        if "keyframe_offset" not in pads.dataset(path, filesystem=filesystem, format="parquet").schema.names:
            raise EvaluationError(config.clips, "the shards have no keyframe_offset column (prepared before raycondi "
                                                "recorded it): run `raycondi prepare` again to evaluate keyframe "
                                                "candidates")
    frame_steps = {name: loaded[name].frame_step for name in config.students}
    return loaded["teacher"], summary.dataset, summary.clip, frame_steps


def evaluate(config: EvaluateConfig) -> EvaluationSummary:
    """Run the evaluation (steps and files in the module docstring) on the current Ray cluster (``ray.init()``
    when none is connected, after the inputs are checked on the driver). Raises :class:`EvaluationError` or
    ``ValueError`` (one line naming the option) for unusable inputs, before Ray starts, and ``FileNotFoundError``
    when the split has no clips."""
    teacher, dataset, clip, frame_steps = _check_models(config)
    if not ray.is_initialized():
        ray.init()
    methods = tuple(config.students)
    keyframes = config.candidates == "keyframes"
    reach = config.keyframe_clips * clip.clip_len * clip.stride if keyframes else None
    table = predict_clips(config.clips, config.split, config.teacher, config.students, actors=config.actors,
                          gpu=config.gpu, batch_size=config.batch_size, storage=config.storage)
    notes = []
    clips = table.num_rows
    skims = {m: step for m, step in frame_steps.items() if step > 1}
    seek_s = keyframe_s = None
    if config.decode_seconds is None:
        def timed(plan: str, **kwargs) -> float | None:
            try:
                return measure_plan_seconds(dataset, config.split, clip, plan, videos=config.decode_videos,
                                            storage=config.storage, **kwargs)
            except Exception as error:  # noqa: BLE001 -- any reason the source videos cannot be read decides the same
                raise EvaluationError(dataset, f"cannot time decoding on the source videos ({error}); give the "
                                               "decode cost per clip instead (--decode-seconds, e.g. a label run's "
                                               "decode_s / num_clips)") from None

        decode_s = timed("full")
        skim_decode_s = {m: timed("full", skim_step=step) for m, step in skims.items()}
        notes.append(f"decode cost timed on {config.decode_videos} {config.split} videos of {dataset}")
        if config.seek:
            seek_s = timed("seek", k=max(config.ks))
            notes.append(f"Equidistant and Random priced as seeking to their clips, timed at K = {max(config.ks)}"
                         if seek_s is not None else "the videos cannot be sought: Equidistant and Random priced as "
                                                    "decoding all clips")
        if keyframes:
            keyframe_s = timed("keyframes", reach=reach)
            notes.append(f"samplers rank keyframe candidates ({config.keyframe_clips} clip spans from each keyframe)"
                         ", priced as decoding those")
    else:
        decode_s, skim_decode_s = config.decode_seconds, {}
        notes.append("decode cost given (--decode-seconds); every strategy priced as decoding all clips")
        if skims:
            notes.append(f"skimming students ({', '.join(sorted(skims))}) priced at the full decode cost")
    costs = ClipCosts(decode_s=decode_s, teacher_s=pc.sum(table["teacher_s"]).as_py() / clips,
                      student_s={m: pc.sum(table[f"{m}_s"]).as_py() / clips for m in methods},
                      skim_decode_s=skim_decode_s, seek_s=seek_s,
                      keyframe_s=(keyframe_s or decode_s) if keyframes else None)

    truth_uri = config.ground_truth or join(dataset, "ground_truth.parquet")
    truth = None
    if config.ground_truth is not None or exists(truth_uri, config.storage):
        truth = read_ground_truth(truth_uri, config.storage)
        notes.append(f"clean clips from {truth_uri}")
    videos = group_videos(table, methods, truth, reach=reach)
    rows = results(videos, config.ks, strategies_for(methods), costs=costs, seeds=config.seeds,
                   max_prob_student=config.max_prob_student)
    sweep = ks_sweep(videos, config.ks, costs=costs) if "condi_sr" in methods else []
    ambiguity = ambiguity_rows(videos, max_prob_student=config.max_prob_student)

    students = ", ".join(f"{get(m).title} `{uri}`" for m, uri in config.students.items()) or "none"
    per_clip = [f"decode {1000 * costs.decode_s:.3g} ms", f"teacher {1000 * costs.teacher_s:.3g} ms"]
    per_clip += [f"{get(m).title} student {1000 * s:.3g} ms" for m, s in costs.student_s.items()]
    per_clip += [f"{get(m).title} skim decode (every {frame_steps[m]} frames) {1000 * s:.3g} ms"
                 for m, s in costs.skim_decode_s.items()]
    per_clip += [f"a clip reached by seeking {1000 * costs.seek_s:.3g} ms"] if costs.seek_s is not None else []
    per_clip += [f"a keyframe candidate {1000 * costs.keyframe_s:.3g} ms"] if keyframes else []
    setup = [
        f"clips: `{config.clips}` (split `{config.split}`: {len(videos)} videos, {clips} clips)",
        f"teacher: `{config.teacher}`; students: {students}; MaxProb uses the "
        f"{get(config.max_prob_student).title if config.max_prob_student else '—'} student's class head",
        f"measured cost per clip: {', '.join(per_clip)} ({'; '.join(notes)})",
        f"Random: mean of seeds {', '.join(map(str, config.seeds))}",
    ]
    files = report.report_files(rows, sweep, ambiguity, setup)
    files["costs.json"] = json.dumps({**asdict(costs), "notes": notes}, indent=2).encode()
    with open_output(join(config.out, "clip_outputs.parquet"), config.storage) as stream:
        pq.write_table(table, stream)
    for name, data in files.items():
        write_bytes(join(config.out, name), data, config.storage)
    return EvaluationSummary(config.out, len(videos), clips, costs, ("clip_outputs.parquet", *files),
                             report.table_iii(rows), tuple(notes))

