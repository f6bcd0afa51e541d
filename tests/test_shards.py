"""Clip shards: prepare a small UCF-101-layout dataset from S3 into S3 with real Ray, read it back with pyarrow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from videos import frame_level, gradient_frames, level_frames, level_index, write_video

from raycondi.cli import build_parser
from raycondi.datasets import shards
from raycondi.datasets.manifests import read_dataset
from raycondi.datasets.shards import (
    CLIP_SCHEMA,
    FAILED_SCHEMA,
    PrepareSummary,
    decode_videos,
    frames_to_numpy,
    iter_clip_batches,
    prepare,
    read_summary,
)
from raycondi.video.decode import ClipSpec
from raycondi.video.storage import StorageError, join, list_files, resolve, write_bytes

CLIP = ClipSpec(clip_len=8, size=32)
FPS = 25
# video_id -> (class, frames); every video shows flat grey frames whose level gives the frame index
GOOD = {
    "v_A_g01_c01": ("A", 20),
    "v_A_g02_c01": ("A", 9),
    "v_A_g03_c01": ("A", 16),
    "v_B_g01_c01": ("B", 17),
    "v_B_g03_c01": ("B", 5),
    "v_B_g04_c01": ("B", 8),
}
TEST = {"v_A_g01_c01", "v_B_g01_c01"}
BROKEN = "v_B_g02_c01"  # an MPEG-4 Matroska file cut to 60 %: its first clips decode, then it is found short


def truncated_video(path: Path) -> bytes:
    write_video(path, gradient_frames(100, 64, 48), codec="mpeg4")
    data = path.read_bytes()
    return data[: len(data) * 6 // 10]


@pytest.fixture(scope="module")
def dataset(s3_server, tmp_path_factory) -> str:
    """The dataset uploaded with boto3 under s3://bucket/shards/ucf."""
    local = tmp_path_factory.mktemp("videos")
    files: dict[str, bytes] = {}
    for video_id, (label, frames) in GOOD.items():
        files[f"{label}/{video_id}.mp4"] = write_video(
            local / f"{video_id}.mp4", level_frames(frames, 64, 48)
        ).read_bytes()
    files[f"B/{BROKEN}.mkv"] = truncated_video(local / "broken.mkv")
    train = [f"{GOOD[v][0]}/{v}.mp4 {1 if GOOD[v][0] == 'A' else 2}" for v in sorted(set(GOOD) - TEST)]
    files["trainlist01.txt"] = "\n".join(train + [f"B/{BROKEN}.mkv 2"]).encode()
    files["testlist01.txt"] = "\n".join(f"{GOOD[v][0]}/{v}.mp4" for v in sorted(TEST)).encode()
    files["classInd.txt"] = b"1 A\n2 B\n3 C\n"
    client = s3_server.client()
    for key, data in files.items():
        client.put_object(Bucket=s3_server.bucket, Key=f"shards/ucf/{key}", Body=data)
    return s3_server.uri("shards/ucf")


@pytest.fixture(scope="module")
def prepared(dataset, s3_server, ray_runtime):
    out = s3_server.uri("shards/out")
    write_bytes(join(out, "_logs", "prepare-earlier.log"), b"a run that failed before it wrote a shard\n")
    return prepare(dataset, out, clip=CLIP), out  # that run's log does not make the output "not empty"


def read_split(out: str, split: str) -> pa.Table:
    filesystem, path = resolve(join(out, split))
    return pq.read_table(path, filesystem=filesystem)


def test_prepare_from_s3_into_s3(dataset, prepared):
    summary, out = prepared
    videos = read_dataset(dataset)
    split_of = dict(zip(videos["video_id"].to_pylist(), videos["split"].to_pylist(), strict=True))
    expected_clips = {
        s: sum(math.ceil(GOOD[v][1] / 8) for v in GOOD if split_of[v] == s) for s in ("train", "val", "test")
    }
    expected_videos = {s: sum(split_of[v] == s for v in GOOD) for s in ("train", "val", "test")}
    assert sum(expected_videos.values()) == 6 and expected_videos["val"] >= 1  # A gives one of its two to val

    assert summary.classes == ("A", "B", "C")
    assert summary.frames_shape == (8, 32, 32, 3)
    assert summary.clips == expected_clips
    assert summary.videos == expected_videos
    assert summary.failed == 1
    assert read_summary(out) == summary
    assert json.loads(summary.to_json())["clip"] == {"clip_len": 8, "size": 32, "stride": 1}

    layout = {uri[len(out) + 1 :].split("/")[0] for uri in list_files(out)}
    assert layout == {"_logs", "dataset.json", "failed.parquet", "train", "val", "test"}
    for split in ("train", "val", "test"):
        table = read_split(out, split)
        assert table.schema.remove_metadata() == CLIP_SCHEMA
        assert table.num_rows == expected_clips[split]
        assert set(table["video_id"].to_pylist()) == {v for v in GOOD if split_of[v] == split}


def test_clip_rows_hold_the_frames(prepared):
    _, out = prepared
    rows = pa.concat_tables(read_split(out, s) for s in ("train", "val", "test")).sort_by(
        [("video_id", "ascending"), ("clip_index", "ascending")]
    )
    assert rows.num_rows == sum(math.ceil(n / 8) for _, n in GOOD.values())
    frames = frames_to_numpy(rows)
    assert frames.shape == (rows.num_rows, 8, 32, 32, 3) and frames.dtype == np.uint8
    for row, clip in zip(rows.to_pylist(), frames, strict=True):
        label, n = GOOD[row["video_id"]]
        c = row["clip_index"]
        filled = min(8, n - 8 * c)
        expected = [8 * c + j % filled for j in range(8)]  # the last clip loops its own frames
        assert [level_index(f.mean()) for f in clip] == expected, row["video_id"]
        assert np.abs(clip.astype(int) - np.array([frame_level(i) for i in expected])[:, None, None, None]).max() <= 3
        assert row["num_clips"] == math.ceil(n / 8)
        assert row["label_index"] == {"A": 0, "B": 1}[label]
        assert row["frames_shape"] == [8, 32, 32, 3]
        assert row["start_s"] == pytest.approx(8 * c / FPS)
        assert row["end_s"] == pytest.approx(min(8 * c + 8, n) / FPS)
        assert 0 <= row["keyframe_offset"] <= 8 * c and (c or row["keyframe_offset"] == 0)


def test_failed_video_is_listed_with_its_reason(dataset, prepared):
    _, out = prepared
    filesystem, path = resolve(join(out, "failed.parquet"))
    failed = pq.read_table(path, filesystem=filesystem)
    assert failed.schema.remove_metadata() == FAILED_SCHEMA
    [row] = failed.to_pylist()
    assert row["video_id"] == BROKEN
    assert row["uri"] == join(dataset, f"B/{BROKEN}.mkv")
    assert row["split"] in ("train", "val")
    assert row["error"].startswith("incomplete: decoded 2.")
    # the clips decoded before the damage was found are not in the shards
    assert all(BROKEN not in read_split(out, s)["video_id"].to_pylist() for s in ("train", "val", "test"))


def test_iter_clip_batches_and_ray_data_read_back(prepared):
    import ray

    _, out = prepared
    batches = list(iter_clip_batches(out, "test", batch_size=2))
    assert sum(len(b["video_id"]) for b in batches) == 6
    assert all(b["frames"].shape[1:] == (8, 32, 32, 3) and len(b["frames"]) <= 2 for b in batches)
    assert sorted((v, c) for b in batches for v, c in zip(b["video_id"], b["clip_index"], strict=True)) == [
        ("v_A_g01_c01", 0), ("v_A_g01_c01", 1), ("v_A_g01_c01", 2),
        ("v_B_g01_c01", 0), ("v_B_g01_c01", 1), ("v_B_g01_c01", 2),
    ]  # fmt: skip

    filesystem, path = resolve(join(out, "test"))
    batch = ray.data.read_parquet(path, filesystem=filesystem).take_batch(6)  # how training reads them
    frames = frames_to_numpy(batch)
    assert frames.shape == (6, 8, 32, 32, 3)
    first = int(np.flatnonzero(batch["clip_index"] == 0)[0])
    assert [level_index(f.mean()) for f in frames[first]] == list(range(8))


def test_training_splits_are_cached_in_the_object_store_when_small(prepared):
    from ray.data.dataset import MaterializedDataset

    from raycondi.train.data import read_training_splits

    summary, out = prepared
    cached = read_training_splits(out)
    streamed = read_training_splits(out, cache_bytes=0)
    assert set(cached) == set(streamed) == {"train", "val"}
    for split in ("train", "val"):
        assert isinstance(cached[split], MaterializedDataset)  # a few KB of shards: read once, kept
        assert not isinstance(streamed[split], MaterializedDataset)  # over the limit: read every epoch
        rows = [sorted(zip(d[split].to_pandas()["video_id"], d[split].to_pandas()["clip_index"], strict=True))
                for d in (cached, streamed)]
        assert rows[0] == rows[1] and len(rows[0]) == summary.clips[split]


def test_prepare_refuses_a_non_empty_output(dataset, prepared):
    _, out = prepared
    with pytest.raises(StorageError, match="output folder is not empty"):
        prepare(dataset, out, clip=CLIP)


# --- the decode stage and the numpy helper, without Ray ---------------------------------------------------


def test_decode_videos_spills_splits_and_fails_whole(tmp_path, monkeypatch):
    clip_bytes = 8 * 32 * 32 * 3
    monkeypatch.setattr(shards, "_BATCH_BYTES", 2 * clip_bytes)  # tables of two clips
    monkeypatch.setattr(shards, "_SPOOL_BYTES", clip_bytes)  # spill to disk from the second clip
    good = write_video(tmp_path / "good.mp4", level_frames(28, 64, 48))
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(truncated_video(tmp_path / "whole.mkv"))
    batch = pa.table(
        {"video_id": ["g", "b"], "uri": [str(good), str(broken)], "label_index": [4, 5], "split": ["val", "test"]}
    )
    tables = list(decode_videos(batch, clip=CLIP, limits=None, storage=None))
    assert [t.num_rows for t in tables] == [2, 2, 1]
    clips = pa.concat_tables(tables[:2])
    assert clips["clip_index"].to_pylist() == [0, 1, 2, 3]
    assert set(clips["num_clips"].to_pylist()) == {4} and set(clips["split"].to_pylist()) == {"val"}
    assert clips["error"].null_count == 4
    assert [level_index(f.mean()) for f in frames_to_numpy(clips)[3]] == [24, 25, 26, 27, 24, 25, 26, 27]
    failure = tables[2].to_pylist()[0]
    assert (failure["video_id"], failure["split"], failure["label_index"], failure["frames"]) == ("b", "test", 5, None)
    assert "incomplete" in failure["error"]


def test_frames_to_numpy():
    pixels = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 1, 2, 1, 3)
    table = pa.table(
        {
            "frames": pa.array([p.tobytes() for p in pixels], pa.binary()),
            "frames_shape": pa.array([[1, 2, 1, 3]] * 2, pa.list_(pa.int32(), 4)),
        }
    )
    assert np.array_equal(frames_to_numpy(table), pixels)
    assert np.array_equal(frames_to_numpy(table.slice(1)), pixels[1:])  # an offset into the buffers
    numpy_batch = {
        "frames": np.array([p.tobytes() for p in pixels], dtype=object),
        "frames_shape": np.array([[1, 2, 1, 3]] * 2),
    }
    assert np.array_equal(frames_to_numpy(numpy_batch), pixels)
    mixed = pa.table(
        {
            "frames": [b"\0" * 6, b"\0" * 3],
            "frames_shape": pa.array([[1, 2, 1, 3], [1, 1, 1, 3]], pa.list_(pa.int32(), 4)),
        }
    )
    with pytest.raises(ValueError, match="mixes clip shapes"):
        frames_to_numpy(mixed)


def test_a_fixed_resize_travels_through_dataset_json(tmp_path):
    clip = ClipSpec(clip_len=8, size=(128, 171))
    summary = PrepareSummary("data", str(tmp_path), ("a", "b"), clip, clip.frame_shape, {"train": 1}, {"train": 3}, 0)
    (tmp_path / "dataset.json").write_text(summary.to_json())
    assert json.loads((tmp_path / "dataset.json").read_text())["clip"]["size"] == [128, 171]
    back = read_summary(str(tmp_path))
    assert back.clip == clip and back.clip.size == (128, 171) and back.frames_shape == (8, 128, 171, 3)


@pytest.mark.parametrize("text, size", [("112", 112), ("128x171", (128, 171)), ("128X171", (128, 171))])
def test_prepare_size_option(text, size):
    args = build_parser().parse_args(["prepare", "--dataset", "d", "--out", "o", "--size", text])
    assert args.size == size
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "--dataset", "d", "--out", "o", "--size", "128x"])
