"""Confidence AUROC for z of ConDi-SR against other students (BCE-Conf, ST-Ent, ...) on a synthetic benchmark.

Generates the synthetic benchmark (``--benchmark``: ``default`` or ``shapes``, :data:`BENCHMARKS`), prepares
shards, trains a teacher, then distils one student per method and seed, and evaluates every student on the test
split against the stored teacher logits: AUROC of the method's score for z (Eq. 1), clip accuracy and top-K video
accuracy, beside Dense and Equidistant. For every student it also records, on the validation split only, the
AUROC after each epoch and where z̃'s gradient comes from (``grad_share_kd``: the share of the confidence
logit's gradient magnitude that comes from the distillation term through Eq. 5 rather than from λ·BCE;
``grad_agree``: the share of clips where both push the same way; ConDi-SR only). Prints a table per seed and
the mean over seeds, and writes JSON (``benchmarks/results/distill_auroc.json`` unless ``--json``). Every stage
resumes or is skipped when its output exists under ``--out``, so the command can be re-run after an
interruption.

    python benchmarks/distill_auroc.py --out /tmp/raycondi-bench [--videos 300] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import ray
import torch
from _results import provenance, write

from raycondi.datasets.shards import prepare
from raycondi.datasets.synthetic import BENCHMARKS, SynthConfig, generate_dataset
from raycondi.losses import condi_sr_loss
from raycondi.models import load_checkpoint
from raycondi.selection import equidistant_indices
from raycondi.train import runtime
from raycondi.train.data import read_split
from raycondi.train.distill import DistillConfig, distill, evaluate_student
from raycondi.train.metrics import video_accuracy
from raycondi.train.outputs import load_teacher_logits, teacher_logits_uri
from raycondi.train.presets import PRESETS
from raycondi.train.teacher import TeacherConfig, train_teacher
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import exists, join

KS = (1, 3, 5)
COLUMNS = ("auroc", "clip_accuracy", "teacher_clip_accuracy", "video_accuracy_dense",
           *(f"video_accuracy_k{k}" for k in KS), *(f"equidistant_k{k}" for k in KS))


def equidistant_accuracy(predictions: dict[str, np.ndarray], teacher_logits: np.ndarray, k: int) -> float:
    """Video accuracy of Equidistant at ``k`` (the teacher on each video's equidistant clips)."""
    videos, clips = predictions["video_id"], predictions["clip_index"]
    chosen = np.zeros(len(videos))
    for video in np.unique(videos):
        rows = np.flatnonzero(videos == video)
        picked = equidistant_indices(int(clips[rows].max()) + 1, k)
        chosen[rows] = np.isin(clips[rows], picked)
    probs = np.exp(teacher_logits - teacher_logits.max(1, keepdims=True))
    return video_accuracy(videos, clips, predictions["label"], probs / probs.sum(1, keepdims=True), chosen, k)


def gradient_sources(predictions: dict[str, np.ndarray], teacher_logits: np.ndarray, lam: float, mu: float = 1.5,
                     tau: float = 0.9) -> dict:
    """Where ConDi-SR's loss pushes the confidence logit on these clips: the share of its gradient's magnitude
    that comes through Eq. 5's mixing (the KD term) and the share of clips where KD and λ·BCE agree in sign."""
    logit = torch.tensor(predictions["confidence_logit"], dtype=torch.float64, requires_grad=True)
    args = (torch.tensor(predictions["logits"], dtype=torch.float64), logit,
            torch.tensor(teacher_logits, dtype=torch.float64), torch.tensor(predictions["label"]))
    (kd,) = torch.autograd.grad(condi_sr_loss(*args, lam=0.0, mu=mu, tau=tau), logit)
    (total,) = torch.autograd.grad(condi_sr_loss(*args, lam=lam, mu=mu, tau=tau), logit)
    bce = total - kd
    return {"grad_share_kd": float(kd.abs().sum() / (kd.abs().sum() + bce.abs().sum())),
            "grad_agree": float((torch.sign(kd) == torch.sign(bce)).double().mean())}


def _table(title: str, results: dict[str, dict[str, float]]) -> None:
    print(title)
    print(f"{'method':10} {'AUROC(z)':>9} {'clip acc':>9} {'teacher':>8} {'dense':>7}"
          + "".join(f" {f'K={k}':>7}" for k in KS) + f" {'equi@1':>7} {'KD share':>8}")
    for method, m in results.items():
        share = f"{m['grad_share_kd']:8.3f}" if "grad_share_kd" in m else f"{'-':>8}"
        print(f"{method:10} {m['auroc']:9.4f} {m['clip_accuracy']:9.4f} {m['teacher_clip_accuracy']:8.4f} "
              f"{m['video_accuracy_dense']:7.4f}" + "".join(f" {m[f'video_accuracy_k{k}']:7.4f}" for k in KS)
              + f" {m['equidistant_k1']:7.4f} {share}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="working folder (data, teacher, students)")
    parser.add_argument("--clips", default=None, help="existing shards (skips generating and preparing)")
    parser.add_argument("--benchmark", choices=tuple(BENCHMARKS), default="default",
                        help="which embedded benchmark to generate (default: the one the presets were chosen on)")
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--max-seconds", type=float, default=12.0, help="longest synthetic video")
    parser.add_argument("--severity", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                        help="range of the ambiguous clips' severity (default: the benchmark's)")
    parser.add_argument("--methods", nargs="+", default=["condi_sr", "bce_conf", "st_ent"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one student per method and seed")
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--distill-epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lam", type=float, default=None, help="λ (default: the small preset's)")
    parser.add_argument("--mu", type=float, default=1.5, help="μ (default: the paper's 1.5)")
    parser.add_argument("--tau", type=float, default=0.9, help="τ (default: the paper's 0.9)")
    parser.add_argument("--head-decay", type=float, default=None,
                        help="the confidence head's per-epoch learning-rate divisor (default: the small preset's)")
    parser.add_argument("--mix-gradient", action=argparse.BooleanOptionalAction, default=None,
                        help="ConDi-SR: Eq. 5's mixing trains z~ (default: the small preset's)")
    parser.add_argument("--tag", default="", help="a suffix for the students' folders (variants of one data set)")
    parser.add_argument("--student-kwargs", default=None, help="JSON builder arguments (default: the preset's)")
    parser.add_argument("--frame-step", type=int, default=1,
                        help="the students see every s-th frame of the teacher's clips (1: the paper's input)")
    parser.add_argument("--json", default=None, help="JSON path (default: benchmarks/results/distill_auroc.json)")
    args = parser.parse_args(argv)
    preset = PRESETS["small"]
    lam = preset.lam if args.lam is None else args.lam
    head_decay = preset.head_decay if args.head_decay is None else args.head_decay
    mix_gradient = preset.mix_gradient if args.mix_gradient is None else args.mix_gradient
    student_kwargs = json.loads(args.student_kwargs) if args.student_kwargs else dict(preset.student_kwargs)
    common = {"batch_size": preset.batch_size, "lr": args.lr or preset.lr, "optimizer": preset.optimizer,
              "flip": preset.flip}
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    timings = {}

    start = time.time()
    clips = args.clips or join(args.out, "clips")
    if not exists(join(clips, "dataset.json")):
        videos = join(args.out, "videos")
        looks = dict(BENCHMARKS[args.benchmark])
        if args.severity:
            looks["severity"] = tuple(args.severity)
        generate_dataset(videos, SynthConfig(videos=args.videos, classes=args.classes, clip_len=preset.clip_len,
                                             width=64, height=48, max_seconds=args.max_seconds, **looks))
        prepare(videos, clips, clip=ClipSpec(clip_len=preset.clip_len, size=preset.size))
    timings["data_s"] = time.time() - start

    start = time.time()
    teacher = join(args.out, "teacher", "model")
    train_teacher(TeacherConfig(
        clips=clips, out=join(args.out, "teacher"), model=preset.teacher, model_kwargs=preset.teacher_kwargs,
        crop_size=preset.crop_size, epochs=args.teacher_epochs or preset.teacher_epochs, **common))
    timings["teacher_s"] = time.time() - start
    stored = None

    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    for seed in args.seeds:
        per_seed[seed] = {}
        for method in args.methods:
            start = time.time()
            step = "" if args.frame_step == 1 else f"_step{args.frame_step}"
            out = join(args.out, f"{method}{step}{args.tag}_seed{seed}")
            result = distill(DistillConfig(
                clips=clips, teacher=teacher, out=out, student=preset.student, student_kwargs=student_kwargs,
                frame_step=args.frame_step, method=method, lam=lam, mu=args.mu, tau=args.tau, head_decay=head_decay,
                mix_gradient=mix_gradient,
                epochs=args.distill_epochs or preset.distill_epochs, seed=seed, **common))
            timings[f"{method}_seed{seed}_s"] = time.time() - start
            student, config = load_checkpoint(join(out, "model"))
            test = runtime.predict(student, read_split(clips, "test"), config, runtime.device(), 64)
            stored = stored or load_teacher_logits(teacher_logits_uri(clips, teacher), "test")
            test_logits = stored.lookup(test["video_id"], test["clip_index"])
            per_seed[seed][method] = evaluate_student(method, test, test_logits, KS)
            per_seed[seed][method].update(
                {f"equidistant_k{k}": equidistant_accuracy(test, test_logits, k) for k in KS})
            history = result.metrics_dataframe
            per_seed[seed][method]["val_auroc_by_epoch"] = (
                [float(a) for a in history["val_auroc"]] if history is not None else None)
            if method == "condi_sr":
                val = runtime.predict(student, read_split(clips, "val"), config, runtime.device(), 64)
                val_logits = load_teacher_logits(teacher_logits_uri(clips, teacher), "val")
                val_teacher = val_logits.lookup(val["video_id"], val["clip_index"])
                per_seed[seed][method].update(gradient_sources(val, val_teacher, lam, args.mu, args.tau))
        _table(f"seed {seed}", per_seed[seed])
    if started:
        ray.shutdown()

    mean = {m: {c: float(np.mean([per_seed[s][m][c] for s in args.seeds])) for c in COLUMNS
                if all(c in per_seed[s][m] for s in args.seeds)} for m in args.methods}
    for m in mean:
        for c in ("grad_share_kd", "grad_agree"):
            if all(c in per_seed[s][m] for s in args.seeds):
                mean[m][c] = float(np.mean([per_seed[s][m][c] for s in args.seeds]))
    _table(f"mean over seeds {args.seeds}", mean)
    wins = {}  # per other method: the seeds in which ConDi-SR's AUROC is the higher
    for other in [m for m in args.methods if m != "condi_sr"] if "condi_sr" in args.methods else []:
        wins[other] = sum(per_seed[s]["condi_sr"]["auroc"] > per_seed[s][other]["auroc"] for s in args.seeds)
        print(f"condi_sr AUROC > {other} AUROC in {wins[other]} of {len(args.seeds)} seed(s); mean "
              f"{mean['condi_sr']['auroc']:.4f} vs {mean[other]['auroc']:.4f}")
    record = {**provenance("distill_auroc", argv), "split": "test", "benchmark": args.benchmark, "preset": "small",
              "lam": lam, "mu": args.mu, "tau": args.tau, "head_decay": head_decay, "mix_gradient": mix_gradient,
              "student": preset.student, "student_kwargs": student_kwargs, "frame_step": args.frame_step,
              "severity": args.severity, "teacher": preset.teacher,
              "teacher_kwargs": dict(preset.teacher_kwargs), "seeds": args.seeds,
              "results": {str(s): r for s, r in per_seed.items()}, "mean": mean, "condi_sr_wins": wins,
              "timings_s": timings}
    write(record, args.json, "distill_auroc.json")
    return record


if __name__ == "__main__":
    main()
