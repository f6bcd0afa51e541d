"""Inputs that try to escape: file names and object keys with ``..``, doubled slashes, odd Unicode and newlines,
manifest URIs outside the manifest's folder, and a file that is not a video. The job writes nothing outside
``--output`` (only its ``part-*.parquet`` files and ``_summary.json``), every ``video_id`` is unique and
round-trips exactly, and the file that is not a video is one error row."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from raycondi.pipeline import LabelConfig, label_videos, list_videos
from tests.checkpoints import label_rows, save_models, synth

pytestmark = pytest.mark.slow

NAMES = ["plain", "new\nline", "tab\there", "ünïcødé 😀", "..dots..", "-dash", "back\\slash", "quote'\"", "%2e%2e"]
# moto's server answers 404 to a PUT of a key with a control character (S3 itself takes them), so keys have none.
KEYS = ["../../escape", "sub/../../up", "double//slash", "/leading", *(n for n in NAMES if n.isprintable())]


def _tree(root: Path, skip: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip not in p.parents and p != skip}


def _written_only_parts(names: list[str]) -> None:
    assert names and all(n == "_summary.json" or (n.startswith("part-") and n.endswith(".parquet")) for n in names)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, s3_server, ray_runtime) -> tuple[Path, str, str]:  # S3 first: Ray inherits it
    root = tmp_path_factory.mktemp("escape")
    synth(str(root / "dataset"), 1, min_seconds=1.6, max_seconds=1.6)
    teacher, student = save_models(str(root / "models"))
    return next((root / "dataset").rglob("*.mp4")), teacher, student


def test_odd_local_names_and_a_manifest_write_only_under_output(sources, tmp_path):
    video, teacher, student = sources
    videos = tmp_path / "archive" / "videos"
    videos.mkdir(parents=True)
    for name in NAMES:
        shutil.copy(video, videos / f"{name}.mp4")
    (videos / "notes.mp4").write_text("a text file, not a video\n")
    (tmp_path / "outside").mkdir()
    shutil.copy(video, tmp_path / "outside" / "real.mp4")
    shutil.copy(video, tmp_path / "outside" / "other.mp4")
    manifest = tmp_path / "archive" / "manifest.csv"
    manifest.write_text("uri,label\n../outside/real.mp4,MoveLeft\nvideos/plain.mp4,MoveLeft\n"
                        f"{tmp_path / 'outside' / 'other.mp4'},MoveLeft\nvideos/notes.mp4,MoveLeft\n")
    before = _tree(tmp_path, tmp_path / "out")

    for source, output in ((str(videos), tmp_path / "out" / "prefix"), (str(manifest), tmp_path / "out" / "manifest")):
        label_videos(LabelConfig(source, str(output), teacher, student, k=1))
        expected = list_videos(source)["video_id"].to_pylist()
        rows = label_rows(str(output))
        ids = Counter(r["video_id"] for r in rows)
        assert sorted(ids) == sorted(expected) and set(ids.values()) == {1}  # unique, exact round trip
        errors = [r for r in rows if r["status"] == "error"]
        assert len(errors) == 1 and errors[0]["uri"].endswith("notes.mp4")
        assert "not a readable media file" in errors[0]["error"]
        _written_only_parts(sorted(p.name for p in output.iterdir()))
    assert set(list_videos(str(videos))["video_id"].to_pylist()) >= {"new\nline", "ünïcødé 😀", "..dots.."}
    assert _tree(tmp_path, tmp_path / "out") == before  # nothing written anywhere else


def test_odd_object_keys_write_only_under_output(sources, s3_server):
    video, teacher, student = sources
    client, bucket = s3_server.client(), s3_server.bucket
    for key in KEYS:
        client.upload_file(str(video), bucket, f"escape/videos/{key}.mp4")
    client.put_object(Bucket=bucket, Key="escape/videos/notes.mp4", Body=b"not a video")
    before = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
              for o in page.get("Contents", [])}
    output = s3_server.uri("escape/labels")
    label_videos(LabelConfig(s3_server.uri("escape/videos"), output, teacher, student, k=1))
    after = {o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
             for o in page.get("Contents", [])}
    new = after - before
    assert all(key.startswith("escape/labels/") and "/" not in key[len("escape/labels/"):] for key in new), new
    _written_only_parts(sorted(key.rsplit("/", 1)[1] for key in new))
    rows = label_rows(output)
    ids = Counter(r["video_id"] for r in rows)
    expected = list_videos(s3_server.uri("escape/videos"))["video_id"].to_pylist()
    assert sorted(ids) == sorted(expected) and set(ids.values()) == {1} and len(ids) == len(KEYS) + 1
    assert {"ünïcødé 😀", "../../escape", "sub/../../up", "double//slash"} <= set(ids)
    errors = {r["video_id"]: r["error"] for r in rows if r["status"] == "error"}
    unaddressable = {"../../escape", "sub/../../up", "double//slash", "/leading"}  # error rows, named, not lost
    assert set(errors) == unaddressable | {"notes"}
    assert "not a readable media file" in errors["notes"]
    assert all("'.', '..' or empty path segments cannot be addressed" in errors[i] for i in unaddressable)
