"""Flaky object storage: every S3 request of this module goes through a fault-injecting proxy on loopback
(``tests/faulty_s3.py``) in front of the moto server, reached through the ordinary ``AWS_ENDPOINT_URL`` by the
test process and by every Ray worker. Transient faults are retried and never become error rows; permanent ones
become error rows or errors naming the URI; an interrupted multipart upload leaves no visible file."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import torch

from raycondi.datasets.manifests import read_dataset
from raycondi.datasets.shards import prepare
from raycondi.models import load_checkpoint
from raycondi.pipeline import LabelConfig, LabelError, label_videos
from raycondi.pipeline.sink import output_files, publish
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import StorageError, exists, resolve
from tests.checkpoints import CLIP_LEN, label_rows, save_models, synth
from tests.faulty_s3 import FAULT_KINDS, FaultyS3

pytestmark = pytest.mark.slow
RATE = 0.25  # of requests; transient: at most 2 faults in a row per request, and pyarrow tries 5 times


@pytest.fixture(scope="module")
def proxy(s3_server):
    """The proxy, as the endpoint of this process and of a Ray started here (its workers inherit it)."""
    import ray

    faulty = FaultyS3(s3_server.endpoint_url, rate=0.0, seed=7, slow_s=0.2, deny=("/denied",)).start()
    previous = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = faulty.endpoint_url
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield faulty
    finally:
        ray.shutdown()
        os.environ["AWS_ENDPOINT_URL"] = previous
        faulty.stop()


def test_transient_faults_are_retried_and_never_become_error_rows(proxy, s3_server, capsys):
    proxy.set_rate(RATE)
    videos, clips = s3_server.uri("flaky/videos"), s3_server.uri("flaky/clips")
    synth(videos, 12)  # uploads through the proxy too
    teacher, student = save_models(s3_server.uri("flaky/models"))
    summary = prepare(videos, clips, clip=ClipSpec(clip_len=CLIP_LEN, size=32))
    assert summary.failed == 0
    model, config = load_checkpoint(teacher)  # checkpoint reads through the faults
    assert config.clip_len == CLIP_LEN and isinstance(model, torch.nn.Module)
    out = s3_server.uri("flaky/labels")
    labelled = label_videos(LabelConfig(videos, out, teacher, student, k=2, rows_per_file=3))
    proxy.set_rate(0.0)
    rows = label_rows(out)
    expected = set(read_dataset(videos)["video_id"].to_pylist())
    counts = Counter(r["video_id"] for r in rows)
    assert set(counts) == expected and set(counts.values()) == {1}  # none missing, none twice
    assert [r for r in rows if r["status"] != "ok"] == []
    assert (labelled.videos_ok, labelled.videos_error) == (len(expected), 0)
    assert set(proxy.counts) >= set(FAULT_KINDS), (proxy.counts, proxy.requests)  # every kind injected, survived
    with capsys.disabled():
        print(f"\n  transient S3 faults: {len(expected)} videos, {proxy.injected} faults injected "
              f"{dict(proxy.counts)} in {sum(proxy.requests.values())} requests; {len(rows)} rows, 0 errors")


def test_permanent_faults_are_error_rows_or_errors_naming_the_uri(proxy, s3_server, tmp_path, capsys):
    videos = s3_server.uri("perm/videos")
    synth(videos, 3)
    teacher, _ = save_models(s3_server.uri("perm/models"))
    table = read_dataset(videos)
    first = table["uri"][0].as_py()
    client = s3_server.client()
    key = first.split(f"{s3_server.bucket}/", 1)[1]
    client.copy_object(Bucket=s3_server.bucket, Key="perm/denied/secret.mp4",
                       CopySource={"Bucket": s3_server.bucket, "Key": key})
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("uri,label\n"
                        f"{first},MoveLeft\n"
                        f"{s3_server.uri('perm/denied/secret.mp4')},MoveLeft\n"
                        f"{s3_server.uri('perm/videos/never-uploaded.mp4')},MoveLeft\n")
    out = s3_server.uri("perm/labels")
    label_videos(LabelConfig(str(manifest), out, teacher, strategy="dense"))
    by_file = {r["uri"].rsplit("/", 1)[1]: r for r in label_rows(out)}
    rows = {"good": by_file[first.rsplit("/", 1)[1]], "denied": by_file["secret.mp4"],
            "gone": by_file["never-uploaded.mp4"]}
    assert len(by_file) == 3 and rows["good"]["status"] == "ok"
    assert rows["denied"]["status"] == rows["gone"]["status"] == "error"
    assert "access denied (403)" in rows["denied"]["error"] and rows["denied"]["uri"].endswith("denied/secret.mp4")
    assert "no such file or object" in rows["gone"]["error"]
    with capsys.disabled():
        print(f"\n  permanent S3 faults: 3 videos, {proxy.counts['403']} 403s injected, {len(by_file)} rows, 2 error "
              f"rows: {rows['denied']['error']!r}; {rows['gone']['error']!r}")
    with pytest.raises(LabelError, match="s3://no-such-bucket-here/videos: .*no such bucket 'no-such-bucket-here'"):
        label_videos(LabelConfig("s3://no-such-bucket-here/videos", out, teacher, strategy="dense"))
    with pytest.raises(ValueError, match="--teacher s3://raycondi-test/perm/denied/teacher: cannot read its "
                                         "config.json .*access denied"):
        label_videos(LabelConfig(videos, s3_server.uri("perm/labels2"), s3_server.uri("perm/denied/teacher"),
                                 strategy="dense"))


def test_an_interrupted_multipart_upload_leaves_no_visible_file(proxy, s3_server, capsys):
    uri = s3_server.uri("multipart/big-output.parquet")
    data = os.urandom(24 << 20)  # several parts: pyarrow uploads files this large in parts
    proxy.reset_parts["big-output"] = 2  # every try of part 2 on: the upload cannot complete
    try:
        with pytest.raises(StorageError, match="big-output.parquet"):
            publish(uri, data, None)
    finally:
        del proxy.reset_parts["big-output"]
    assert proxy.requests["PUT part"] >= 2
    assert not exists(uri) and output_files(s3_server.uri("multipart"), None) == []
    with capsys.disabled():
        print(f"\n  multipart upload cut off: 1 file of 24 MiB, {proxy.counts['reset']} parts reset, 0 files visible")
    publish(uri, data, None)  # the same upload once storage is healthy again
    filesystem, path = resolve(uri)
    assert filesystem.get_file_info(path).size == len(data)
