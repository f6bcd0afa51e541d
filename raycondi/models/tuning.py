"""How a model runs at inference on a GPU: precision, memory layout, ``torch.compile`` and CUDA graphs, chosen per
model from measurements where it will run.

The fastest setting differs per model and per GPU: on an H100 the paper's ResNeXt-101 teacher is slower in bf16
than in fp32 (grouped 3D convolutions), while the depthwise students gain from bf16 and from CUDA graphs, whose
small kernels leave the GPU idle between launches in eager mode. So nothing is assumed: :func:`tune` times the
candidate settings (:data:`raycondi.inference.CHOICES`) on a batch of the model's own input shape and keeps the
fastest. The choices:

* ``auto``: fp32 and bf16 autocast, each contiguous and ``channels_last_3d``, eager (a few seconds per model);
* ``auto-compile``: those and ``torch.compile`` (default mode and ``reduce-overhead``, i.e. CUDA graphs) of the
  fastest eager setting, a minute or more per model, paid once per actor;
* ``fp32``: the reference, fp32 eager and contiguous, measured nothing;
* an explicit setting, ``DTYPE[+channels_last_3d][+compile|+cuda_graphs]`` (``bf16+channels_last_3d+cuda_graphs``).

A compiled model always sees full batches of ``batch_size`` (a short last batch is padded, its padding dropped),
so it is traced once and its CUDA graph replayed. On CPU, ``auto`` keeps :func:`~raycondi.models.checkpoint.
for_inference`'s layout and fp32 and measures nothing; explicit settings apply there too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from raycondi.inference import CHOICES, InferenceSettings

__all__ = ["TunedModel", "tune"]

logger = logging.getLogger("raycondi.tuning")

Output = torch.Tensor | tuple[torch.Tensor, ...]


class TunedModel:
    """``model`` (eval mode, on its device) run under ``settings``: float input in, the model's output out, in fp32.

    A compiled model runs on batches of exactly ``batch_size`` clips (shorter ones padded with their last clip)."""

    def __init__(self, model: nn.Module, settings: InferenceSettings, batch_size: int) -> None:
        memory_format = torch.channels_last_3d if settings.layout == "channels_last_3d" else torch.contiguous_format
        self.settings, self.batch_size, self.memory_format = settings, batch_size, memory_format
        self.model = model.to(memory_format=memory_format) if settings.layout == "channels_last_3d" else model
        self.run: Callable[[torch.Tensor], Output] = self.model if settings.compile == "off" else torch.compile(
            self.model, mode="reduce-overhead" if settings.compile == "cuda_graphs" else None)

    def __call__(self, x: torch.Tensor) -> Output:
        n = len(x)
        if self.settings.compile != "off" and n < self.batch_size:
            x = torch.cat([x, x[-1:].expand(self.batch_size - n, *x.shape[1:])])
        if self.settings.layout == "channels_last_3d":
            x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.settings.dtype == "bf16"):
            output = self.run(x)
        graphed = self.settings.compile == "cuda_graphs"  # a CUDA graph reuses its output buffers: copy them out
        outputs = [(o[:n].float().clone() if graphed else o[:n].float())
                   for o in (output if isinstance(output, tuple) else (output,))]
        return tuple(outputs) if isinstance(output, tuple) else outputs[0]


def _seconds(model: TunedModel, x: torch.Tensor, iters: int) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(2):  # warm-up: cuDNN's algorithm search, compilation, graph capture
            model(x)
        sync()
        started = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync()
    return (time.perf_counter() - started) / iters


def tune(
    model: nn.Module, example: torch.Tensor, choice: str = "auto", *, name: str = "model", iters: int = 5,
    measure: bool | None = None,
) -> tuple[TunedModel, dict[str, float]]:
    """``model`` (eval mode, on ``example``'s device) under the setting ``choice`` picks (module docstring), timed on
    ``example``, one full batch of the model's input; ``measure`` (default: on CUDA only) says whether ``auto``
    measures. Returns the model and the measured seconds per batch of each setting tried (empty when nothing was
    measured); logs the choice and the table."""
    batch_size = len(example)
    if choice not in CHOICES:
        return TunedModel(model, InferenceSettings.parse(choice), batch_size), {}
    if choice == "fp32" or not (example.device.type == "cuda" if measure is None else measure):
        return TunedModel(model, InferenceSettings(), batch_size), {}
    timings: dict[str, float] = {}
    tried = [InferenceSettings(dtype, layout) for dtype in ("fp32", "bf16")
             for layout in ("contiguous", "channels_last_3d")]
    for settings in tried:
        _measure(model, settings, example, iters, timings)
    if choice == "auto-compile":  # compiling is slow: only the fastest eager setting is compiled
        fastest = min(tried, key=lambda s: timings[str(s)])
        for mode in ("default", "cuda_graphs"):
            tried.append(replace(fastest, compile=mode))
            _measure(model, tried[-1], example, iters, timings)
    best = min(tried, key=lambda s: timings[str(s)])  # all failed: fp32, the first
    table = ", ".join(f"{k} {batch_size / v:,.0f}" for k, v in timings.items() if v != float("inf"))
    logger.info("%s: %s at batch %d (clips/s: %s)", name, best, batch_size, table)
    return TunedModel(model, best, batch_size), timings


def _measure(model: nn.Module, settings: InferenceSettings, example: torch.Tensor, iters: int,
             timings: dict[str, float]) -> None:
    """Seconds per batch of ``model`` under ``settings``, recorded in ``timings`` (inf when the setting fails
    here: an unsupported kernel, a compile error; the failure is logged)."""
    try:
        seconds = _seconds(TunedModel(model, settings, len(example)), example, iters)
    except Exception as error:  # a setting this GPU cannot run is skipped, not fatal
        logger.warning("inference setting %s failed: %s: %s", settings, type(error).__name__, error)
        seconds = float("inf")
    timings[str(settings)] = seconds
    model.to(memory_format=torch.contiguous_format)  # the next candidate starts from the checkpoint's layout
