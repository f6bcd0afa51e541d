"""The jobs/ entry points through ``ray job submit`` on a real two-node local Ray cluster and a real S3 endpoint.

The cluster is what cluster/README.md describes, shrunk to one machine: a head started with ``ray start --head
--num-cpus 0`` (it schedules, it does not compute) and a worker node joined with ``ray start --address``, with
token authentication on (``RAY_AUTH_MODE=token``, the token in a file named by ``RAY_AUTH_TOKEN_PATH``) as on a
real cluster. Every job is submitted with the README's command -- ``ray job submit --working-dir .
--runtime-env jobs/<job>.runtime_env.yaml -- python jobs/<job>.py ...`` -- against the loopback S3 server, whose
endpoint reaches the jobs only through ``--endpoint-url`` (the cluster's environment does not have it), so
every actor and Train worker must have received it from the job. The S3 credentials are in the nodes'
environment, as an instance profile would provide them.

Each node is a ``ray start --block`` process in its own process group; the cluster is stopped by signalling
those groups, never with ``ray stop``, which would kill every Ray process of the user on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.models import CheckpointConfig, build_model, build_student, load_checkpoint, save_checkpoint
from raycondi.video.storage import StorageOptions, list_files, read_bytes, resolve
from tests.cluster import RAY, free_port, node_ports, start_node, stop_node, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("MoveLeft", "MoveRight", "RotateCW")
CLIP_LEN, CROP = 4, 16
JOB_TIMEOUT_S = 240


@dataclass(frozen=True)
class LocalCluster:
    """A running two-node cluster: its job-submission address and the environment that carries the token."""

    address: str
    env: dict[str, str]
    token: str
    temp_dir: Path

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """The ``ray`` command line, run from the repository root as a user would."""
        return subprocess.run([RAY, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)

    def submit(self, job: str, *args: str) -> str:
        """``ray job submit`` of ``jobs/{job}.py`` with its runtime_env file; returns the submission id."""
        submission_id = f"{job}-{secrets.token_hex(4)}"
        done = self.ray("job", "submit", "--address", self.address, "--no-wait", "--submission-id", submission_id,
                        "--working-dir", ".", "--runtime-env", f"jobs/{job}.runtime_env.yaml", "--",
                        "python", f"jobs/{job}.py", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return submission_id

    def api(self, path: str, *, token: str | None = None) -> dict:
        request = urllib.request.Request(f"{self.address}{path}")
        request.add_header("Authorization", f"Bearer {self.token if token is None else token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait(self, submission_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
        """Poll the job until it is SUCCEEDED, FAILED or STOPPED; return that status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.api(f"/api/jobs/{submission_id}")["status"]
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(2)
        self.ray("job", "stop", "--address", self.address, submission_id)
        raise AssertionError(f"{submission_id} still running after {timeout:.0f} s:\n{self.logs(submission_id)}\n"
                             f"{self.ray_logs()}")

    def ray_logs(self, lines: int = 15) -> str:
        """The last lines of the nodes' runtime-env and raylet logs, to see why a job is stuck."""
        logs = sorted((self.temp_dir / "session_latest" / "logs").glob("*"))
        tails = [f"== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
                 for log in logs if log.name.startswith(("runtime_env", "raylet")) and log.is_file()]
        return "\n".join(tails)

    def logs(self, submission_id: str) -> str:
        """``ray job logs`` (the driver's output), after the job's status message (why Ray ended it)."""
        message = self.api(f"/api/jobs/{submission_id}").get("message") or ""
        return f"{message}\n{self.ray('job', 'logs', '--address', self.address, submission_id).stdout}"

    def status(self, submission_id: str) -> str:
        """What ``ray job status`` (the README's command) prints."""
        return self.ray("job", "status", "--address", self.address, submission_id).stdout


@pytest.fixture(scope="module")
def cluster(s3_server) -> Iterator[LocalCluster]:
    root = Path(tempfile.mkdtemp(prefix="rcj-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    (root / "token").write_text(secrets.token_hex(32))
    env = {key: value for key, value in os.environ.items()
           if key not in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(root / "token"), RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    gcs, dashboard = free_port(), free_port()
    nodes = []
    try:
        nodes.append(start_node(["--head", "--port", str(gcs), "--num-cpus", "0", "--dashboard-host", "127.0.0.1",
                                  "--dashboard-port", str(dashboard), "--temp-dir", str(root / "ray"), *node_ports()],
                                 env, root / "head.log"))
        local = LocalCluster(f"http://127.0.0.1:{dashboard}", env, (root / "token").read_text(), root / "ray")
        wait_for(lambda: local.api("/api/version"), nodes, root / "head.log")
        nodes.append(start_node(["--address", f"127.0.0.1:{gcs}", "--num-cpus", "3", *node_ports()], env,
                                 root / "worker.log"))
        wait_for(lambda: _alive_nodes(local) == 2 or None, nodes, root / "worker.log")
        yield local
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(root, ignore_errors=True)


def _alive_nodes(cluster: LocalCluster) -> int:
    nodes = cluster.api("/api/v0/nodes?detail=false")["data"]["result"]["result"]
    return sum(node["state"] == "ALIVE" for node in nodes)


@dataclass(frozen=True)
class Inputs:
    videos: str
    teacher: str
    student: str
    test_videos: int


@pytest.fixture(scope="module")
def inputs(s3_server) -> Inputs:
    """12 tiny synthetic videos (UCF-101 layout) and random-init teacher/student checkpoints, in S3."""
    videos = s3_server.uri("jobs/videos")
    summary = generate_dataset(videos, SynthConfig(videos=12, seed=5, classes=len(CLASSES), fps=10, width=64,
                                                   height=48, clip_len=CLIP_LEN, min_seconds=0.8, max_seconds=2.4),
                               workers=1)
    torch.manual_seed(0)
    common = dict(num_classes=len(CLASSES), class_names=CLASSES, clip_len=CLIP_LEN, crop_size=CROP)
    teacher, student = s3_server.uri("jobs/models/teacher"), s3_server.uri("jobs/models/student")
    save_checkpoint(build_model("shufflenetv2_3d", len(CLASSES), width=0.25), teacher,
                    CheckpointConfig("shufflenetv2_3d", model_kwargs={"width": 0.25}, **common))
    save_checkpoint(build_student("shufflenetv2_3d", len(CLASSES), width=0.25), student,
                    CheckpointConfig("shufflenetv2_3d", student=True, model_kwargs={"width": 0.25}, **common))
    return Inputs(videos, teacher, student, summary.test_videos)


def _read_parquet(prefix: str, storage: StorageOptions) -> pa.Table:
    files = [f for f in list_files(prefix, (".parquet",), storage) if not Path(f).name.startswith(("_", "."))]
    assert files, f"no Parquet under {prefix}"
    filesystem, _ = resolve(prefix, storage)
    return pa.concat_tables([pq.read_table(resolve(f, storage)[1], filesystem=filesystem) for f in files])


@pytest.fixture(scope="module")
def prepare_job(cluster, inputs, s3_server) -> tuple[str, str]:
    """``prepare`` of the videos into clip shards, submitted without waiting: (submission id, shards URI)."""
    clips = s3_server.uri("jobs/clips")
    job = cluster.submit("prepare", "--dataset", inputs.videos, "--out", clips, "--clip-len", str(CLIP_LEN),
                         "--size", "20", "--endpoint-url", s3_server.endpoint_url)
    return job, clips


def test_submission_without_the_token_is_refused(cluster):
    with pytest.raises(urllib.error.HTTPError) as refused:
        cluster.api("/api/jobs/", token="not-the-token")
    assert refused.value.code in (401, 403)


def _label_args(inputs: Inputs, s3_server) -> list[str]:
    return ["--teacher", inputs.teacher, "--student", inputs.student, "--k", "2",
            "--endpoint-url", s3_server.endpoint_url]


def test_label_job_writes_parquet(cluster, inputs, s3_server):
    # Alone, and first: see cluster/README.md on submitting several jobs with one working_dir at once.
    storage, labels = StorageOptions(endpoint_url=s3_server.endpoint_url), s3_server.uri("jobs/labels")
    job = cluster.submit("label", "--input", inputs.videos, "--split", "test", "--output", labels,
                         *_label_args(inputs, s3_server))
    assert cluster.wait(job) == "SUCCEEDED", cluster.logs(job)
    assert f"Job '{job}' succeeded" in cluster.status(job)
    summary = json.loads(read_bytes(f"{labels}/_summary.json", storage))
    assert f"raycondi: labelling {inputs.test_videos} video(s) with {summary['plan']}" in cluster.logs(job)
    assert "cluster: 1 CPU node(s) with 3 CPUs, 0 GPU node(s)" in summary["plan"]  # the head has no CPUs
    table = _read_parquet(labels, storage)
    assert table.num_rows == inputs.test_videos
    assert set(table["status"].to_pylist()) == {"ok"}
    assert set(table["label"].to_pylist()) <= set(CLASSES)
    assert all(len(clips) == min(2, n) for clips, n in zip(table["selected_clips"].to_pylist(),
                                                           table["num_clips"].to_pylist()))
    assert set(table["teacher_model"].to_pylist()) == {inputs.teacher}
    assert summary["videos_ok"] == inputs.test_videos


def test_label_job_with_a_bad_input_fails_clearly(cluster, inputs, s3_server, prepare_job):
    missing = "s3://no-such-bucket-raycondi/videos"
    job = cluster.submit("label", "--input", missing, "--output", s3_server.uri("jobs/labels-bad"),
                         *_label_args(inputs, s3_server))
    assert cluster.wait(job) == "FAILED"
    assert f"Job '{job}' failed" in cluster.status(job)
    logs = cluster.logs(job)
    assert f"raycondi label: --input {missing}" in logs, logs
    assert "Traceback" not in logs, logs


def test_train_teacher_and_tune_jobs(cluster, prepare_job, s3_server):
    storage = StorageOptions(endpoint_url=s3_server.endpoint_url)
    job, clips = prepare_job
    assert cluster.wait(job) == "SUCCEEDED", cluster.logs(job)
    tiny = ["--clips", clips, "--preset", "small", "--epochs", "1", "--batch-size", "8",
            "--endpoint-url", s3_server.endpoint_url]
    teacher = s3_server.uri("jobs/teacher")
    job = cluster.submit("train_teacher", *tiny, "--out", teacher, "--crop-size", str(CROP),
                         "--model-kwargs", '{"width": 0.25}')
    assert cluster.wait(job) == "SUCCEEDED", cluster.logs(job)
    config = load_checkpoint(f"{teacher}/model", storage=storage)[1]
    assert (config.architecture, config.num_classes, config.clip_len) == ("resnet3d", len(CLASSES), CLIP_LEN)

    # distill is the same loop as a tune trial (and the same kind of script): the search stands for both here.
    search = s3_server.uri("jobs/tune")
    job = cluster.submit("tune", *tiny, "--teacher", f"{teacher}/model", "--student-kwargs", '{"width": 0.25}',
                         "--out", search, "--samples", "1")
    assert cluster.wait(job) == "SUCCEEDED", cluster.logs(job)
    best = json.loads(read_bytes(f"{search}/best.json", storage))
    assert best["checkpoint"] == f"{search}/best/model"
    assert load_checkpoint(best["checkpoint"], storage=storage)[1].student
