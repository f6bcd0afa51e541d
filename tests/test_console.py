"""Quiet by default (raycondi.console) and training progress (raycondi.train.progress): Ray's lines go to the log
file, raycondi's stay on the terminal; rank 0's steps and metrics reach the driver through a real actor."""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys
import textwrap
import threading

import pytest
import ray

from raycondi.console import log_uri, quiet
from raycondi.train.progress import Board, Progress, fit, metrics_line

# Every kind of line a driver's terminal gets from Ray, written under quiet() in a process whose standard
# error is a terminal (a pseudo-terminal here).
_NOISY = textwrap.dedent("""
    import logging, os, sys, warnings
    from raycondi.console import quiet
    with quiet(sys.argv[1]):
        logging.getLogger("ray").info("ray INFO line")
        logging.getLogger("ray.data").warning("ray.data WARNING line")
        logging.getLogger("ray.data").error("ray.data ERROR line")
        os.write(2, b"[2026 E 1 1] core_worker.cc:2465: native line\\n")
        warnings.warn("a python warning")
        from ray._private import worker  # as the driver's error listener prints the raylet's messages
        worker.print_to_stdstream({"lines": ["WARNING: 8 PYTHON worker processes have been started"], "pid": "raylet",
                                   "is_err": False}, ignore_prefix=False)
        worker.print_to_stdstream({"lines": ["A worker died or was killed while executing a task"], "pid": "raylet",
                                   "is_err": False}, ignore_prefix=False)
        print("raycondi: our own line", file=sys.stderr)
        logging.getLogger("raycondi.label").warning("raycondi logger line")
    print("after", file=sys.stderr)
""")


def _on_a_terminal(code: str, *args: str) -> str:
    """Run ``code`` with stdout and stderr on a pseudo-terminal; what the terminal showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", "import logging; logging.basicConfig(); " + code, *args],
                               stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=60) == 0, shown.decode(errors="replace")
    os.close(leader)
    return shown.decode(errors="replace").replace("\r\n", "\n")


def test_ray_lines_go_to_the_log_and_ours_stay_on_the_terminal(tmp_path):
    log = str(tmp_path / "out" / "_logs" / "label.log")
    shown = _on_a_terminal(_NOISY, log)
    assert "raycondi: our own line" in shown and "raycondi logger line" in shown and "after" in shown
    assert "A worker died or was killed while executing a task" in shown  # errors still reach the terminal
    assert "ray.data ERROR line" in shown
    for noise in ("ray INFO line", "ray.data WARNING line", "native line", "a python warning", "PYTHON worker"):
        assert noise not in shown, shown
    assert f"raycondi: Ray's log lines are in {log}" in shown
    kept = open(log).read()
    for noise in ("ray INFO line", "ray.data WARNING line", "core_worker.cc:2465: native line", "a python warning",
                  "WARNING: 8 PYTHON worker processes have been started"):
        assert noise in kept, kept
    assert "our own line" not in kept


def test_a_command_that_logged_nothing_leaves_no_file(tmp_path, capsys):
    uri = log_uri(str(tmp_path / "out"), "label")
    assert uri.startswith(str(tmp_path / "out" / "_logs" / "label-")) and uri.endswith(".log")
    with quiet(uri):
        print("raycondi label: --k 0: must be at least 1", file=sys.stderr)
    assert capsys.readouterr().err == "raycondi label: --k 0: must be at least 1\n"
    assert not (tmp_path / "out").exists()


def test_the_log_is_kept_on_s3(s3_server, capsys):
    uri = f"s3://{s3_server.bucket}/labels/_logs/label-1.log"
    with quiet(uri):
        logging.getLogger("ray.data").warning("kept on S3")
    assert b"kept on S3" in s3_server.client().get_object(Bucket=s3_server.bucket, Key="labels/_logs/label-1.log")["Body"].read()
    assert capsys.readouterr().err.strip() == f"raycondi: Ray's log lines are in {uri} (--verbose shows them on the " \
                                              "terminal)"


def test_the_metrics_line():
    line = metrics_line("teacher", 5, {"epoch": 3, "train_loss": 0.83449, "val_clip_accuracy": 0.6, "steps": 12})
    assert line == "teacher epoch 3/5: train_loss 0.834, val_clip_accuracy 0.600, steps 12"


def test_rank_zero_posts_its_steps_and_metrics(ray_runtime):
    board = Board.remote()
    assert list(Progress(board, rank=0).steps(range(5), epoch=2)) == [0, 1, 2, 3, 4]
    Progress(board, rank=0).epoch({"epoch": 3, "train_loss": 0.5})
    assert list(Progress(board, rank=1).steps(range(4), epoch=2)) == [0, 1, 2, 3]  # other ranks post nothing
    Progress(board, rank=1).epoch({"epoch": 3, "train_loss": 9.0})
    assert ray.get(board.take.remote()) == [{"epoch": 2, "step": 5, "steps": 5},
                                            {"metrics": {"epoch": 3, "train_loss": 0.5}}]
    assert ray.get(board.take.remote()) == []
    assert list(Progress().steps(range(3), epoch=0)) == [0, 1, 2]  # a Tune trial: no board


class _Trainer:
    """Stands in for a TorchTrainer: its fit() posts as rank 0 of a one-epoch run does, or is interrupted."""

    def __init__(self, board, interrupt: bool = False) -> None:
        self.board, self.interrupt = board, interrupt

    def fit(self) -> str:
        if self.interrupt:
            raise KeyboardInterrupt  # Ctrl-C reaches fit() on the calling thread, where Ray Train handles it
        progress = Progress(self.board)
        list(progress.steps(range(3), epoch=0))
        progress.epoch({"epoch": 1, "train_loss": 0.25})
        return "result"


def test_fit_draws_the_progress_and_leaves_ctrl_c_to_the_run(ray_runtime, capsys):
    board = Board.remote()
    assert fit(_Trainer(board), board, "teacher", 1) == "result"
    assert "teacher epoch 1/1: train_loss 0.250" in capsys.readouterr().err  # drawn after fit() returned, too
    with pytest.raises(KeyboardInterrupt):
        fit(_Trainer(board, interrupt=True), board, "teacher", 1)
    assert not [t for t in threading.enumerate() if t.name == "raycondi-progress"]  # the drawing stopped with it
