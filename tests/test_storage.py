"""raycondi.video.storage against local directories and a real S3 endpoint on loopback (moto server)."""

from __future__ import annotations

import pickle
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from raycondi.evaluation.job import EvaluationError
from raycondi.models.checkpoint import CheckpointError
from raycondi.pipeline import LabelError
from raycondi.video import storage
from raycondi.video.decode import VideoDecodeError
from raycondi.video.storage import StorageError, StorageOptions, UriError

# A loopback port nothing listens on: connections are refused at once.
DEAD_ENDPOINT = "http://127.0.0.1:9"


@pytest.fixture
def prefix(s3_server) -> str:
    """A fresh S3 prefix per test, so tests do not see each other's objects."""
    return s3_server.uri(f"t-{uuid.uuid4().hex[:8]}")


def _tree(base: str) -> list[str]:
    """Write a small tree under ``base``; return every file URI written, sorted."""
    names = ["a.mp4", "notes.txt", "sub/b.MP4", "sub/deeper/c.avi", "sub/deeper/d.json"]
    for name in names:
        storage.write_bytes(storage.join(base, name), name.encode())
    return sorted(storage.join(base, n) for n in names)


# --- join ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://b/x", ("y",), "s3://b/x/y"),
        ("s3://b/x/", ("/y/", "z.mp4"), "s3://b/x/y/z.mp4"),
        ("s3://b", ("k",), "s3://b/k"),
        ("/data/videos", ("class a", "v.mp4"), "/data/videos/class a/v.mp4"),
        ("file:///data", ("v.mp4",), "file:///data/v.mp4"),
        ("/", ("etc",), "/etc"),
        ("s3://b/x", (), "s3://b/x"),
    ],
)
def test_join(base, parts, expected):
    assert storage.join(base, *parts) == expected


def test_absolute_makes_only_plain_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.absolute("runs/teacher") == f"{tmp_path}/runs/teacher"
    assert storage.absolute("/data/clips") == "/data/clips"
    assert storage.absolute("s3://bucket/clips") == "s3://bucket/clips"
    assert storage.absolute("file:///data/clips") == "file:///data/clips"


def test_training_configs_hold_absolute_paths_for_their_workers(tmp_path, monkeypatch):
    from raycondi.train.distill import DistillConfig
    from raycondi.train.teacher import TeacherConfig

    monkeypatch.chdir(tmp_path)
    teacher = TeacherConfig(clips="data/clips", out="runs/teacher", finetune="s3://b/kinetics/model")
    assert (teacher.clips, teacher.out, teacher.finetune) == (
        f"{tmp_path}/data/clips", f"{tmp_path}/runs/teacher", "s3://b/kinetics/model")
    student = DistillConfig(clips="data/clips", teacher="runs/teacher/model", out="s3://b/condi")
    assert (student.clips, student.teacher, student.out, student.finetune) == (
        f"{tmp_path}/data/clips", f"{tmp_path}/runs/teacher/model", "s3://b/condi", None)


# --- local paths and file:// -----------------------------------------------------------------------------


def test_local_round_trip_creates_parent_dirs(tmp_path):
    uri = str(tmp_path / "a" / "b" / "c.bin")
    storage.write_bytes(uri, b"\x00\x01payload")
    assert storage.read_bytes(uri) == b"\x00\x01payload"
    assert storage.exists(uri) and storage.exists(str(tmp_path / "a"))
    assert not storage.exists(str(tmp_path / "nope"))


def test_file_uri_is_the_same_file_as_the_path(tmp_path):
    storage.write_bytes(f"file://{tmp_path}/x/y.txt", b"hello")
    assert (tmp_path / "x" / "y.txt").read_bytes() == b"hello"
    assert storage.read_bytes(f"file://{tmp_path}/x/y.txt") == b"hello"
    filesystem, path = storage.resolve(f"file://{tmp_path}/x/y.txt")
    assert isinstance(filesystem, pafs.LocalFileSystem) and path == f"{tmp_path}/x/y.txt"


def test_open_input_is_seekable(tmp_path):
    uri = str(tmp_path / "digits")
    storage.write_bytes(uri, b"0123456789")
    with storage.open_input(uri) as f:
        assert f.seekable() and f.size() == 10
        f.seek(7)
        assert f.read(2) == b"78"
        assert f.read_at(3, 1) == b"123"


def test_list_files_local_recursive_with_suffixes(tmp_path):
    written = _tree(str(tmp_path))
    assert storage.list_files(str(tmp_path)) == written
    assert storage.list_files(str(tmp_path), (".mp4", ".avi")) == [
        f"{tmp_path}/a.mp4",
        f"{tmp_path}/sub/b.MP4",
        f"{tmp_path}/sub/deeper/c.avi",
    ]
    assert storage.list_files(f"file://{tmp_path}/sub", (".json",)) == [f"file://{tmp_path}/sub/deeper/d.json"]


def test_local_missing_file_and_directory(tmp_path):
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(StorageError) as caught:
        storage.read_bytes(missing)
    assert caught.value.uri == missing and caught.value.reason == "no such file or object"
    assert str(caught.value) == f"{missing}: no such file or object"
    with pytest.raises(StorageError, match="no such directory or prefix"):
        storage.list_files(str(tmp_path / "nodir"))
    with pytest.raises(StorageError, match="is a directory"):
        storage.open_input(str(tmp_path))


def test_unsupported_scheme():
    with pytest.raises(StorageError, match="unsupported scheme"):
        storage.resolve("gs://bucket/key")


@pytest.mark.parametrize(("error_type", "also"), [
    (StorageError, OSError), (VideoDecodeError, Exception), (CheckpointError, Exception), (LabelError, ValueError),
    (EvaluationError, Exception),
])
def test_uri_errors_pickle_with_uri_and_reason(error_type, also):
    """Every error that names a URI comes back from a Ray worker (pickled) with its URI and reason."""
    error = pickle.loads(pickle.dumps(error_type("s3://b/k", "no such bucket 'b'")))
    assert type(error) is error_type
    assert (error.uri, error.reason, str(error)) == ("s3://b/k", "no such bucket 'b'", "s3://b/k: no such bucket 'b'")
    assert isinstance(error, UriError) and isinstance(error, also)


# --- S3 ---------------------------------------------------------------------------------------------------


def test_s3_round_trip_seen_by_boto3(s3_server, prefix):
    uri = storage.join(prefix, "dir/blob.bin")
    payload = bytes(range(256)) * 1000
    storage.write_bytes(uri, payload)
    key = uri[len(f"s3://{s3_server.bucket}/") :]
    assert s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == payload
    assert storage.read_bytes(uri) == payload
    assert storage.exists(uri) and storage.exists(storage.join(prefix, "dir"))
    with storage.open_input(uri) as f:  # ranged reads
        assert f.size() == len(payload)
        assert f.read_at(4, 254) == bytes([254, 255, 0, 1])


def test_s3_object_written_by_boto3_is_readable(s3_server, prefix):
    key = prefix[len(f"s3://{s3_server.bucket}/") :] + "/from-boto3.txt"
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=b"from boto3")
    assert storage.read_bytes(s3_server.uri(key)) == b"from boto3"


def test_list_files_s3_recursive_with_suffixes(prefix):
    written = _tree(prefix)
    assert storage.list_files(prefix) == written
    assert storage.list_files(prefix + "/", (".mp4",)) == [f"{prefix}/a.mp4", f"{prefix}/sub/b.MP4"]
    assert storage.list_files(storage.join(prefix, "sub/deeper"), (".avi",)) == [f"{prefix}/sub/deeper/c.avi"]


def test_s3_missing_object_names_the_uri(prefix):
    uri = storage.join(prefix, "missing.mp4")
    with pytest.raises(StorageError) as caught:
        storage.open_input(uri)
    assert (caught.value.uri, caught.value.reason) == (uri, "no such file or object")
    assert not storage.exists(uri)
    with pytest.raises(StorageError, match="no such directory or prefix"):
        storage.list_files(storage.join(prefix, "nothing-here"))


def test_s3_missing_bucket_names_the_uri_and_bucket(s3_server):
    uri = "s3://no-such-bucket-raycondi/v.mp4"
    calls = (lambda: storage.read_bytes(uri), lambda: storage.write_bytes(uri, b"x"), lambda: storage.list_files(uri))
    for call in calls:
        with pytest.raises(StorageError) as caught:
            call()
        assert caught.value.uri == uri
        assert caught.value.reason == "no such bucket 'no-such-bucket-raycondi'"


def test_explicit_endpoint_beats_environment(s3_server, prefix, monkeypatch):
    uri = storage.join(prefix, "e.txt")
    storage.write_bytes(uri, b"endpoint")
    monkeypatch.setenv("AWS_ENDPOINT_URL", DEAD_ENDPOINT)
    with pytest.raises(StorageError) as caught:
        storage.read_bytes(uri, StorageOptions(max_attempts=1))
    assert caught.value.uri == uri
    assert storage.read_bytes(uri, StorageOptions(endpoint_url=s3_server.endpoint_url)) == b"endpoint"


def test_endpoint_variables_s3_specific_first(s3_server, prefix, monkeypatch):
    uri = storage.join(prefix, "v.txt")
    storage.write_bytes(uri, b"vars")
    monkeypatch.setenv("AWS_ENDPOINT_URL", DEAD_ENDPOINT)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    assert storage.read_bytes(uri) == b"vars"
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", DEAD_ENDPOINT)
    with pytest.raises(StorageError):
        storage.read_bytes(uri, StorageOptions(max_attempts=1))


def test_resolve_caches_filesystems_and_serves_pyarrow(s3_server, prefix):
    first, path = storage.resolve(storage.join(prefix, "t.parquet"))
    again, _ = storage.resolve(prefix)
    other_region, _ = storage.resolve(prefix, StorageOptions(region="eu-west-1"))
    assert first is again and first is not other_region
    assert isinstance(first, pafs.S3FileSystem) and first.region == "us-east-1"
    assert path == storage.join(prefix, "t.parquet")[len("s3://") :]
    table = pa.table({"x": [1, 2, 3]})
    pq.write_table(table, path, filesystem=first)  # the same object Ray Data would be given
    assert pq.read_table(path, filesystem=first).equals(table)


def test_credentials_never_in_reprs(s3_server, monkeypatch):
    secret = "secret-" + uuid.uuid4().hex
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    options = StorageOptions(region="ap-south-1")  # a region no other test uses: a fresh filesystem
    filesystem, _ = storage.resolve("s3://bucket/key", options)
    assert secret not in repr(options) + repr(filesystem) + repr(filesystem.__reduce__())
    assert secret.encode() not in pickle.dumps(filesystem)


def test_invalid_options():
    with pytest.raises(ValueError, match="max_attempts"):
        StorageOptions(max_attempts=0)
    with pytest.raises(StorageError, match="bucket name"):
        storage.resolve("s3://")
