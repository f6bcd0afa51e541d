"""Interrupting a training run (SIGKILL of the driver and the Ray it started) and starting it again with the
same output continues from the last reported epoch instead of epoch 0."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from raycondi.datasets.shards import prepare
from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.video.decode import ClipSpec

pytestmark = pytest.mark.slow

RUN = """
import sys, ray
from raycondi.train.teacher import TeacherConfig, train_teacher
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
train_teacher(TeacherConfig(clips=sys.argv[1], out=sys.argv[2], model_kwargs={"width": 0.25}, crop_size=16,
                            epochs=3, batch_size=8, lr=0.02))
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ray_runtime):
    root = tmp_path_factory.mktemp("resume")
    generate_dataset(str(root / "videos"), SynthConfig(videos=12, classes=3, width=64, height=48, clip_len=4,
                                                       max_seconds=3.0), workers=1)
    prepare(str(root / "videos"), str(root / "clips"), clip=ClipSpec(clip_len=4, size=20))
    return str(root / "clips")


def _reported_epochs(run: Path) -> list[int]:
    snapshot = run / "checkpoint_manager_snapshot.json"
    if not snapshot.exists():
        return []
    try:
        return [r["metrics"]["epoch"] for r in json.loads(snapshot.read_text())["checkpoint_results"]]
    except (json.JSONDecodeError, KeyError):  # being rewritten
        return []


def _assert_resumed_after(run: Path, interrupted_at: list[int]) -> None:
    """The run reached epoch 3 and trained no epoch it had reported before the interruption a second time.

    The interruption can land while the next epoch's checkpoint is being written: that checkpoint then stays
    on disk beside the one of the resumed run, which trained the epoch again (at least once, never from 0),
    and Ray Train may or may not list it."""
    epochs = _reported_epochs(run)
    directories = [d for d in run.glob("checkpoint_*") if d.is_dir()]
    on_disk = sorted(torch.load(d / "train_state.pt", weights_only=True)["epoch"] for d in directories)
    for trained in (epochs, on_disk):
        assert max(trained) == 3 and sorted(set(trained)) == [1, 2, 3], (epochs, on_disk)
        assert all(trained.count(e) == 1 for e in interrupted_at), (epochs, on_disk, interrupted_at)
        assert len(trained) <= 4, (epochs, on_disk)  # at most the one epoch in flight twice
    assert epochs[-1] == 3


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the driver's process group (the driver and the Ray it started) and wait until it is gone.

    Ray processes outside the group (if any) exit on their own: a local Ray shares the fate of its driver."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def test_restarted_run_continues_from_last_epoch(clips, tmp_path):
    out = tmp_path / "teacher"
    command = [sys.executable, "-c", RUN, clips, str(out)]
    # a Ray of its own (not the fixture's, which set RAY_ADDRESS), so that killing it leaves ours alone
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    log = tmp_path / "first.log"
    with open(log, "wb") as stderr:
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not _reported_epochs(out / "run") and time.monotonic() < deadline:
            assert first.poll() is None, f"the first run ended before its first checkpoint: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        assert _reported_epochs(out / "run"), "no checkpoint within 240 s"
    finally:
        _kill_group(first)
    interrupted_at = _reported_epochs(out / "run")
    assert interrupted_at and interrupted_at[-1] < 3

    second = subprocess.run(command, env=env, timeout=400, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert second.returncode == 0, second.stderr.decode()[-2000:]

    _assert_resumed_after(out / "run", interrupted_at)
    assert (out / "model" / "model.pt").exists()


def test_failure_config_restarts_a_run_whose_worker_died(clips, tmp_path):
    """SIGKILL of a Ray Train worker after the first epoch: ``FailureConfig(max_failures)`` starts a new worker
    group, which resumes from that epoch's checkpoint, and the run ends normally."""
    import ray

    from raycondi.train.teacher import TeacherConfig, train_teacher

    out = tmp_path / "teacher"

    def train_workers() -> list[dict]:
        return [a for a in ray._private.state.actors().values() if "RayTrainWorker" in a["ActorClassName"]]

    killed: list[dict] = []
    interrupted_at: list[int] = []

    def kill_a_worker_after_the_first_epoch() -> None:
        deadline = time.monotonic() + 240
        while not _reported_epochs(out / "run") and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = [a for a in train_workers() if a["State"] == "ALIVE"]
        reported = _reported_epochs(out / "run")
        if alive and reported and reported[-1] < 3:
            os.kill(alive[0]["Pid"], signal.SIGKILL)
            killed.append(alive[0])
            interrupted_at.extend(reported)

    watcher = threading.Thread(target=kill_a_worker_after_the_first_epoch)
    watcher.start()
    train_teacher(TeacherConfig(clips=clips, out=str(out), model_kwargs={"width": 0.25}, crop_size=16, epochs=3,
                                batch_size=8, lr=0.02, workers=2, cpus_per_worker=0.5, max_failures=1))
    watcher.join()

    assert killed, "the run ended before a worker could be killed"
    assert len(train_workers()) > 2  # the dead group's two workers and the new group's
    _assert_resumed_after(out / "run", interrupted_at)  # the new group did not start over
    assert (out / "model" / "model.pt").exists()
