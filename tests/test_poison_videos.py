"""Poison videos: one whose decode kills its worker, one that decodes at a crawl. Each ends as one error row and
the job finishes. The faults come from the decoder fault hook (``raycondi.video.faults``), on copies of good
videos, in a real local Ray whose workers alone have the hook on."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycondi.pipeline import LabelConfig, check_models, label_videos
from raycondi.pipeline.sink import output_files
from raycondi.pipeline.stages import ScoreSelectPredict, used_up
from raycondi.video.container import DecodeStats, VideoDecodeError
from raycondi.video.decode import iter_clips
from raycondi.video.faults import ENV
from tests.checkpoints import CLIP_LEN, save_models, synth

FAULTS = {"crash": ["poison-crash"], "slow_s": {"poison-slow": 0.5}}


def test_used_up_counts_starts_and_names_the_limit():
    config = LabelConfig("in", "out", "teacher", strategy="dense", max_video_attempts=2)
    starts = Counter()

    def attempts(video_id: str) -> int:
        starts[video_id] += 1
        return starts[video_id]

    assert [used_up(config, "v", attempts) for _ in range(2)] == [None, None]
    assert used_up(config, "v", attempts) == ("worker died decoding this video, 2 times (--max-video-attempts 2): it "
                                              "may crash the decoder or exhaust the worker's memory")
    assert used_up(config, "other", attempts) is None and used_up(config, "v", None) is None


def test_a_used_up_video_is_an_error_row_without_a_decode(tmp_path):
    teacher, student = save_models(str(tmp_path / "models"))
    config = LabelConfig("in", "out", teacher, student, k=1, max_video_attempts=1)
    stage = ScoreSelectPredict(config, *check_models(config), attempts=lambda video_id: 2)
    row = stage(pa.table({"video_id": ["v"], "uri": [str(tmp_path / "does-not-exist.mp4")]})).to_pylist()[0]
    assert row["status"] == "error" and row["error"].startswith("worker died decoding this video, 1 times")
    assert row["frames_decoded"] == 0 and row["bytes_read"] == 0  # the file was never opened


def test_a_decode_over_its_time_limit_fails(tmp_path):
    synth(str(tmp_path / "videos"), 1, min_seconds=2.4, max_seconds=2.4)
    video = next((tmp_path / "videos").rglob("*.mp4"))
    clips = list(iter_clips(str(video), CLIP_LEN, 32, stats=DecodeStats(timeout_s=60)))
    assert clips
    stats = DecodeStats(timeout_s=1e-6)
    with pytest.raises(VideoDecodeError, match=r"decoding took longer than the video timeout of 1e-06 s"):
        list(iter_clips(str(video), CLIP_LEN, 32, stats=stats))


def test_label_config_checks_the_new_limits():
    with pytest.raises(ValueError, match="video_timeout must be > 0 seconds.*max_video_attempts must be >= 1") as raised:
        LabelConfig("in", "out", "t", strategy="dense", max_video_attempts=0, video_timeout=0)
    assert "invalid LabelConfig" in str(raised.value)


@pytest.fixture(scope="module")
def faulty_ray():
    """A local Ray whose workers have the fault hook on (the test process has not)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {ENV: json.dumps(FAULTS)}})
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("stages", ["fused", "split"])
def test_poison_videos_become_one_error_row_each(tmp_path, faulty_ray, stages):
    synth(str(tmp_path / "dataset"), 6, min_seconds=2.4, max_seconds=2.4)
    videos = tmp_path / "videos"  # a plain prefix: every video file under it
    videos.mkdir()
    sources = sorted((tmp_path / "dataset").rglob("*.mp4"))
    for i, source in enumerate(sources):
        shutil.copy(source, videos / f"v{i}.mp4")
    for name in ("poison-crash", "poison-slow"):  # good videos that the hook makes bad
        shutil.copy(sources[0], videos / f"{name}.mp4")
    teacher, student = save_models(str(tmp_path / "models"))
    out = tmp_path / "labels"
    summary = label_videos(LabelConfig(str(videos), str(out), teacher, student, k=2, stages=stages,
                                       student_actors=1, teacher_actors=1, max_video_attempts=2, video_timeout=3.0))
    rows = pq.read_table(output_files(str(out), None)).to_pylist()
    ids = Counter(r["video_id"] for r in rows)
    assert len(ids) == 8 and set(ids.values()) == {1}  # every video once, the two poison ones included
    by_name = {r["video_id"]: r for r in rows}
    crash, slow = by_name.pop("poison-crash"), by_name.pop("poison-slow")
    assert crash["status"] == "error" and crash["error"].startswith("worker died decoding this video, 2 times")
    assert slow["status"] == "error" and "decoding took longer than the video timeout of 3 s" in slow["error"]
    assert {r["status"] for r in by_name.values()} == {"ok"}
    assert (summary.videos_ok, summary.videos_error) == (6, 2)
