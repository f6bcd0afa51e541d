"""Clips per second of the paper-sized teacher and students, inference only, as the labelling job runs them.

For every model, batch size, precision, memory layout and compile setting asked for, builds the model at
``--classes`` outputs (random weights: speed does not depend on them), runs ``--warmup`` batches, then
times ``--iters`` batches of ``(B, 3, T, H, W)`` random clips under ``torch.inference_mode`` and reports
clips/s (CUDA timings synchronise before reading the clock). Settings:

* ``--dtypes fp32 bf16``: bf16 is autocast (weights stay fp32), the labelling job's mixed precision;
* ``--layouts contiguous channels_last_3d``: ``channels_last_3d`` converts model and input (NDHWC);
* ``--compile off on``: ``torch.compile`` of the model (default mode), compile time excluded;
* ``--cuda-graphs``: adds ``torch.compile(mode="reduce-overhead")`` (CUDA graphs) rows on a GPU.

A student spec may end in ``frame_step=S`` (``student:resnet3d:depth=10,width=0.25,frame_step=2``): a
skimming student (``distill --frame-step``) that scores each ``T``-frame clip from ``ceil(T / S)`` frames; its
clips/s counts whole clips, so it compares directly with the teacher's.

A setting that fails (an unsupported dtype on this device, a compile error) is a row with its error, not a
crash. The table is printed and the rows written as JSON with the machine and the command:

    python benchmarks/model_throughput.py                                   # this machine, paper sizes
    python benchmarks/model_throughput.py --models student:shufflenetv2_3d:0.25 --batch-sizes 2 \\
        --clip 4x32x32 --iters 2 --out /tmp/smoke.json                      # a smoke run
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass

import torch
from _results import provenance, write

from raycondi.models import build_model, build_student

DEFAULT_MODELS = (
    "teacher:resnext3d:101",  # the paper's teacher (48.3 M parameters at 400 classes)
    "student:shufflenetv2_3d:2.0",  # the paper's student
    "student:shufflenetv2_3d:1.0",
    "student:mobilenetv2_3d:1.0",
    "student:resnet3d:depth=10,width=0.25",  # dense 3x3x3 convolutions, fast per FLOP on a CPU
    "student:resnet3d:depth=18,width=0.5",
    "student:shufflenetv2_3d:width=2.0,frame_step=2",  # skimming: every other frame of the clip
    "student:resnet3d:depth=10,width=0.25,frame_step=2",
)


@dataclass(frozen=True)
class Row:
    model: str
    batch_size: int
    dtype: str
    layout: str
    compile: str
    clips_per_s: float | None
    ms_per_batch: float | None
    error: str | None = None


def build(spec: str, classes: int) -> tuple[torch.nn.Module, int]:
    """``role:architecture[:options]``, a teacher or a two-headed student, and the student's frame step.
    ``options`` are the builder's arguments as ``key=value`` pairs (``depth=10,width=0.25``), a student's
    ``frame_step`` among them, or one number: a teacher's ``depth``, a student's ``width``."""
    role, name, *rest = spec.split(":")
    if role not in ("teacher", "student") or len(rest) > 1:
        raise ValueError(f"{spec!r}: expected teacher:NAME[:OPTIONS] or student:NAME[:OPTIONS]")
    options = rest[0] if rest else ""
    if "=" in options:
        kwargs = {k: _number(v) for k, v in (pair.split("=") for pair in options.split(","))}
    elif options:
        kwargs = {"depth": int(options)} if role == "teacher" else {"width": float(options)}
    else:
        kwargs = {}
    frame_step = kwargs.pop("frame_step", 1)
    if role == "teacher" and frame_step != 1:
        raise ValueError(f"{spec!r}: frame_step is a student option (the teacher sees every frame)")
    return (build_model if role == "teacher" else build_student)(name, classes, **kwargs), frame_step


def _number(text: str) -> int | float | bool:
    if text in ("true", "false"):
        return text == "true"
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _forward(model: torch.nn.Module, x: torch.Tensor, dtype: str) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
        model(x)


def measure(model: torch.nn.Module, x: torch.Tensor, dtype: str, warmup: int, iters: int) -> float:
    """Seconds per batch over ``iters`` batches after ``warmup``."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            _forward(model, x, dtype)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            _forward(model, x, dtype)
        sync()
    return (time.perf_counter() - start) / iters


def run(args: argparse.Namespace) -> list[Row]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t, h, w = map(int, args.clip.split("x"))
    compiles = list(args.compile) + (["cuda_graphs"] if args.cuda_graphs and device.type == "cuda" else [])
    rows = []
    for spec in args.models:
        base, frame_step = build(spec, args.classes)
        base = base.eval().to(device)
        for layout in args.layouts:
            memory_format = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
            model = base.to(memory_format=memory_format)
            for mode in compiles:
                runnable = model if mode == "off" else torch.compile(
                    model, mode="reduce-overhead" if mode == "cuda_graphs" else None)
                for batch in args.batch_sizes:
                    frames = -(-t // frame_step)
                    x = torch.randn(batch, 3, frames, h, w, device=device).to(memory_format=memory_format)
                    for dtype in args.dtypes:
                        try:
                            seconds = measure(runnable, x, dtype, args.warmup, args.iters)
                            row = Row(spec, batch, dtype, layout, mode, batch / seconds, 1000 * seconds)
                        except Exception as error:  # one failed setting is a row, not a failed benchmark
                            row = Row(spec, batch, dtype, layout, mode, None, None, f"{type(error).__name__}: {error}")
                        rows.append(row)
                        print(_line(row), flush=True)
    return rows


def _line(row: Row) -> str:
    speed = f"{row.clips_per_s:10.1f} {row.ms_per_batch:10.2f}" if row.error is None else f"{'-':>10} {'-':>10}"
    return (f"{row.model:50} {row.batch_size:5} {row.dtype:5} {row.layout:17} {row.compile:11} {speed}"
            + (f"  {row.error[:80]}" if row.error else ""))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="role:architecture:size ...")
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--clip", default="16x112x112", help="TxHxW (default: the paper's 16x112x112)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--layouts", nargs="+", choices=("contiguous", "channels_last_3d"),
                        default=["contiguous", "channels_last_3d"])
    parser.add_argument("--compile", nargs="+", choices=("off", "on"), default=["off"])
    parser.add_argument("--cuda-graphs", action="store_true", help="also torch.compile(mode='reduce-overhead')")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/model_throughput_<device>.json)")
    args = parser.parse_args(argv)

    print(f"{'model':50} {'batch':>5} {'dtype':5} {'layout':17} {'compile':11} {'clips/s':>10} {'ms/batch':>10}")
    rows = run(args)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    record = {
        **provenance("model_throughput", argv), "device": device, "torch": torch.__version__,
        "clip": args.clip, "classes": args.classes, "warmup": args.warmup, "iters": args.iters,
        "rows": [asdict(r) for r in rows],
    }
    write(record, args.out, f"model_throughput_{'cuda' if torch.cuda.is_available() else 'cpu'}.json")
    return record


if __name__ == "__main__":
    main()
