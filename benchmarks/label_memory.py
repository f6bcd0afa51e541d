"""Peak memory of the labelling pipeline on one long video, above the idle Ray baseline.

Generates a synthetic video of ``--minutes`` minutes (:mod:`raycondi.datasets.synthetic`; the file is reused
when it already exists in ``--workdir``), saves random-init teacher and student checkpoints at the paper's
clip geometry (16 frames of 112x112 by default), starts a local Ray with ``--num-cpus`` CPUs, and measures
the memory of this Ray instance's processes (GCS, raylet, dashboard agents, workers and actors: every
descendant of the head processes; not this driver) by reading ``/proc`` every ``--interval`` seconds:

* idle baseline: the largest sample over a few seconds after ``ray.init``, before the job starts;
* peak: the largest sample while :func:`raycondi.pipeline.label.label_videos` runs.

Two sums are reported: RSS (what ``ps`` shows; shared pages such as Ray's object store are counted once per
process that maps them, so this over-counts) and PSS (shared pages split between the processes mapping them).

The first Ray Data job on a cluster starts Ray Data's *detached* actors (``_StatsActor``,
``_AutoscalingCoordinatorActor``, ``ActorLocationTracker``; ``lifetime="detached"`` in ``ray.data._internal``):
they stay up for the cluster's life whatever job comes next, so they belong to an idle Ray cluster that
runs Ray Data, not to this pipeline. ``pipeline_rss_gib`` is the peak above the idle baseline without them;
``peak_above_idle_rss_gib`` keeps them in. The target of issue 5 is ``pipeline_rss_gib`` below 1.5 GB.
Every process at the peak is listed with its RSS and PSS.

    python benchmarks/label_memory.py                     # 10-minute 320x240 video, K=5
    python benchmarks/label_memory.py --minutes 1 --k 8   # quicker

The table is printed and the figures written to ``benchmarks/results/label_memory_{minutes}min.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import ray
import torch

from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.models import CheckpointConfig, build_model, build_student, save_checkpoint
from raycondi.pipeline import LabelConfig, label_videos

RESULTS = Path(__file__).parent / "results"
RAY_DATA_DETACHED = ("ray::_StatsActor", "ray::_AutoscalingCoordinatorActor", "ray::ActorLocationTracker")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    return children


def ray_pids() -> set[int]:
    """This Ray instance's processes: its head processes and all their descendants."""
    node = ray._private.worker._global_node
    roots = [p.process.pid for handles in node.all_processes.values() for p in handles]
    children, found = _children(), set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack += children.get(pid, [])
    return found


def process_memory(pids: set[int]) -> dict[int, tuple[str, int, int]]:
    """``{pid: (name, RSS, PSS)}`` in bytes for those of ``pids`` still running."""
    found = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
            pss = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                       if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
        found[pid] = (name, rss, pss)
    return found


class Sampler(threading.Thread):
    """Samples :func:`memory` of :func:`ray_pids` every ``interval`` seconds, keeping the maxima and, in
    ``series``, ``(seconds since start, Ray RSS, Ray PSS, this driver's RSS)`` of every sample."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval, self.stopped = interval, threading.Event()
        self.peak_rss = self.peak_pss = self.samples = 0
        self.at_peak: dict[int, tuple[str, int, int]] = {}
        self.series: list[tuple[float, int, int, int]] = []

    def run(self) -> None:
        started = time.perf_counter()
        while not self.stopped.is_set():
            processes = process_memory(ray_pids())
            rss = sum(r for _, r, _ in processes.values())
            pss = sum(p for _, _, p in processes.values())
            if rss > self.peak_rss:
                self.at_peak = processes
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            driver = process_memory({os.getpid()}).get(os.getpid(), ("", 0, 0))[1]
            self.series.append((time.perf_counter() - started, rss, pss, driver))
            self.samples += 1
            self.stopped.wait(self.interval)

    def stop(self) -> Sampler:
        self.stopped.set()
        self.join()
        return self


def make_inputs(args: argparse.Namespace, workdir: Path) -> tuple[str, str, str]:
    videos = workdir / f"video_{args.minutes:g}min_{args.width}x{args.height}"
    if not (videos / "classInd.txt").exists():
        started = time.perf_counter()
        seconds = args.minutes * 60
        generate_dataset(str(videos), SynthConfig(videos=1, classes=2, width=args.width, height=args.height,
                                                  min_seconds=seconds, max_seconds=seconds), workers=1)
        print(f"generated a {args.minutes:g}-minute video in {time.perf_counter() - started:.0f} s")
    names = ("MoveLeft", "MoveRight")
    common = dict(num_classes=2, class_names=names, clip_len=args.clip_len, crop_size=args.crop)
    teacher = build_model(args.teacher, 2)
    save_checkpoint(teacher, str(workdir / "teacher"), CheckpointConfig(args.teacher, **common))
    student = build_student("shufflenetv2_3d", 2, width=args.student_width)
    save_checkpoint(student, str(workdir / "student"), CheckpointConfig(
        "shufflenetv2_3d", student=True, model_kwargs={"width": args.student_width}, **common))
    return str(videos), str(workdir / "teacher"), str(workdir / "student")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--teacher", default="r3d_18", help="teacher architecture (default r3d_18)")
    parser.add_argument("--student-width", type=float, default=1.0, help="shufflenetv2_3d width of the student")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--stages", choices=("auto", "split", "fused"), default="auto",
                        help="the labelling job's stages option (auto fuses them on CPU)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples")
    parser.add_argument("--workdir", default=None, help="where the video and checkpoints go (default: a temp dir)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="label_memory_"))
    workdir.mkdir(parents=True, exist_ok=True)
    videos, teacher, student = make_inputs(args, workdir)
    output = workdir / f"labels_{time.strftime('%Y%m%d-%H%M%S')}"

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    time.sleep(5.0)  # let the head processes settle
    idle = Sampler(args.interval)
    idle.start()
    time.sleep(3.0)
    idle.stop()

    config = LabelConfig(videos, str(output), teacher, student, k=args.k, stages=args.stages)
    job = Sampler(args.interval)
    job.start()
    summary = label_videos(config)
    job.stop()
    ray.shutdown()

    gib = 1 << 30
    result = {
        "video_minutes": args.minutes, "resolution": f"{args.width}x{args.height}",
        "clip": f"{args.clip_len}x{args.crop}x{args.crop}", "k": args.k, "teacher": args.teacher,
        "student": f"shufflenetv2_3d width {args.student_width}", "num_cpus": args.num_cpus,
        "plan": summary.plan, "num_clips": summary.dense_clips, "clips_to_teacher": summary.clips_to_teacher,
        "videos_ok": summary.videos_ok, "job_seconds": round(summary.seconds, 1),
        "idle_rss_gib": round(idle.peak_rss / gib, 3), "peak_rss_gib": round(job.peak_rss / gib, 3),
        "peak_above_idle_rss_gib": round((job.peak_rss - idle.peak_rss) / gib, 3),
        "idle_pss_gib": round(idle.peak_pss / gib, 3), "peak_pss_gib": round(job.peak_pss / gib, 3),
        "peak_above_idle_pss_gib": round((job.peak_pss - idle.peak_pss) / gib, 3),
        "samples": job.samples, "target_gib": 1.5, "host": platform.node(), "torch_threads": torch.get_num_threads(),
    }
    detached = sum(rss for name, rss, _ in job.at_peak.values() if name in RAY_DATA_DETACHED)
    result["ray_data_detached_rss_gib"] = round(detached / gib, 3)
    result["pipeline_rss_gib"] = round((job.peak_rss - idle.peak_rss - detached) / gib, 3)
    result["within_target"] = result["pipeline_rss_gib"] < result["target_gib"]
    result["processes_at_peak"] = sorted(
        ({"pid": pid, "name": name, "rss_mib": round(rss / (1 << 20)), "pss_mib": round(pss / (1 << 20))}
         for pid, (name, rss, pss) in job.at_peak.items()), key=lambda p: -p["rss_mib"])
    width = max(map(len, result))
    for key, value in result.items():
        if key != "processes_at_peak":
            print(f"{key:<{width}}  {value}")
    print("\nprocesses at the peak (RSS MiB, PSS MiB, name):")
    for process in result["processes_at_peak"]:
        print(f"  {process['rss_mib']:>6} {process['pss_mib']:>6}  {process['name']}")
    path = RESULTS / f"label_memory_{args.minutes:g}min{'' if args.stages == 'auto' else '_' + args.stages}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
