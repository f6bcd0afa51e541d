"""A labelling driver killed mid-run, and a worker node lost mid-run, on a real local Ray cluster (``ray start``,
as a user's cluster): the next ``raycondi label`` with the same output completes, and then every input video has
exactly one row, none missing and none twice, on local disk and on S3 (through ``tests/faulty_s3.py``, whose
delays hold the driver in the middle of a listing or of a write while it is killed)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raycondi.pipeline import list_videos
from raycondi.pipeline.sink import output_files
from raycondi.video.storage import resolve
from tests.checkpoints import save_models, synth
from tests.cluster import free_port, kill_node, node_ports, start_node, stop_node, wait_for
from tests.faulty_s3 import FaultyS3

pytestmark = pytest.mark.slow

RAYCONDI = str(Path(sys.executable).with_name("raycondi"))
VIDEOS = 24
RUN_TIMEOUT_S = 240


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    root: Path
    nodes: list[subprocess.Popen]

    def add_node(self, cpus: int) -> subprocess.Popen:
        node = start_node(["--address", self.address, "--num-cpus", str(cpus), "--node-ip-address=127.0.0.1",
                           *node_ports()], self.env,
                          self.root / f"node{len(self.nodes)}.log")
        self.nodes.append(node)
        wait_for(lambda: _alive(self) == len(self.nodes) or None, self.nodes, self.root / "head.log")
        return node


def _alive(cluster: Cluster) -> int:
    done = subprocess.run([sys.executable, "-c", "import ray; ray.init(); "
                           "print(sum(n['Alive'] for n in ray.nodes()))"], env=cluster.env, capture_output=True,
                          text=True, timeout=60)
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else -1


@pytest.fixture(scope="module")
def cluster(s3_server) -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="rcd-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    (root / "token").write_text(secrets.token_hex(32))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_ENDPOINT_URL_S3", "RAY_AUTH_TOKEN")}
    env.update(RAY_ADDRESS=f"127.0.0.1:{port}", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(root / "token"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    head = start_node(["--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
                       "--node-ip-address=127.0.0.1", "--temp-dir", str(root / "ray"), *node_ports()], env,
                      root / "head.log")
    local = Cluster(f"127.0.0.1:{port}", env, root, [head])
    try:
        wait_for(lambda: _alive(local) == 1 or None, local.nodes, root / "head.log")
        yield local
    finally:
        for node in reversed(local.nodes):
            stop_node(node)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """24 videos of 8 s in a plain folder, and tiny teacher and student checkpoints."""
    root = tmp_path_factory.mktemp("driver")
    synth(str(root / "dataset"), VIDEOS, min_seconds=8.0, max_seconds=8.0)
    (root / "videos").mkdir()
    for i, video in enumerate(sorted((root / "dataset").rglob("*.mp4"))):
        shutil.copy(video, root / "videos" / f"video{i:02d}.mp4")
    save_models(str(root / "models"))
    return root


def _label(cluster: Cluster, archive: Path, videos: str, output: str, *options: str) -> subprocess.Popen:
    command = [RAYCONDI, "label", "--input", videos, "--output", output, "--teacher", str(archive / "models" /
               "teacher"), "--student", str(archive / "models" / "student"), "--k", "2", "--rows-per-file", "2",
               *options]
    log = open(archive / f"driver-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen(command, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_when(driver: subprocess.Popen, ready: Callable[[], bool], node: subprocess.Popen | None = None) -> None:
    """Once ``ready()``, SIGKILL the driver, or the worker ``node`` when given; fail if the driver ended first."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not ready():
        assert driver.poll() is None, "the driver finished before the point it was to be killed at"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.1)
    if node is not None:
        kill_node(node)
        return
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()


def _settle(proxy: FaultyS3, timeout: float = 30) -> None:
    """Wait until the proxy holds no request: what the killed run sent has landed or been dropped."""
    deadline = time.monotonic() + timeout
    while proxy.in_flight and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proxy.in_flight == 0


def _complete(driver: subprocess.Popen) -> None:
    assert driver.wait(timeout=RUN_TIMEOUT_S) == 0


def _files(output: str) -> list[str]:
    return output_files(output, None)


def _exactly_once(videos: str, output: str) -> dict[str, int]:
    """Every input video's number of rows under ``output``; asserts each is 1."""
    filesystem, _ = resolve(output)
    ids = [i for f in _files(output) for i in pq.read_table(resolve(f)[1], filesystem=filesystem,
                                                            columns=["video_id"])["video_id"].to_pylist()]
    counts = Counter(ids)
    expected = set(list_videos(videos)["video_id"].to_pylist())
    missing, duplicated = expected - set(counts), [i for i, n in counts.items() if n > 1]
    assert not missing and not duplicated and set(counts) == expected, (missing, duplicated)
    return counts


def test_killed_driver_on_local_output_then_a_rerun_labels_each_video_once(cluster, archive, tmp_path, capsys):
    videos, output = str(archive / "videos"), str(tmp_path / "labels")
    _kill_when(_label(cluster, archive, videos, output), lambda: len(_files(output)) >= 2)
    first = len(_files(output))
    _kill_when(_label(cluster, archive, videos, output), lambda: len(_files(output)) >= first + 2)
    assert len(_files(output)) < VIDEOS // 2  # killed with videos left to label
    _complete(_label(cluster, archive, videos, output))
    assert sum(_exactly_once(videos, output).values()) == VIDEOS
    _report(capsys, f"driver killed twice after files were published (local): {VIDEOS} videos, 3 runs, "
                    f"{len(_files(output))} files, {VIDEOS} rows, 0 duplicates, 0 missing")


def _report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n  {line}")


def test_killed_driver_on_s3_listing_writing_and_after_publishing(cluster, archive, s3_server, capsys):
    videos, output = s3_server.uri("driver/videos"), s3_server.uri("driver/labels")
    for video in sorted((archive / "videos").iterdir()):
        s3_server.client().upload_file(str(video), s3_server.bucket, f"driver/videos/{video.name}")
    proxy = FaultyS3(s3_server.endpoint_url, rate=0.0).start()
    through = ("--endpoint-url", proxy.endpoint_url)  # the driver's and every worker's requests
    try:
        proxy.delays = {"LIST": 5.0}  # killed while it lists the input
        _kill_when(_label(cluster, archive, videos, output, *through), lambda: proxy.requests["LIST"] >= 1)
        assert _files(output) == []
        proxy.delays = {"PUT": 5.0, "PUT part": 5.0}  # killed while a file of rows is being uploaded

        def uploads() -> int:  # pyarrow sends a small file as a PUT or as a one-part multipart upload
            return proxy.requests["PUT"] + proxy.requests["PUT part"]

        before = uploads()
        _kill_when(_label(cluster, archive, videos, output, *through), lambda: uploads() > before)
        _settle(proxy)  # a held upload whose client died is dropped; one already answered stays, whole
        proxy.delays = {}
        written = len(_files(output))
        _kill_when(_label(cluster, archive, videos, output, *through), lambda: len(_files(output)) >= written + 2)
        assert len(_files(output)) < VIDEOS // 2
        _complete(_label(cluster, archive, videos, output, *through))
    finally:
        proxy.stop()
    assert sum(_exactly_once(videos, output).values()) == VIDEOS
    _report(capsys, f"driver killed listing, uploading, after publishing (S3): {VIDEOS} videos, 4 runs, "
                    f"{len(_files(output))} files, {VIDEOS} rows, 0 duplicates, 0 missing")


def test_a_lost_worker_node_loses_no_video(cluster, archive, tmp_path, capsys):
    """The worker node (3 of the cluster's 5 CPUs: at least one of the actors runs there) is SIGKILLed with its
    processes mid-job."""
    node = cluster.add_node(3)
    videos, output = str(archive / "videos"), str(tmp_path / "labels")
    driver = _label(cluster, archive, videos, output)
    try:
        _kill_when(driver, lambda: len(_files(output)) >= 2, node)
        code = driver.wait(timeout=RUN_TIMEOUT_S)
    finally:
        cluster.nodes.remove(node)
    if code != 0:  # the job may fail (clearly) rather than finish; then a rerun finishes it
        _complete(_label(cluster, archive, videos, output))
    assert sum(_exactly_once(videos, output).values()) == VIDEOS
    _report(capsys, f"worker node SIGKILLed mid-job: {VIDEOS} videos, the job "
                    f"{'finished by itself' if code == 0 else f'exited {code}, a rerun finished it'}, "
                    f"{VIDEOS} rows, 0 duplicates, 0 missing")
