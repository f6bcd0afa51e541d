"""Videos/s of the labelling stages on one GPU node, without Ray: the stages' own classes, decode in worker
processes, the models in this process.

Ray's wheel is too large to carry to the GPU machine, so this runs the pipeline's two halves as Ray Data would,
by hand: ``--workers`` processes each hold the CPU stage (:class:`~raycondi.pipeline.gpu.DecodeClips` for the
samplers, :class:`~raycondi.pipeline.stages.ScoreAndSelect` for Dense) and decode one video per task; this
process runs the GPU stage (:class:`~raycondi.pipeline.gpu.GPUScoreSelectPredict`, or
:class:`~raycondi.pipeline.stages.TeacherPredict` for Dense) on ``--videos-per-call`` videos at a time, as they
arrive, with at most two videos per worker in flight. Per strategy it reports:

* ``videos_per_s``: videos over the wall time of the run (checkpoint loading and tuning excluded: one warm-up
  video first);
* ``gpu_stage_share``: the share of the wall time this process spent in the GPU stage (the GPU is idle outside
  it), and ``nvml_busy`` (NVML's utilisation sampled every 0.1 s, where ``pynvml`` exists);
* ``decode_bound_videos_per_s``: the same workers decoding the same videos with no model running, the rate no
  GPU could beat; ``of_decode_bound`` is the run's share of it.

Strategies: ``dense``, ``condi_sr`` at K = ``--k`` on every clip, and on keyframe candidates (``--keyframes``,
the cheapest decode of a sampler). The synthetic ``--seconds``-long videos and random-weight checkpoints are made
under ``--workdir``. Writes ``results/gpu_harness_<device>.json``:

    python benchmarks/gpu_harness.py                                        # the GPU node: 60 s videos
    python benchmarks/gpu_harness.py --videos 4 --seconds 4 --width 64 --height 48 --size 32 --clip-len 4 \\
        --teacher-arch shufflenetv2_3d --student-width 0.25 --workers 2     # a CPU smoke run
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import pyarrow as pa
import torch
from _archive import add_archive_options, make_archive, random_checkpoints
from _results import provenance, write

from raycondi.pipeline import LabelConfig, check_models, list_videos
from raycondi.pipeline.gpu import DecodeClips, GPUScoreSelectPredict
from raycondi.pipeline.stages import ScoreAndSelect, TeacherPredict

_stage = None  # the CPU stage of the worker process


def _start(stage_class: type, config: LabelConfig, decoder: str) -> None:
    global _stage
    torch.set_num_threads(1)
    options = {"decoder": decoder} if stage_class is DecodeClips else {}
    _stage = stage_class(config, *check_models(config), **options)


def _decode(video: dict[str, str]) -> object:
    """One video through the worker's CPU stage: a DecodeClips row (Arrow) or a ScoreAndSelect Selection."""
    if isinstance(_stage, DecodeClips):
        return _stage(pa.Table.from_pylist([video]))
    return _stage.select(video)


class Busy:
    """NVML's GPU utilisation, sampled every 0.1 s while running (None without pynvml or a GPU)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle, self.nvml = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml
        except Exception:  # no NVML here: the stage share alone
            self.handle = None

    def __enter__(self) -> Busy:
        if self.handle is not None:
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.1):
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __exit__(self, *exc) -> None:
        self.stop.set()

    @property
    def share(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def run(config: LabelConfig, videos: list[dict[str, str]], workers: int, per_call: int, gpus: float,
        decoder: str = "pyav", with_models: bool = True) -> dict:
    """One strategy over ``videos`` (module docstring); ``with_models=False`` decodes only."""
    sampler = config.uses_student
    stage_class = DecodeClips if sampler else ScoreAndSelect
    gpu_stage = (GPUScoreSelectPredict(config, gpus) if sampler else TeacherPredict(config, gpus)) \
        if with_models else None

    def consume(results: list) -> float:
        if gpu_stage is None:
            return 0.0
        started = time.perf_counter()
        if sampler:
            gpu_stage(pa.concat_tables(results))
        else:
            gpu_stage.predict(results)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - started

    context = multiprocessing.get_context("spawn")  # the workers never inherit this process's CUDA context
    with ProcessPoolExecutor(workers, context, initializer=_start, initargs=(stage_class, config, decoder)) as pool:
        consume([pool.submit(_decode, videos[0]).result()])  # warm-up: load, tune, cuDNN's search
        in_stage, ready, pending = 0.0, [], set()
        todo = iter(videos)
        with Busy() as busy:
            started = time.perf_counter()
            while True:
                while len(pending) < 2 * workers and (video := next(todo, None)) is not None:
                    pending.add(pool.submit(_decode, video))
                if not pending and not ready:
                    break
                done: set[Future] = set()
                if pending:
                    done, pending = wait(pending, timeout=None if not ready else 0, return_when=FIRST_COMPLETED)
                ready += [f.result() for f in done]
                if len(ready) >= per_call or (ready and not pending):
                    in_stage += consume(ready[:per_call])
                    ready = ready[per_call:]
            seconds = time.perf_counter() - started
    return {"videos": len(videos), "seconds": seconds, "videos_per_s": len(videos) / seconds,
            "gpu_stage_share": in_stage / seconds if with_models else None, "nvml_busy": busy.share}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_archive_options(parser, videos=32)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--keyframes", action=argparse.BooleanOptionalAction, default=True,
                        help="also ConDi-SR on keyframe candidates")
    parser.add_argument("--decoder", nargs="+", choices=("pyav", "nvdec"), default=["pyav"],
                        help="the samplers' decoders to run (nvdec: PyNvVideoCodec in the workers)")
    parser.add_argument("--inference", default="auto", help="LabelConfig.inference for both models")
    parser.add_argument("--student-batch-size", type=int, default=64)
    parser.add_argument("--teacher-batch-size", type=int, default=64)
    parser.add_argument("--videos-per-call", type=int, default=8)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--workdir", default="/tmp/raycondi-gpu-harness")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/gpu_harness_<device>.json)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    archive = make_archive(args, workdir)
    teacher, student, _ = random_checkpoints(args, workdir)
    videos = list_videos(str(archive)).to_pylist()[: args.videos]
    cuda = torch.cuda.is_available()
    gpus = 1.0 if cuda else 0.0
    runs = [("dense", "clips", "pyav")] + [("condi_sr", "clips", d) for d in args.decoder]
    runs += [("condi_sr", "keyframes", "pyav")] * args.keyframes
    rows = []
    for strategy, candidates, decoder in runs:
        config = LabelConfig(str(archive), str(workdir / "unused"), teacher, student, k=args.k, strategy=strategy,
                             candidates=candidates, inference=args.inference,
                             student_batch_size=args.student_batch_size, teacher_batch_size=args.teacher_batch_size)
        measured = run(config, videos, args.workers, args.videos_per_call, gpus, decoder)
        bound = run(config, videos, args.workers, args.videos_per_call, gpus, decoder, with_models=False)
        rows.append({"strategy": strategy, "k": "all" if strategy == "dense" else args.k, "candidates": candidates,
                     "decoder": decoder,
                     **measured, "decode_bound_videos_per_s": bound["videos_per_s"],
                     "of_decode_bound": measured["videos_per_s"] / bound["videos_per_s"]})
    dense = rows[0]["videos_per_s"]
    for row in rows:
        row["vs_dense"] = row["videos_per_s"] / dense
    print(f"{'strategy':10} {'candidates':10} {'decoder':7} {'videos/s':>9} {'x Dense':>8} {'GPU stage':>9} "
          f"{'NVML':>6} {'decode bound':>12} {'of bound':>8}")
    for r in rows:
        nvml = f"{r['nvml_busy']:6.2f}" if r["nvml_busy"] is not None else f"{'-':>6}"
        print(f"{r['strategy']:10} {r['candidates']:10} {r['decoder']:7} {r['videos_per_s']:9.3f} {r['vs_dense']:8.2f} "
              f"{r['gpu_stage_share']:9.2f} {nvml} {r['decode_bound_videos_per_s']:12.3f} {r['of_decode_bound']:8.2f}")
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    record = {**provenance("gpu_harness", argv), "device": device, "torch": torch.__version__,
              "workers": args.workers, "videos_per_call": args.videos_per_call, "rows": rows}
    write(record, args.out, f"gpu_harness_{'cuda' if cuda else 'cpu'}.json")
    return record


if __name__ == "__main__":
    main()
