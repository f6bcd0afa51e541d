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
from raycondi.pipeline.label import video_blocks
from raycondi.pipeline.sink import output_files
from raycondi.pipeline.stages import ScoreSelectPredict, used_up
from raycondi.video.container import DecodeStats, VideoDecodeError
from raycondi.video.decode import iter_clips
from raycondi.video.faults import ENV
from tests.checkpoints import CLIP_LEN, save_models, synth

FAULTS = {"crash": ["poison-crash"], "slow_s": {"poison-slow": 0.5}}


class Log:
    """:class:`~raycondi.pipeline.stages.Attempts` in this process, as ``RunAttempts`` keeps them."""

    def __init__(self) -> None:
        self.unfinished: Counter = Counter()
        self.calls: list[tuple[str, str]] = []

    def begin(self, video_id: str) -> int:
        self.calls.append(("begin", video_id))
        self.unfinished[video_id] += 1
        return self.unfinished[video_id] - 1

    def finish(self, video_id: str) -> None:
        self.calls.append(("finish", video_id))
        self.unfinished[video_id] -= 1


def test_used_up_counts_the_decodes_that_never_finished():
    config = LabelConfig("in", "out", "teacher", strategy="dense", max_video_attempts=2)
    log = Log()
    assert [used_up(config, "v", log) for _ in range(2)] == [None, None]  # two starts, both died
    assert used_up(config, "v", log) == ("worker died decoding this video (2 attempts, --max-video-attempts 2): it "
                                         "may crash the decoder")
    for _ in range(3):  # a video that finished every time is never blamed, however often its task was retried
        assert used_up(config, "innocent", log) is None
        log.finish("innocent")
    assert used_up(config, "v", None) is None


def test_the_stage_records_each_decode_and_writes_a_used_up_video_without_decoding_it(tmp_path):
    teacher, student = save_models(str(tmp_path / "models"))
    config = LabelConfig("in", "out", teacher, student, k=1, max_video_attempts=1)
    log = Log()
    log.unfinished["poison"] = 1  # its worker died once already
    stage = ScoreSelectPredict(config, *check_models(config), attempts=log)
    missing = str(tmp_path / "does-not-exist.mp4")
    rows = stage(pa.table({"video_id": ["poison", "gone"], "uri": [missing, missing]})).to_pylist()
    assert rows[0]["error"].startswith("worker died decoding this video (1 attempts")
    assert rows[0]["frames_decoded"] == 0 and rows[0]["bytes_read"] == 0  # never opened
    assert rows[1]["error"].startswith("cannot read the file")  # a decode error finishes the decode too
    assert log.calls == [("begin", "poison"), ("finish", "poison"), ("begin", "gone"), ("finish", "gone")]
    assert +log.unfinished == Counter(poison=1)  # the death before this run


def test_videos_are_one_per_block_up_to_the_bound_then_a_few_each():
    videos = pa.table({"video_id": [f"v{i}" for i in range(7)]})
    assert [b.num_rows for b in video_blocks(videos, max_blocks=10)] == [1] * 7
    assert [b["video_id"].to_pylist() for b in video_blocks(videos, max_blocks=3)] == [
        ["v0", "v1", "v2"], ["v3", "v4", "v5"], ["v6"]]


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
def test_poison_videos_become_one_error_row_each(tmp_path, faulty_ray, stages, capsys):
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
    assert crash["status"] == "error" and crash["error"].startswith("worker died decoding this video (2 attempts")
    assert slow["status"] == "error" and "decoding took longer than the video timeout of 3 s" in slow["error"]
    assert {r["status"] for r in by_name.values()} == {"ok"}
    assert (summary.videos_ok, summary.videos_error) == (6, 2)
    with capsys.disabled():
        print(f"\n  poison videos ({stages}): 8 videos, 2 worker crashes and 1 crawl injected, {len(rows)} rows, 2 error "
              f"rows: {crash['error'][:60]!r}...; {slow['error']!r}")
