"""Memory over a long run of many short videos: is it flat? The driver's and the Ray processes' RSS, per quarter.

Generates ``--videos`` short synthetic videos (reused when they exist in ``--workdir``), saves tiny random-init
checkpoints, starts a local Ray with ``--num-cpus`` CPUs and labels them all in one run, sampling every
``--interval`` seconds the RSS of this driver and of every process of the Ray instance (GCS, raylet, agents,
workers and actors; :class:`label_memory.Sampler`). Memory is flat when the last quarter of the run peaks no
higher than the first: ``growth_driver`` and ``growth_ray`` are those ratios (last quarter's peak over the first
quarter's), and the exactly-once count of the output is checked.

    python benchmarks/label_many.py                     # 2,000 videos of 1.6 s, 2 CPUs

The table is printed and the figures written to ``benchmarks/results/label_many_{videos}.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import ray
import torch
from label_memory import Sampler

from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.models import CheckpointConfig, build_model, build_student, save_checkpoint
from raycondi.pipeline import LabelConfig, label_videos, list_videos
from raycondi.pipeline.sink import output_files

RESULTS = Path(__file__).parent / "results"
MIB = 1 << 20


def make_inputs(args: argparse.Namespace, workdir: Path) -> tuple[str, str, str]:
    videos = workdir / f"videos_{args.videos}"
    if not (videos / "classInd.txt").exists():
        started = time.perf_counter()
        generate_dataset(str(videos), SynthConfig(videos=args.videos, classes=3, fps=10, width=64, height=48,
                                                  clip_len=4, min_seconds=args.seconds, max_seconds=args.seconds))
        print(f"generated {args.videos} videos in {time.perf_counter() - started:.0f} s")
    torch.manual_seed(0)
    names = ("MoveLeft", "MoveRight", "RotateCW")
    common = dict(num_classes=3, class_names=names, clip_len=4, crop_size=32)
    save_checkpoint(build_model("shufflenetv2_3d", 3, width=0.5), str(workdir / "teacher"),
                    CheckpointConfig("shufflenetv2_3d", model_kwargs={"width": 0.5}, **common))
    save_checkpoint(build_student("shufflenetv2_3d", 3, width=0.25), str(workdir / "student"),
                    CheckpointConfig("shufflenetv2_3d", student=True, model_kwargs={"width": 0.25}, **common))
    return str(videos), str(workdir / "teacher"), str(workdir / "student")


def quarters(series: list[tuple[float, int, int, int]], column: int) -> list[float]:
    """The peak of ``column`` in each quarter of the run, in MiB."""
    end = series[-1][0]
    return [round(max((s[column] for s in series if q * end / 4 <= s[0] <= (q + 1) * end / 4), default=0) / MIB, 1)
            for q in range(4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=1.6, help="length of each video (default 1.6)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--workdir", default=None, help="where the videos and checkpoints go (default: a temp dir)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="label_many_"))
    workdir.mkdir(parents=True, exist_ok=True)
    videos, teacher, student = make_inputs(args, workdir)
    output = workdir / f"labels_{time.strftime('%Y%m%d-%H%M%S')}"
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    job = Sampler(args.interval)
    job.start()
    summary = label_videos(LabelConfig(videos, str(output), teacher, student, k=2))
    job.stop()
    ray.shutdown()

    ids = Counter(i for f in output_files(str(output), None) for i in pq.read_table(f, columns=["video_id"])
                  ["video_id"].to_pylist())
    expected = set(list_videos(videos)["video_id"].to_pylist())
    driver, ray_rss = quarters(job.series, 3), quarters(job.series, 1)
    result = {
        "videos": args.videos, "video_seconds": args.seconds, "num_cpus": args.num_cpus, "plan": summary.plan,
        "videos_ok": summary.videos_ok, "videos_error": summary.videos_error, "job_seconds": round(summary.seconds, 1),
        "videos_per_second": round(summary.videos_per_second or 0, 2), "files": len(summary.files),
        "rows_once": sum(n == 1 for n in ids.values()), "duplicates": sum(n > 1 for n in ids.values()),
        "missing": len(expected - set(ids)),
        "driver_rss_mib_by_quarter": driver, "ray_rss_mib_by_quarter": ray_rss,
        "growth_driver": round(driver[3] / driver[0], 3), "growth_ray": round(ray_rss[3] / ray_rss[0], 3),
        "samples": job.samples,
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    path = RESULTS / f"label_many_{args.videos}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
