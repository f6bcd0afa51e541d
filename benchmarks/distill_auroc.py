"""Confidence AUROC for z of ConDi-SR vs BCE-Conf students on the synthetic benchmark (small CPU preset).

Generates the synthetic benchmark, prepares shards, trains a teacher, distils one student per method, then
evaluates every student on the test split against the stored teacher logits: AUROC of the method's score for
z (Eq. 1), clip accuracy and top-K video accuracy. Prints a table and writes ``{out}/distill_auroc.json``.
Every stage resumes or is skipped when its output exists, so the command can be re-run after an interruption.

    python benchmarks/distill_auroc.py --out /tmp/raycondi-bench [--videos 200] [--methods condi_sr bce_conf]
"""

from __future__ import annotations

import argparse
import json
import time

import ray

from raycondi.datasets.shards import prepare
from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.models import load_checkpoint
from raycondi.train import runtime
from raycondi.train.data import read_split
from raycondi.train.distill import DistillConfig, distill, evaluate_student
from raycondi.train.outputs import load_teacher_logits, teacher_logits_uri
from raycondi.train.presets import PRESETS
from raycondi.train.teacher import TeacherConfig, train_teacher
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import exists, join


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--clips", default=None, help="existing shards (skips generating and preparing)")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="longest synthetic video")
    parser.add_argument("--methods", nargs="+", default=["condi_sr", "bce_conf"])
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--distill-epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--student-width", type=float, default=None, help="student width (default: the preset's)")
    args = parser.parse_args()
    preset = PRESETS["small"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    timings = {}

    start = time.time()
    clips = args.clips or join(args.out, "clips")
    if not exists(join(clips, "dataset.json")):
        videos = join(args.out, "videos")
        generate_dataset(videos, SynthConfig(videos=args.videos, classes=10, clip_len=preset.clip_len, width=64,
                                             height=48, max_seconds=args.max_seconds))
        prepare(videos, clips, clip=ClipSpec(clip_len=preset.clip_len, size=preset.size))
    timings["data_s"] = time.time() - start

    start = time.time()
    teacher = join(args.out, "teacher", "model")
    train_teacher(TeacherConfig(
        clips=clips, out=join(args.out, "teacher"), model=preset.teacher, model_kwargs=preset.teacher_kwargs,
        crop_size=preset.crop_size, epochs=args.teacher_epochs or preset.teacher_epochs,
        batch_size=preset.batch_size, lr=args.lr or preset.lr, optimizer=preset.optimizer, flip=preset.flip,
    ))
    timings["teacher_s"] = time.time() - start

    student_kwargs = dict(preset.student_kwargs) if args.student_width is None else {"width": args.student_width}
    results = {}
    for method in args.methods:
        start = time.time()
        out = join(args.out, method if args.student_width is None else f"{method}_w{args.student_width:g}")
        distill(DistillConfig(
            clips=clips, teacher=teacher, out=out, student=preset.student, student_kwargs=student_kwargs,
            method=method, epochs=args.distill_epochs or preset.distill_epochs, batch_size=preset.batch_size,
            lr=args.lr or preset.lr, optimizer=preset.optimizer, flip=preset.flip,
        ))
        timings[f"{method}_s"] = time.time() - start
        student, config = load_checkpoint(join(out, "model"))
        test = runtime.predict(student, read_split(clips, "test"), config, runtime.device(), 64)
        stored = load_teacher_logits(teacher_logits_uri(clips, teacher), "test")
        results[method] = evaluate_student(method, test, stored.lookup(test["video_id"], test["clip_index"]), (1, 3, 5))

    header = f"{'method':10} {'AUROC(z)':>9} {'clip acc':>9} {'teacher':>8} {'dense':>7}"
    header += "".join(f" {f'K={k}':>7}" for k in (1, 3, 5))
    print(header)
    for method, m in results.items():
        print(f"{method:10} {m['auroc']:9.4f} {m['clip_accuracy']:9.4f} {m['teacher_clip_accuracy']:8.4f} "
              f"{m['video_accuracy_dense']:7.4f} {m['video_accuracy_k1']:7.4f} {m['video_accuracy_k3']:7.4f} "
              f"{m['video_accuracy_k5']:7.4f}")
    record = {"split": "test", "preset": "small", "student_kwargs": student_kwargs, "results": results,
              "timings_s": timings}
    name = "distill_auroc.json" if args.student_width is None else f"distill_auroc_w{args.student_width:g}.json"
    with open(join(args.out, name), "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {join(args.out, name)}")
    if {"condi_sr", "bce_conf"} <= set(results):
        condi, bce = results["condi_sr"]["auroc"], results["bce_conf"]["auroc"]
        print(f"condi_sr AUROC > bce_conf AUROC > 0.5: {condi > bce > 0.5}")


if __name__ == "__main__":
    main()
