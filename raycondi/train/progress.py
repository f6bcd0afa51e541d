"""Training progress on the driver's terminal: the epoch, the step, and each epoch's metrics as they land.

The loop runs in Ray Train workers, whose output does not reach the driver (:mod:`raycondi.console`), and the
driver waits in ``trainer.fit()``. So rank 0 posts its progress to a :class:`Board`, a small actor of the
run, and :func:`fit` runs ``trainer.fit()`` while a thread of its own polls the board and draws a tqdm bar per
epoch (steps, rate, time left once the first epoch has told how many steps an epoch has), then the epoch's
metrics on one line. Without a terminal the bars are off and only the metric lines are printed. A Ray Tune
trial runs the loop without a board (Tune reports its trials itself): :class:`Progress` then does nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import ray
from tqdm import tqdm

__all__ = ["Board", "Progress", "fit", "metrics_line"]

_POST_EVERY_S = 0.5  # a step is a few milliseconds on GPU: post at most twice a second
_POLL_S = 0.5


@ray.remote(num_cpus=0)
class Board:
    """The events rank 0 has posted and the driver has not taken yet."""

    def __init__(self) -> None:
        self._events: list[dict] = []

    def post(self, event: dict) -> None:
        self._events.append(event)

    def take(self) -> list[dict]:
        events, self._events = self._events, []
        return events


class Progress:
    """The worker's side: :meth:`steps` counts an epoch's batches, :meth:`epoch` posts its metrics; rank 0
    only, and nothing at all without a board."""

    def __init__(self, board: Any = None, rank: int = 0) -> None:
        self.board = board if rank == 0 else None

    def steps(self, batches: Iterable, epoch: int) -> Iterator:
        if self.board is None:
            yield from batches
            return
        posted, step = time.monotonic(), 0
        for step, batch in enumerate(batches, 1):
            yield batch
            if time.monotonic() - posted > _POST_EVERY_S:
                self.board.post.remote({"epoch": epoch, "step": step})
                posted = time.monotonic()
        self.board.post.remote({"epoch": epoch, "step": step, "steps": step})

    def epoch(self, metrics: Mapping[str, Any]) -> None:
        if self.board is not None:
            self.board.post.remote({"metrics": dict(metrics)})


def metrics_line(title: str, epochs: int, metrics: Mapping[str, Any]) -> str:
    """``teacher epoch 3/5: train_loss 0.834, val_clip_accuracy 0.612`` (floats to 3 decimals)."""
    shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in metrics.items() if k != "epoch")
    return f"{title} epoch {metrics.get('epoch', '?')}/{epochs}: {shown}"


class _Bars:
    """The driver's side: one bar per epoch, replaced by its metric line when the epoch's metrics land."""

    def __init__(self, title: str, epochs: int) -> None:
        self.title, self.epochs = title, epochs
        self.bar: tqdm | None = None
        self.epoch = 0
        self.steps_per_epoch: int | None = None

    def show(self, event: dict) -> None:
        if "metrics" in event:
            self.close()
            tqdm.write(metrics_line(self.title, self.epochs, event["metrics"]), file=sys.stderr)
            return
        if event["epoch"] != self.epoch or self.bar is None:
            self.close()
            self.epoch = event["epoch"]
            self.bar = tqdm(total=self.steps_per_epoch, desc=f"{self.title} epoch {self.epoch + 1}/{self.epochs}",
                            unit="step", leave=False, file=sys.stderr, disable=None, dynamic_ncols=True)
        self.bar.update(event["step"] - self.bar.n)
        if "steps" in event:
            self.steps_per_epoch = event["steps"]

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _watch(board: Any, stop: threading.Event, bars: _Bars) -> None:
    while True:
        last = stop.wait(_POLL_S)  # once stopped, one more take: the last epoch's metrics
        try:
            events = ray.get(board.take.remote(), timeout=10)
        except (ray.exceptions.RayError, TimeoutError):  # progress is a courtesy: never fail the run for it
            events = []
        for event in events:
            bars.show(event)
        if last:
            bars.close()
            return


def fit(trainer: Any, board: Any, title: str, epochs: int) -> Any:
    """``trainer.fit()`` with its progress drawn from ``board`` (module docstring); its result.

    ``fit()`` runs on the calling thread and the drawing in a daemon thread: Ray Train installs its Ctrl-C handler
    (stop the run, keep its checkpoints) only when ``fit()`` runs on the main thread."""
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(board, stop, _Bars(title, epochs)), name="raycondi-progress",
                               daemon=True)
    watcher.start()
    try:
        return trainer.fit()
    finally:
        stop.set()
        watcher.join(timeout=15)
