"""The synthetic action benchmark: real MP4 files decoded with PyAV, local and on the loopback S3 server."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from raycondi.cli import main
from raycondi.datasets.synthetic import (
    ACTIONS,
    AMBIGUITY_KINDS,
    BENCHMARKS,
    SynthConfig,
    ambiguity_rates,
    generate_dataset,
)

# 20 videos of 3 to 6 s: two per class, one group each, so one video per class goes to the test split.
SMALL = SynthConfig(videos=20, seed=3, min_seconds=3.0, max_seconds=6.0, clips_per_group=1)


def _decode(path: Path | io.BytesIO) -> tuple[np.ndarray, av.VideoStream]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("synth")
    return out, generate_dataset(str(out), SMALL, workers=1)


def test_layout_lists_every_video_once_with_its_class(small):
    out, summary = small
    classes = [line.split() for line in (out / "classInd.txt").read_text().splitlines()]
    assert classes == [[str(i + 1), name] for i, name in enumerate(list(ACTIONS)[:10])]
    index = {name: int(i) for i, name in classes}

    train = [line.split() for line in (out / "trainlist01.txt").read_text().splitlines()]
    test = (out / "testlist01.txt").read_text().splitlines()
    assert all(int(label) == index[path.split("/")[0]] for path, label in train)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.mp4"))
    assert sorted([path for path, _ in train] + test) == written
    assert len(written) == summary.videos == 20
    assert (summary.train_videos, summary.test_videos) == (10, 10)
    assert {p.split("/")[0] for p in test} == set(index)  # stratified: every class in both splits
    assert {p.split("/")[0] for p, _ in train} == set(index)
    assert "MoveLeft/v_MoveLeft_g01_c01.mp4" in test and "MoveLeft/v_MoveLeft_g02_c01.mp4 1" in {
        " ".join(t) for t in train
    }


def test_ground_truth_covers_every_clip_of_every_decoded_video(small):
    out, summary = small
    gt = pq.read_table(out / "ground_truth.parquet").to_pylist()
    assert len(gt) == summary.clips
    assert summary.ambiguous_clips == sum(r["ambiguous"] for r in gt)
    assert summary.duration_s == pytest.approx(summary.clips * 16 / 25)
    assert summary.size_bytes == sum(p.stat().st_size for p in out.rglob("*.mp4"))
    for path in out.rglob("*.mp4"):
        frames, stream = _decode(path)
        rows = [r for r in gt if r["video_id"] == path.stem]
        assert frames.shape == (16 * len(rows), 96, 128, 3)
        assert stream.average_rate == 25 and stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert [r["clip_index"] for r in rows] == list(range(len(rows)))
        assert {r["label"] for r in rows} == {path.parent.name}
        for r in rows:
            assert r["start_s"] == pytest.approx(r["clip_index"] * 0.64)
            assert r["end_s"] == pytest.approx(r["clip_index"] * 0.64 + 0.64)
            assert r["ambiguous"] == (r["kind"] != "clean")
            assert (0.4 <= r["severity"] <= 1.0) if r["ambiguous"] else r["severity"] == 0.0
        assert any(r["kind"] == "clean" for r in rows)  # every video keeps a clean clip
        assert 3.0 - 0.64 <= len(rows) * 0.64 <= 6.0 + 0.64


def test_every_ambiguity_kind_occurs_and_summary_counts_them(small):
    out, summary = small
    kinds = pq.read_table(out / "ground_truth.parquet", columns=["kind"]).column("kind").to_pylist()
    assert set(kinds) == {"clean", *AMBIGUITY_KINDS}
    assert summary.kind_counts == {k: kinds.count(k) for k in ("clean", *AMBIGUITY_KINDS)}
    assert 0 < summary.ambiguous_share < 1


def _clips(out: Path) -> Iterator[tuple[dict, np.ndarray]]:
    """Every clip of the dataset in ``out`` (16 x 96 x 128 x 3, float32) with its ground-truth row."""
    gt = pq.read_table(out / "ground_truth.parquet").to_pylist()
    for path in sorted(out.rglob("*.mp4")):
        frames, _ = _decode(path)
        clips = frames.astype(np.float32).reshape(-1, 16, 96, 128, 3)
        yield from ((r, clips[r["clip_index"]]) for r in gt if r["video_id"] == path.stem)


def test_ambiguous_segments_look_like_their_kind(small):
    """Frozen clips stand still in their second half (they move for at most 5 frames); low-contrast clips
    have a few grey levels; noise bursts are busy."""
    spread: dict[str, list[float]] = {}
    motion: dict[str, list[float]] = {}
    for r, clip in _clips(small[0]):
        spread.setdefault(r["kind"], []).append(float(clip.std()))
        motion.setdefault(r["kind"], []).append(float(np.abs(np.diff(clip[8:], axis=0)).mean()))
    # frozen: H.264 residue only (at most 0.004 here); the stillest clean clip, a zoom, 0.32
    assert max(motion["frozen"]) < 0.05 and min(motion["clean"]) > 0.25
    assert max(spread["low_contrast"]) < min(spread["clean"])
    assert min(spread["noise"]) > max(spread["clean"])


def test_graded_severity_leaves_some_of_the_class_in_ambiguous_clips(tmp_path):
    """With severity drawn from [0, 1]: frozen clips move up to mid-clip and stand still after it; the more
    severe a low-contrast clip the flatter, the more severe a noise burst the busier."""
    out = tmp_path / "graded"
    generate_dataset(str(out), dataclasses.replace(SMALL, severity=(0.0, 1.0)), workers=2)
    gt = pq.read_table(out / "ground_truth.parquet").to_pylist()
    assert all((0.0 <= r["severity"] <= 1.0) if r["ambiguous"] else r["severity"] == 0.0 for r in gt)
    assert len({r["severity"] for r in gt if r["ambiguous"]}) > 10
    spread: dict[str, list[float]] = {}
    severity: dict[str, list[float]] = {}
    for r, clip in _clips(out):
        spread.setdefault(r["kind"], []).append(float(clip.std()))
        severity.setdefault(r["kind"], []).append(r["severity"])
        if r["kind"] == "frozen":
            moving = round((1 - r["severity"]) * 8)
            assert np.abs(np.diff(clip[moving + 1 :], axis=0)).mean() < 0.05
            if moving > 2:
                assert np.abs(np.diff(clip[:moving], axis=0)).mean() > 0.25
    assert np.corrcoef(severity["low_contrast"], spread["low_contrast"])[0, 1] < -0.5
    assert np.corrcoef(severity["noise"], spread["noise"])[0, 1] > 0.5


def test_synth_command_passes_the_severity_range(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--videos", "6", "--classes", "2", "--seed", "1",
                 "--severity", "0.4", "0.6"]) == 0
    assert '"videos": 6' in capsys.readouterr().out
    gt = pq.read_table(tmp_path / "ground_truth.parquet").to_pylist()
    assert any(r["ambiguous"] for r in gt)
    assert all((0.4 <= r["severity"] <= 0.6) if r["ambiguous"] else r["severity"] == 0.0 for r in gt)


def test_the_shapes_benchmark_differs_in_look_codec_and_ambiguity_mix(tmp_path, capsys):
    """The second embedded benchmark: MPEG-4 part 2 in AVI, only its four ambiguity kinds, severity from 0.3,
    the same layout and ground truth; the same seed gives the same bytes."""
    assert main(["synth", "--out", str(tmp_path / "a"), "--videos", "8", "--classes", "2", "--seed", "1",
                 "--benchmark", "shapes"]) == 0
    summary = json.loads(capsys.readouterr().out)
    files = sorted((tmp_path / "a").rglob("*.avi"))
    assert len(files) == 8 and not list((tmp_path / "a").rglob("*.mp4"))
    assert summary["kind_counts"]["low_contrast"] == summary["kind_counts"]["cut"] == 0
    assert summary["ambiguous_clips"] > 0
    gt = pq.read_table(tmp_path / "a" / "ground_truth.parquet").to_pylist()
    assert all((0.3 <= r["severity"] <= 1.0) if r["ambiguous"] else r["severity"] == 0.0 for r in gt)
    frames, stream = _decode(files[0])
    assert stream.codec_context.name == "mpeg4" and frames.shape[1:] == (96, 128, 3)
    assert len(frames) == 16 * sum(r["video_id"] == files[0].stem for r in gt)
    assert "v_" in (tmp_path / "a" / "trainlist01.txt").read_text().split(".avi")[0]
    generate_dataset(str(tmp_path / "b"), SynthConfig(videos=8, classes=2, seed=1, **BENCHMARKS["shapes"]),
                     workers=2)
    assert all(f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes() for f in files)


def test_class_mean_shares_of_ambiguity_follow_the_configured_range():
    assert ambiguity_rates(SynthConfig(classes=4, ambiguity=(0.1, 0.4))) == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_a_single_frame_does_not_reveal_the_class(tmp_path):
    """Actor and background are drawn independently of the class: per-class means of first-frame colour
    statistics differ no more than chance (one-way ANOVA ratio near 1; a class-coloured actor gives >> 10)."""
    config = SynthConfig(videos=200, seed=5, min_seconds=0.64, max_seconds=0.64, ambiguity=(0.0, 0.0))
    generate_dataset(str(tmp_path), config, workers=2)
    features, labels = [], []
    for c, name in enumerate(list(ACTIONS)[:10]):
        for path in sorted((tmp_path / name).glob("*.mp4")):
            with av.open(str(path)) as container:
                first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)
            features.append(np.concatenate([first.mean(axis=(0, 1)), first.std(axis=(0, 1))]))
            labels.append(c)
    x, y = np.array(features), np.array(labels)
    x = (x - x.mean(0)) / x.std(0)
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    between = (means**2).sum(1).mean() * 20 / 9  # 20 videos per class, 9 degrees of freedom
    within = np.mean([((x[y == c] - means[c]) ** 2).sum(1).sum() / 19 for c in range(10)])
    assert between / within < 2.0


def test_same_seed_gives_identical_bytes_whatever_the_workers_and_another_seed_differs(tmp_path):
    config = SynthConfig(videos=4, seed=11, min_seconds=1.0, max_seconds=2.0, classes=2)
    generate_dataset(str(tmp_path / "a"), config, workers=1)
    generate_dataset(str(tmp_path / "b"), config, workers=2)
    generate_dataset(str(tmp_path / "c"), dataclasses.replace(config, seed=12), workers=1)
    files = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 + 4  # videos, classInd, lists, ground truth
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    videos = [name for name in files if name.endswith(".mp4")]
    assert all((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n in videos)


def test_writes_to_s3(tmp_path, s3_server):
    config = SynthConfig(videos=3, seed=2, min_seconds=1.0, max_seconds=1.5, classes=3)
    summary = generate_dataset(s3_server.uri("synth"), config, workers=1)
    generate_dataset(str(tmp_path), config, workers=1)
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix="synth/")["Contents"]
    local = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert {o["Key"].removeprefix("synth/") for o in listed} == set(local)
    for key, data in local.items():
        assert client.get_object(Bucket=s3_server.bucket, Key=f"synth/{key}")["Body"].read() == data
    video = client.get_object(Bucket=s3_server.bucket, Key="synth/MoveLeft/v_MoveLeft_g01_c01.mp4")["Body"].read()
    frames, _ = _decode(io.BytesIO(video))
    assert frames.shape[1:] == (96, 128, 3) and summary.videos == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("videos", 0),
        ("classes", 1),
        ("classes", len(ACTIONS) + 1),
        ("width", 127),
        ("height", 16),
        ("fps", 0),
        ("clip_len", 1),
        ("min_seconds", 0.0),
        ("max_seconds", 0.5),
        ("ambiguity", (0.2, 1.0)),
        ("severity", (0.5, 0.4)),
        ("severity", (0.0, 1.5)),
        ("kinds", ("occlusion", "rain")),
        ("kinds", ()),
        ("test_share", 1.0),
        ("seed", -1),
        ("videos", 2.0),
        ("crf", 52),
        ("look", "sprites"),
        ("codec", "vp9"),
    ],
)
def test_bad_config_raises_naming_the_argument(name, value):
    with pytest.raises(ValueError, match=f"SynthConfig.{name}="):
        SynthConfig(**{name: value})


def test_bad_workers_raises(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        generate_dataset(str(tmp_path), SynthConfig(videos=1), workers=0)
