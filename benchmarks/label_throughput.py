"""The labelling job end to end: Dense, Equidistant and ConDi-SR at each K on one archive of long videos.

Generates ``--videos`` synthetic videos of ``--seconds`` seconds each (UCF-101 layout; all of them are
labelled, whatever their split; reused when already in ``--workdir``), then runs :func:`raycondi.pipeline.label.label_videos` on
the same archive and the same Ray runtime once per strategy: ``dense``, and ``equidistant`` (which seeks to its
clips) and ``condi_sr`` at every K of ``--ks``, ``condi_sr`` once per candidate set of ``--candidates``
(``keyframes``: only the clips starting at a keyframe; ``--keyint`` gives the archive long GOPs, where that
matters). For each run it reports

* videos/s (the job's wall time, from the summary),
* frames decoded, bytes read and decode seconds (the ``frames_decoded``, ``bytes_read`` and ``decode_s`` columns
  summed) and the decode plan the rows report (``decode_mode``),
* student and teacher seconds (the per-video ``student_s`` / ``teacher_s`` columns summed: device seconds
  on a GPU, CPU seconds here), clips sent to the teacher,
* video accuracy against the synthetic ground truth, and with ``--evaluate``, on the archive's test split, the
  labels' accuracy beside ``raycondi evaluate``'s for the same strategy and K (``test_accuracy`` and
  ``evaluate_accuracy``): the archive is prepared into clip shards at the teacher's clip length and resize and
  evaluated with the student as ``condi_sr`` (once more with ``--candidates keyframes`` for those rows); the two
  must agree,
* ``busy_share``: the share of the devices' time the models kept busy, ``model seconds / (wall seconds x
  devices)`` -- with GPUs, the teacher's seconds (and the student's with ``--student-gpus``) over the cluster's
  GPUs (the issue's "GPU busy" figure; the per-video times are taken after the results are copied back, so
  they are device time plus transfers); without, both models' seconds over its CPUs,

and each as a ratio to Dense. ``--skim-student`` adds ConDi-SR runs with a second student trained with
``frame_step`` > 1 (``distill --frame-step``), whose decode converts only the frames it sees (skim decoding);
its rows have ``student_frame_step`` > 1. ``--teacher`` and ``--student`` take trained checkpoints (their clip shape and
classes must fit the archive: ``--clip-len``/``--size``, ``--classes``); without them random-initialised
ones are saved (``--teacher-arch``, ``--student-arch``/``--student-width``, and with ``--skim-step S`` a
skimming student beside them), which measures speed only
(accuracy is then chance). The table is printed and the rows written as JSON with the machine and the command:

    python benchmarks/label_throughput.py --teacher T --student S --evaluate  # 16 one-minute videos
    python benchmarks/label_throughput.py --videos 2 --seconds 4 --clip-len 4 --size 32 --ks 1 \\
        --teacher-arch shufflenetv2_3d --student-width 0.25 --out /tmp/smoke.json   # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads
import ray
import torch
from _archive import add_archive_options, make_archive, random_checkpoints
from _results import provenance, write

from raycondi.datasets.manifests import read_dataset
from raycondi.datasets.shards import prepare
from raycondi.evaluation import EvaluateConfig, evaluate
from raycondi.models import read_checkpoint_config
from raycondi.pipeline import LabelConfig, label_videos
from raycondi.strategies import CANDIDATES, KEYFRAME_CLIPS
from raycondi.video.decode import ClipSpec


def evaluated_accuracy(args, videos: Path, teacher: str, student: str, workdir: Path,
                       candidates: str) -> dict[tuple[str, str], float]:
    """``raycondi evaluate`` on the archive's test split, the samplers ranking ``candidates``: ``{(strategy,
    k): accuracy}`` from its accuracy.csv."""
    model = read_checkpoint_config(teacher)
    height, width = model.frame_size
    clips = workdir / f"{videos.name}_clips_{model.clip_len}x{height}x{width}_stride{args.stride}"
    if not (clips / "dataset.json").exists():
        prepare(str(videos), str(clips), clip=ClipSpec(model.clip_len, model.resize, args.stride))
    out = workdir / f"eval_{time.strftime('%Y%m%d-%H%M%S')}_{candidates}"
    evaluate(EvaluateConfig(clips=str(clips), teacher=teacher, students={"condi_sr": student}, out=str(out),
                            ks=tuple(args.ks), decode_videos=1, candidates=candidates,
                            keyframe_clips=args.keyframe_clips))
    with open(out / "accuracy.csv") as f:
        return {(r["strategy"], r["k"]): float(r["accuracy"]) for r in csv.DictReader(f)}


def _accuracy(rows) -> float:
    correct = pc.sum(pc.equal(rows["label"], rows["true_label"]).cast("int64")).as_py() or 0
    return round(correct / max(1, rows.num_rows), 4)


def one_run(args, videos: Path, teacher: str, student: str, strategy: str, k: int, candidates: str, out: Path) -> dict:
    uses_student = strategy == "condi_sr"
    config = LabelConfig(str(videos), str(out), teacher, student if uses_student else None, k=k,
                         strategy=strategy, stride=args.stride, student_gpus=args.student_gpus,
                         candidates=candidates if uses_student else "clips", keyframe_clips=args.keyframe_clips)
    summary = label_videos(config)
    columns = ["video_id", "status", "label", "decode_s", "student_s", "teacher_s", "frames_decoded", "bytes_read",
               "decode_mode"]
    rows = pads.dataset(str(out), format="parquet").to_table(columns=columns)
    truth = read_dataset(str(videos)).select(["video_id", "label", "split"]).rename_columns(
        ["video_id", "true_label", "split"])
    rows = rows.join(truth, "video_id")
    ok = rows.filter(pc.equal(rows["status"], "ok"))
    frame_step = read_checkpoint_config(student).frame_step if uses_student else 1
    student_s, teacher_s = pc.sum(ok["student_s"]).as_py() or 0.0, pc.sum(ok["teacher_s"]).as_py() or 0.0
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus:
        busy = (teacher_s + (student_s if args.student_gpus else 0.0)) / gpus
    else:
        busy = (teacher_s + student_s) / ray.cluster_resources()["CPU"]
    modes = sorted(set(ok["decode_mode"].to_pylist()))
    return {
        "strategy": strategy, "k": "all" if strategy == "dense" else k, "student_frame_step": frame_step,
        "candidates": config.candidates, "decode_mode": "+".join(modes),
        "videos": summary.videos_ok,
        "errors": summary.videos_error, "seconds": round(summary.seconds, 2),
        "videos_per_s": round(summary.videos_ok / summary.seconds, 4),
        "frames_decoded": pc.sum(ok["frames_decoded"]).as_py() or 0, "bytes_read": pc.sum(ok["bytes_read"]).as_py() or 0,
        "clips_scored": summary.clips_scored, "clips_to_teacher": summary.clips_to_teacher,
        "student_s": round(student_s, 3), "teacher_s": round(teacher_s, 3),
        "busy_share": round(busy / summary.seconds, 3),
        "decode_s": round(pc.sum(ok["decode_s"]).as_py() or 0.0, 3),
        "accuracy": _accuracy(ok), "test_accuracy": _accuracy(ok.filter(pc.equal(ok["split"], "test"))),
        "test_videos": ok.filter(pc.equal(ok["split"], "test")).num_rows, "plan": summary.plan,
    }


def with_ratios(rows: list[dict]) -> list[dict]:
    dense = next(r for r in rows if r["strategy"] == "dense")
    for row in rows:
        for key in ("videos_per_s", "frames_decoded", "decode_s", "student_s", "teacher_s", "clips_to_teacher",
                    "accuracy"):
            row[f"{key}_vs_dense"] = round(row[key] / dense[key], 3) if dense[key] else None
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_archive_options(parser, videos=16)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--teacher", default=None, help="teacher checkpoint (default: random weights)")
    parser.add_argument("--student", default=None, help="student checkpoint (default: random weights)")
    parser.add_argument("--skim-student", default=None, help="a second, skimming student (frame_step > 1)")
    parser.add_argument("--candidates", nargs="+", default=["clips"], choices=CANDIDATES,
                        help="ConDi-SR runs with each candidate set (default: clips, every clip)")
    parser.add_argument("--keyframe-clips", type=int, default=KEYFRAME_CLIPS,
                        help=f"keyframe candidates' reach in clip spans (default {KEYFRAME_CLIPS})")
    parser.add_argument("--evaluate", action="store_true",
                        help="also run `raycondi evaluate` on the archive's test split and report its accuracy "
                             "beside the labels' (the student as condi_sr)")
    parser.add_argument("--student-gpus", type=float, default=0.0, help="GPUs per ScoreAndSelect actor")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--workdir", default="/tmp/raycondi-label-throughput")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/label_throughput_<device>.json)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    videos = make_archive(args, workdir)
    if args.teacher and args.student:
        teacher, student, skim_student = args.teacher, args.student, args.skim_student
    else:
        teacher, student, skim_student = random_checkpoints(args, workdir)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    runs = [("dense", 1, None, "clips")] + [("equidistant", k, student, "clips") for k in args.ks]
    runs += [("condi_sr", k, student, c) for c in args.candidates for k in args.ks]
    runs += [("condi_sr", k, skim_student, c) for c in args.candidates for k in args.ks] if skim_student else []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        rows = with_ratios([one_run(args, videos, teacher, model, strategy, k, candidates,
                                    workdir / f"labels_{stamp}" / f"{strategy}_k{k}_{candidates}_{i}")
                            for i, (strategy, k, model, candidates) in enumerate(runs)])
        evaluated = {c: evaluated_accuracy(args, videos, teacher, student, workdir, c)
                     for c in (sorted({"clips", *args.candidates}) if args.evaluate else [])}
    finally:
        if started:
            ray.shutdown()
    for (_, _, model, candidates), row in zip(runs, rows, strict=True):
        if evaluated and model in (None, student):  # evaluate ran the first student, not the skimming one
            row["evaluate_accuracy"] = evaluated[candidates][(row["strategy"], str(row["k"]))]

    print(f"{'strategy':12} {'k':>4} {'step':>4} {'cands':>9} {'videos/s':>9} {'x dense':>8} {'frames':>9} "
          f"{'decode s':>9} {'x dense':>8} {'student s':>10} {'teacher s':>10} {'busy':>5} {'accuracy':>9} {'test':>6} "
          f"{'evaluate':>9}")
    for r in rows:
        evaluated_text = f"{r['evaluate_accuracy']:9.3f}" if "evaluate_accuracy" in r else f"{'-':>9}"
        print(f"{r['strategy']:12} {r['k']:>4} {r['student_frame_step']:>4} {r['candidates']:>9} "
              f"{r['videos_per_s']:9.3f} {r['videos_per_s_vs_dense'] or 0:8.2f} {r['frames_decoded']:9} "
              f"{r['decode_s']:9.2f} {r['decode_s_vs_dense'] or 0:8.3f} {r['student_s']:10.2f} {r['teacher_s']:10.2f} "
              f"{r['busy_share']:5.2f} {r['accuracy']:9.3f} {r['test_accuracy']:6.3f} {evaluated_text}")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    record = {
        **provenance("label_throughput", argv), "device": device,
        "archive": f"{args.videos} videos x {args.seconds:g} s, {args.width}x{args.height}, {args.classes} classes, "
                   f"seed {args.seed}" + (f", a keyframe every {args.keyint} frames" if args.keyint else ""),
        "clip": f"{args.clip_len}x{args.size}x{args.size}", "teacher": teacher, "student": student,
        "skim_student": skim_student,
        "trained_checkpoints": bool(args.teacher and args.student), "rows": rows,
    }
    write(record, args.out, f"label_throughput_{'cuda' if torch.cuda.is_available() else 'cpu'}.json")
    return record


if __name__ == "__main__":
    main()
