"""``raycondi quickstart``: the whole system on the embedded default, in minutes on a laptop's CPU.

:func:`quickstart` chains the library's jobs on one local Ray runtime (one ``ray.init``, every CPU of the
machine), printing a progress line per step:

1. :func:`~raycondi.datasets.synthetic.generate_dataset` -- the synthetic benchmark (UCF-101 layout);
2. :func:`~raycondi.datasets.shards.prepare` -- Parquet clip shards (Ray Data);
3. :func:`~raycondi.train.teacher.train_teacher` -- a small teacher (Ray Train);
4. :func:`~raycondi.train.outputs.compute_teacher_logits` -- its logits on every clip (Ray Data);
5. :func:`~raycondi.train.distill.distill` -- one student per method of :data:`METHODS` (Ray Train), several
   runs at once (:func:`training_slots`);
6. :func:`~raycondi.evaluation.evaluate` -- Tables III-V, AUROCs, plots at every K of ``ks`` (Ray Data);
7. :func:`~raycondi.pipeline.label.label_videos` -- the test videos labelled to Parquet by the teacher on
   the ConDi-SR student's K most confident clips, K the best of the evaluation (Ray Data); the labels'
   accuracy is printed beside Table III's ConDi-SR row at that K, which it must equal;
8. :func:`~raycondi.audit.write_report` -- the labels' report, an HTML page to open in a browser.

Every step is skipped when its output is already under ``workdir`` (training resumes from its last
checkpoint, labelling labels only the missing videos), so an interrupted run continues where it stopped.
The numbers are the ``small`` preset's (:mod:`raycondi.train.presets`) on a 300-video benchmark: the whole
run takes 3 to 8 minutes on 2 CPU cores. The paper-sized runs are the same jobs with the CLI's
``--preset paper``.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow.parquet as pq
import ray

from raycondi.audit import ReportConfig, write_report
from raycondi.datasets.manifests import read_dataset
from raycondi.datasets.shards import prepare
from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.evaluation import EvaluateConfig, evaluate
from raycondi.models.checkpoint import CONFIG_FILE
from raycondi.pipeline import LabelConfig, LabelSummary, label_videos
from raycondi.pipeline.sink import output_files
from raycondi.strategies import METHODS
from raycondi.train.distill import DistillConfig, distill
from raycondi.train.outputs import compute_teacher_logits
from raycondi.train.presets import PRESETS
from raycondi.train.teacher import TeacherConfig, train_teacher
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import exists, join, read_bytes, resolve

__all__ = ["QuickstartConfig", "QuickstartSummary", "best_k", "label_accuracy", "quickstart", "training_slots"]

_SMALL = PRESETS["small"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class QuickstartConfig:
    """The quickstart's numbers; the defaults are the embedded default (3 to 8 minutes on 2 CPU cores).

    Attributes:
        workdir: where everything goes (``videos/``, ``clips/``, ``teacher/``, ``students/METHOD/``,
            ``eval/``, ``labels/``).
        videos, classes, max_seconds, width, height, seed: the synthetic benchmark (:class:`SynthConfig`).
        clip_len, size, crop_size: shard clips and training crops (the ``small`` preset's).
        teacher, teacher_kwargs, student, student_kwargs: the networks (``list_models()`` and their builders'
            arguments), the ``small`` preset's 3D ResNet-10s.
        teacher_epochs, distill_epochs, batch_size, lr, lam: the schedule and λ (AdamW, no flips, as the
            ``small`` preset).
        ks: the evaluation's K; the labelling job uses the one where ConDi-SR is most accurate.
        num_cpus: CPUs Ray may use; None: every CPU of the machine.
    """

    workdir: str = "raycondi-quickstart"
    videos: int = 300
    classes: int = 6
    max_seconds: float = 12.0
    width: int = 64
    height: int = 48
    seed: int = 0
    clip_len: int = _SMALL.clip_len
    size: int = _SMALL.size
    crop_size: int = _SMALL.crop_size
    teacher: str = _SMALL.teacher
    teacher_kwargs: Mapping[str, Any] = field(default_factory=lambda: dict(_SMALL.teacher_kwargs))
    student: str = _SMALL.student
    student_kwargs: Mapping[str, Any] = field(default_factory=lambda: dict(_SMALL.student_kwargs))
    teacher_epochs: int = _SMALL.teacher_epochs
    distill_epochs: int = _SMALL.distill_epochs
    batch_size: int = _SMALL.batch_size
    lr: float = _SMALL.lr
    lam: float = _SMALL.lam
    head_decay: float = _SMALL.head_decay
    mix_gradient: bool = _SMALL.mix_gradient
    ks: tuple[int, ...] = (1, 3, 5, 7)
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        problems = [f"{name} must be >= 1, got {getattr(self, name)}"
                    for name in ("videos", "teacher_epochs", "distill_epochs", "batch_size")
                    if getattr(self, name) < 1]
        if self.crop_size > self.size:
            problems.append(f"crop_size {self.crop_size} must not exceed size {self.size}")
        if not self.ks or min(self.ks) < 1:
            problems.append(f"ks must be positive integers, got {self.ks}")
        if self.num_cpus is not None and self.num_cpus < 1:
            problems.append(f"num_cpus must be >= 1, got {self.num_cpus}")
        if problems:
            raise ValueError("invalid QuickstartConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class QuickstartSummary:
    """Where the outputs are, the label run's summary, Table III (Markdown), seconds per step, and the labels'
    accuracy on the test videos beside Table III's ConDi-SR accuracy at the K they were labelled with."""

    workdir: str
    outputs: Mapping[str, str]
    best_k: int
    table_iii: str
    labels: LabelSummary
    seconds: Mapping[str, float] = field(default_factory=dict)
    labels_accuracy: float = float("nan")
    table_accuracy: float = float("nan")
    report: str = ""


def _step(number: int, total: int, title: str, seconds: dict[str, float], run: Callable[[], _T]) -> _T:
    """Run one step between two progress lines and record its seconds under ``title``."""
    print(f"[{number}/{total}] {title} ...", flush=True)
    start = time.perf_counter()
    value = run()
    seconds[title] = time.perf_counter() - start
    print(f"[{number}/{total}] {title}: done in {seconds[title]:.0f} s", flush=True)
    return value


def _trained(out: str) -> bool:
    return exists(join(out, "model", CONFIG_FILE))


def _condi_sr_rows(accuracy_csv: str) -> dict[int, float]:
    rows = csv.DictReader(io.StringIO(accuracy_csv))
    return {int(r["k"]): float(r["accuracy"]) for r in rows if r["strategy"] == "condi_sr" and r["k"] != "all"}


def best_k(accuracy_csv: str, ks: tuple[int, ...]) -> int:
    """The K of ``ks`` where ConDi-SR's video accuracy in ``accuracy.csv`` is highest (the smallest on a tie);
    1 when the file has no ConDi-SR row."""
    scored = [(accuracy, -k) for k, accuracy in _condi_sr_rows(accuracy_csv).items() if k in ks]
    return -max(scored)[1] if scored else 1


def label_accuracy(labels: str, dataset: str) -> float:
    """The share of the ok rows under the labelling output ``labels`` whose ``label`` is the video's class in
    ``dataset`` (its layout as ``read_dataset`` reads it)."""
    truth = dict(zip(*(read_dataset(dataset)[c].to_pylist() for c in ("video_id", "label")), strict=True))
    filesystem, _ = resolve(labels)
    rows = [row for f in output_files(labels, None)
            for row in pq.read_table(resolve(f)[1], filesystem=filesystem, columns=["video_id", "status", "label"])
            .to_pylist() if row["status"] == "ok"]
    return sum(row["label"] == truth[row["video_id"]] for row in rows) / len(rows) if rows else float("nan")


def training_slots(cpus: int, runs: int) -> tuple[int, float]:
    """(training runs at once, CPUs reserved by each run's worker) for ``runs`` runs on ``cpus`` CPUs.

    One small training worker keeps about one core busy (its step is many small operations, not wide ones),
    so the students are distilled side by side, one run per core, and their workers reserve all but one CPU,
    which stays free for the Ray Data work that feeds them (the first read of the shards, the split
    coordinators): on 2 CPUs, two runs of 0.5 CPU (one torch thread each).
    """
    slots = max(1, min(runs, cpus))
    return slots, max(0.5, (cpus - 1) / slots)


def _run(config: QuickstartConfig, outputs: dict[str, str], seconds: dict[str, float]) -> QuickstartSummary:
    total = 8
    teacher = join(outputs["teacher"], "model")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    training: dict[str, Any] = {
        "clips": outputs["clips"], "batch_size": config.batch_size, "lr": config.lr, "optimizer": "adamw",
        "flip": False, "seed": config.seed,
    }
    slots, cpus_per_student = training_slots(cpus, len(METHODS))

    def data() -> None:
        if not exists(join(outputs["videos"], "ground_truth.parquet")):
            generate_dataset(outputs["videos"], SynthConfig(
                videos=config.videos, seed=config.seed, classes=config.classes, clip_len=config.clip_len,
                width=config.width, height=config.height, max_seconds=config.max_seconds))

    def shards() -> None:
        if not exists(join(outputs["clips"], "dataset.json")):
            prepare(outputs["videos"], outputs["clips"], clip=ClipSpec(clip_len=config.clip_len, size=config.size))

    def teach() -> None:  # one worker with every CPU but one (left to Ray Data's reads) for its torch threads
        if not _trained(outputs["teacher"]):
            train_teacher(TeacherConfig(
                out=outputs["teacher"], model=config.teacher, model_kwargs=config.teacher_kwargs,
                crop_size=config.crop_size, epochs=config.teacher_epochs,
                cpus_per_worker=float(max(1, cpus - 1)), **training))

    def student(method: str) -> None:
        started = time.perf_counter()
        if not _trained(outputs[method]):
            distill(DistillConfig(
                teacher=teacher, out=outputs[method], student=config.student, student_kwargs=config.student_kwargs,
                method=method, lam=config.lam, head_decay=config.head_decay,
                mix_gradient=config.mix_gradient, epochs=config.distill_epochs,
                cpus_per_worker=cpus_per_student, **training))
        print(f"      {method} student: done in {time.perf_counter() - started:.0f} s", flush=True)

    def students() -> None:
        with ThreadPoolExecutor(slots) as pool:  # TorchTrainer.fit() blocks; each thread drives one run
            list(pool.map(student, METHODS))

    _step(1, total, f"generate the synthetic benchmark ({config.videos} videos, {config.classes} classes)",
          seconds, data)
    _step(2, total, f"prepare clip shards ({config.clip_len} frames, short side {config.size})", seconds, shards)
    _step(3, total, f"train the teacher ({config.teacher_epochs} epochs)", seconds, teach)
    _step(4, total, "compute the teacher's logits", seconds,
          lambda: compute_teacher_logits(outputs["clips"], teacher))
    _step(5, total, f"distil the {', '.join(METHODS)} students ({config.distill_epochs} epochs, {slots} at a time)",
          seconds, students)
    evaluation = _step(6, total, f"evaluate every strategy at K = {', '.join(map(str, config.ks))}", seconds,
                       lambda: evaluate(EvaluateConfig(
                           clips=outputs["clips"], teacher=teacher, out=outputs["eval"], ks=config.ks,
                           students={m: join(outputs[m], "model") for m in METHODS})))
    accuracy = read_bytes(join(outputs["eval"], "accuracy.csv")).decode()
    k = best_k(accuracy, config.ks)
    labels = _step(7, total, f"label the test videos (ConDi-SR, K = {k})", seconds,
                   lambda: label_videos(LabelConfig(
                       input=outputs["videos"], output=outputs["labels"], teacher=teacher,
                       student=join(outputs["condi_sr"], "model"), k=k, strategy="condi_sr", split="test")))
    report = _step(8, total, "write the labels' report", seconds,
                   lambda: write_report(ReportConfig(labels=outputs["labels"])))
    return QuickstartSummary(config.workdir, outputs, k, evaluation.table_iii, labels, seconds,
                             label_accuracy(outputs["labels"], outputs["videos"]),
                             _condi_sr_rows(accuracy).get(k, float("nan")), report.html)


def _print_summary(summary: QuickstartSummary) -> None:
    outputs = summary.outputs
    print(f"\nTable III: video accuracy (%) on the test videos ({outputs['eval']}/accuracy.md)")
    print(summary.table_iii)
    print(f"\nThe labels ({outputs['labels']}): {100 * summary.labels_accuracy:.1f} % of the test videos right; "
          f"Table III's ConDi-SR at K = {summary.best_k}: {100 * summary.table_accuracy:.1f} %")
    print(f"\nquickstart done in {sum(summary.seconds.values()):.0f} s. Outputs under {summary.workdir}:")
    for name, where in (
        ("synthetic videos (UCF-101 layout) and ground_truth.parquet", outputs["videos"]),
        ("clip shards", outputs["clips"]),
        ("teacher checkpoint", join(outputs["teacher"], "model")),
        *((f"{m} student checkpoint", join(outputs[m], "model")) for m in METHODS),
        ("Tables III-V, ambiguity.csv, plots and report.md", outputs["eval"]),
        (f"labels of {summary.labels.videos_ok} test videos (Parquet, K = {summary.best_k})", outputs["labels"]),
        ("the labels' report (HTML, charts and the least sure videos' clips)", summary.report),
    ):
        print(f"  {name}: {where}")
    teacher, condi = join(outputs["teacher"], "model"), join(outputs["condi_sr"], "model")
    print("\nNext:")
    print(f"  read {join(outputs['eval'], 'report.md')}, and open {summary.report} in a browser")
    print(f"  raycondi label --input VIDEOS --output OUT --teacher {teacher} --student {condi} "
          f"--k {summary.best_k}   # your own videos (local or s3://)")
    print("  the paper-sized models: raycondi prepare / train-teacher / distill / evaluate with --preset paper "
          "(see the README)")


def quickstart(config: QuickstartConfig = QuickstartConfig()) -> QuickstartSummary:
    """Run the steps of the module docstring under ``config.workdir`` on a local Ray runtime; print Table III,
    where every output is and what to run next; return the summary. Uses the connected Ray runtime if there
    is one, else starts one with ``config.num_cpus`` (every CPU by default) and shuts it down at the end."""
    outputs = {name: join(config.workdir, name) for name in ("videos", "clips", "teacher", "eval", "labels")}
    outputs.update({m: join(config.workdir, "students", m) for m in METHODS})
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=config.num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        summary = _run(config, outputs, {})
    finally:
        if started:
            ray.shutdown()
    _print_summary(summary)
    return summary
