"""The labelling job's configuration (:class:`LabelConfig`, built once by the CLI), what a run reports
(:class:`LabelSummary`, printed and written to ``{output}/_summary.json``) and its error (:class:`LabelError`).
Torch-free and Ray-free, as the input listing and the resume check that use them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from raycondi import strategies
from raycondi.inference import check_choice
from raycondi.strategies import KEYFRAME_CLIPS
from raycondi.video.decode import DecodeLimits
from raycondi.video.storage import StorageOptions, UriError

__all__ = ["DECODERS", "STAGES", "SUMMARY_FILE", "LabelConfig", "LabelError", "LabelSummary"]

SUMMARY_FILE = "_summary.json"
STAGES = ("auto", "split", "fused", "gpu")
DECODERS = ("pyav", "nvdec", "auto")


class LabelError(UriError, ValueError):
    """The labelling job cannot run: unusable input, output or checkpoint. ``str()`` is ``"{uri}: {reason}"``;
    the driver's checks give the option with the URI as ``uri`` (``--input s3://b/videos``)."""


def _option(field_name: str) -> str:
    """The ``raycondi label`` option of a :class:`LabelConfig` field."""
    return "--" + field_name.replace("_", "-")


@dataclass(frozen=True)
class LabelConfig:
    """Everything the labelling job needs; built once (by the CLI) and passed down.

    Attributes:
        input: a prefix (every file under it with a :data:`~raycondi.pipeline.inputs.VIDEO_SUFFIXES`
            extension) or a dataset/manifest that :func:`~raycondi.datasets.manifests.read_dataset` reads
            (CSV/Parquet manifest, UCF-101 or Kinetics layout); local or ``s3://``.
        output: folder (local or ``s3://``) for the Parquet files and ``_summary.json``.
        teacher, student: checkpoint directories. The student runs only for the strategies that rank clips
            by its score (:mod:`raycondi.strategies`: ``condi_sr``, ``bce_conf``, ``st_conf``, ``st_ent``,
            ``max_prob``).
        k, k_student: K clips per video, K_s of them labelled by the student alone (Fig. 2c; condi_sr only).
        strategy: a name of :data:`raycondi.strategies.LABEL_STRATEGIES`; ``condi_sr`` (the default, Fig. 2b/2c;
            ``condi`` is accepted for it), the other samplers, or ``dense``/``equidistant``/``random`` (the
            teacher alone, to compare costs through the same job).
        weighting: how the teacher's K_t predictions are averaged (``selection.aggregate``): plain ``mean``
            or weighted by the student's ``confidence`` z̃ (the strategies ranking by z̃).
        candidates: the clips a sampler scores: ``clips``, every clip (the paper's; the whole video is decoded),
            or ``keyframes``, the clips that start fewer than ``keyframe_clips`` clip spans after a keyframe
            (only those are decoded: far fewer frames on long-GOP streams; ``evaluate --candidates keyframes``
            scores the same set). :mod:`raycondi.pipeline.plans`.
        keyframe_clips: with ``candidates="keyframes"``, how many clip spans after a keyframe a candidate may
            start (about how many clips each keyframe contributes).
        seek: ``equidistant`` and ``random`` seek to their K clips instead of decoding every frame (the same
            clips, pixel for pixel); False decodes in full.
        seed: seeds ``random`` (per video, with its id, so a rerun picks the same clips).
        split: with a dataset input, label only this split (``train``/``val``/``test``); None labels all.
        stride: temporal step between sampled frames.
        student_batch_size: clips per student forward pass.
        teacher_batch_size: clips per teacher forward pass.
        videos_per_teacher_call: videos per TeacherPredict call (their clips are batched together).
        rows_per_file: videos gathered into one output file (smaller: less work redone after a crash).
        stages: ``split`` runs ScoreAndSelect and TeacherPredict in separate actor pools; ``fused`` runs both
            in one ScoreSelectPredict actor (one process and one torch per actor instead of two, and the K
            clips stay in it: the memory-lean choice when both models run on CPU); ``gpu`` (the samplers only)
            decodes the candidates on CPU actors and runs the student and the teacher in one actor per GPU
            (:mod:`~raycondi.pipeline.gpu`); ``auto`` fuses when no stage has a GPU, and otherwise takes ``gpu``
            for the samplers (unless ``student_gpus`` asks for student actors of their own) and ``split``
            for the teacher-only strategies.
        inference: how each model runs (:mod:`raycondi.inference`): ``auto`` measures fp32/bf16 and the memory
            layouts on the GPU and keeps the fastest, ``auto-compile`` adds ``torch.compile`` and CUDA graphs,
            ``fp32`` is the reference eager path; or an explicit setting such as ``bf16+channels_last_3d``.
        decoder: ``pyav`` (CPU), ``nvdec`` (the GPU's video decoder through PyNvVideoCodec, for the full decode
            of the GPU layout's candidates; where it is missing the job decodes with PyAV and says so once per
            actor) or ``auto`` (nvdec on clusters with GPUs).
        student_actors, teacher_actors: actor pool sizes (``student_actors`` sizes the fused pool); None
            derives them from the cluster's resources (:func:`~raycondi.pipeline.plan.plan_pools`).
        student_gpus, teacher_gpus: GPUs per actor; ``teacher_gpus=None`` is 1 when the cluster has GPUs.
        cpus_per_actor: CPUs reserved by each actor (and its torch threads).
        max_video_attempts: how many of a video's decodes may die with their worker in one run. Ray Data
            restarts an actor that died and retries its task without limit, so a video whose decode kills the
            process would keep the job from ever finishing; after this many it becomes an error row instead
            ("worker died decoding this video ...").
        video_timeout: seconds one video's PyAV decode may take, counted from its start and checked before
            every packet (so the streamed plans' scoring between packets counts; a packet that hangs inside
            FFmpeg, and NVDEC decodes, are not stopped); None: no limit. A slower one becomes an error row.
        limits, storage: decode limits and S3 settings.
    """

    input: str
    output: str
    teacher: str
    student: str | None = None
    k: int = 5
    k_student: int = 0
    strategy: str = "condi_sr"
    weighting: Literal["mean", "confidence"] = "mean"
    candidates: Literal["clips", "keyframes"] = "clips"
    keyframe_clips: int = KEYFRAME_CLIPS
    seek: bool = True
    seed: int = 0
    split: str | None = None
    stride: int = 1
    student_batch_size: int = 16
    teacher_batch_size: int = 32
    videos_per_teacher_call: int = 8
    rows_per_file: int = 256
    stages: Literal["auto", "split", "fused", "gpu"] = "auto"
    inference: str = "auto"
    decoder: Literal["pyav", "nvdec", "auto"] = "pyav"
    student_actors: int | None = None
    teacher_actors: int | None = None
    student_gpus: float = 0.0
    teacher_gpus: float | None = None
    cpus_per_actor: float = 1.0
    max_video_attempts: int = 3
    video_timeout: float | None = None
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    storage: StorageOptions | None = None

    def __post_init__(self) -> None:
        """Each problem names the CLI option (``--k-student 3``), the field's rule and the fix."""
        problems = []
        object.__setattr__(self, "strategy", strategies.ALIASES.get(self.strategy, self.strategy))
        entry = None
        if self.strategy not in strategies.LABEL_STRATEGIES:
            problems.append(f"--strategy {self.strategy}: strategy must be one of "
                            f"{', '.join(strategies.LABEL_STRATEGIES)}")
        else:
            entry = strategies.get(self.strategy)
        samplers = ", ".join(s for s in strategies.LABEL_STRATEGIES if strategies.get(s).needs_student)
        if self.weighting not in ("mean", "confidence"):
            problems.append(f"--weighting {self.weighting}: weighting must be 'mean' or 'confidence'")
        if self.weighting == "confidence" and entry and entry.score != "confidence":
            problems.append(f"--weighting confidence: weighting='confidence' needs a strategy ranking clips by z~, "
                            f"not {self.strategy!r}; use --weighting mean")
        if self.candidates not in strategies.CANDIDATES:
            problems.append(f"--candidates {self.candidates}: candidates must be one of "
                            f"{', '.join(strategies.CANDIDATES)}")
        elif self.candidates == "keyframes" and entry and not entry.needs_student:
            problems.append(f"--candidates keyframes: candidates='keyframes' is for the strategies that score clips "
                            f"({samplers}), not {self.strategy!r}")
        if self.k < 1:
            problems.append(f"--k {self.k}: k must be >= 1 (clips per video)")
        if not 0 <= self.k_student <= self.k:
            problems.append(f"--k-student {self.k_student}: k_student must be between 0 and k={self.k} (of the "
                            "--k clips, those the student labels)")
        if self.k_student and entry and not entry.splits:
            problems.append(f"--k-student {self.k_student}: k_student needs strategy='condi_sr', got "
                            f"{self.strategy!r}; use --strategy condi_sr or --k-student 0")
        if entry and entry.needs_student and not self.student:
            problems.append(f"--strategy {self.strategy}: strategy={self.strategy!r} needs a student checkpoint; "
                            "give --student (distill's OUT/model) or a teacher-only --strategy (dense, equidistant, "
                            "random)")
        if self.stages not in STAGES:
            problems.append(f"--stages {self.stages}: stages must be one of {', '.join(STAGES)}")
        if self.stages == "fused" and (self.student_gpus or self.teacher_gpus):
            problems.append("--stages fused: stages='fused' runs both models on CPU: it takes no --student-gpus or "
                            "--teacher-gpus (use --stages split or gpu)")
        if self.stages == "gpu" and entry and not entry.needs_student:
            problems.append(f"--stages gpu: stages='gpu' runs a sampler's student and teacher on one GPU; "
                            f"{self.strategy!r} runs no student (use split or auto)")
        if self.stages == "gpu" and self.student_gpus:
            problems.append(f"--student-gpus {self.student_gpus:g}: stages='gpu' runs the student in the GPU actor: "
                            "student_gpus is for stages='split'")
        try:
            check_choice(self.inference)
        except ValueError as error:
            problems.append(f"--inference: {error} (or one of auto, auto-compile, fp32)")
        if self.decoder not in DECODERS:
            problems.append(f"--decoder {self.decoder}: decoder must be one of {', '.join(DECODERS)}")
        if self.split not in (None, "train", "val", "test"):
            problems.append(f"--split {self.split}: split must be train, val or test")
        if self.video_timeout is not None and self.video_timeout <= 0:
            problems.append(f"--video-timeout {self.video_timeout:g}: video_timeout must be > 0 seconds "
                            "(leave it out for no limit)")
        for name in ("stride", "student_batch_size", "teacher_batch_size", "videos_per_teacher_call",
                     "rows_per_file", "keyframe_clips", "max_video_attempts"):
            if getattr(self, name) < 1:
                problems.append(f"{_option(name)} {getattr(self, name)}: {name} must be >= 1")
        for name in ("student_actors", "teacher_actors"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{_option(name)} {getattr(self, name)}: {name} must be >= 1 (leave it out to size "
                                "the pool from the cluster)")
        for name in ("student_gpus", "teacher_gpus"):
            if (getattr(self, name) or 0) < 0:
                problems.append(f"{_option(name)} {getattr(self, name):g}: {name} must be >= 0")
        if self.cpus_per_actor <= 0:
            problems.append(f"--cpus-per-actor {self.cpus_per_actor:g}: cpus_per_actor must be > 0")
        if problems:
            raise ValueError("invalid LabelConfig: " + "; ".join(problems))

    @property
    def uses_student(self) -> bool:
        """True when the strategy ranks clips by the student's score (the student runs on every clip)."""
        return strategies.get(self.strategy).needs_student


@dataclass(frozen=True)
class LabelSummary:
    """What a run did; printed by the CLI and written to ``{output}/_summary.json``.

    ``clips_scored``: clips the student scored (ok videos); ``clips_to_teacher``: clips the teacher ran on;
    ``dense_clips``: clips of the ok videos, i.e. what dense sampling would have sent to the teacher;
    ``teacher_share = clips_to_teacher / dense_clips``; ``plan``: the actors the run used
    (:class:`~raycondi.pipeline.plan.PoolPlan`).
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
