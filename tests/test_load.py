"""Load: a 10,000-object S3 prefix listed page by page through flaky storage, and 2,000 short videos labelled in
one run on 2 CPUs, each exactly once. (Memory over such a run: ``benchmarks/label_many.py``.)"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
import pytest

from raycondi.datasets.synthetic import SynthConfig, generate_dataset
from raycondi.pipeline import LabelConfig, label_videos, list_videos
from raycondi.pipeline.sink import output_files
from raycondi.video.storage import StorageOptions
from tests.checkpoints import save_models
from tests.faulty_s3 import FaultyS3

pytestmark = pytest.mark.slow


def test_a_ten_thousand_object_prefix_is_listed_in_pages_through_faults(s3_server, capsys):
    client = s3_server.client()
    keys = [f"load/videos/{i // 1000:02d}/clip{i:05d}.mp4" for i in range(10_000)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"v"), keys))
    client.put_object(Bucket=s3_server.bucket, Key="load/videos/readme.txt", Body=b"not listed: not a video")
    proxy = FaultyS3(s3_server.endpoint_url, rate=0.2, seed=3).start()
    try:
        table = list_videos(s3_server.uri("load/videos"), StorageOptions(endpoint_url=proxy.endpoint_url))
    finally:
        proxy.stop()
    assert table.num_rows == 10_000 and table["video_id"].to_pylist() == sorted(k[12:-4] for k in keys)
    assert proxy.requests["LIST"] >= 10 and proxy.injected > 0  # 1,000 keys a page, and faults survived
    with capsys.disabled():
        print(f"\n  10,000-object listing: {proxy.requests['LIST']} LIST requests, {proxy.injected} faults injected "
              f"{dict(proxy.counts)}, {table.num_rows} videos listed, 0 missing")


def test_two_thousand_videos_in_one_run(tmp_path, ray_runtime):
    videos = tmp_path / "videos"
    generate_dataset(str(videos), SynthConfig(videos=2000, classes=3, fps=10, width=64, height=48, clip_len=4,
                                              min_seconds=1.6, max_seconds=1.6), workers=2)
    teacher, student = save_models(str(tmp_path / "models"))
    summary = label_videos(LabelConfig(str(videos), str(tmp_path / "labels"), teacher, student, k=2))
    ids = Counter(i for f in output_files(str(tmp_path / "labels"), None)
                  for i in pq.read_table(f, columns=["video_id"])["video_id"].to_pylist())
    assert set(ids) == set(list_videos(str(videos))["video_id"].to_pylist()) and set(ids.values()) == {1}
    assert (summary.videos_ok, summary.videos_error, len(ids)) == (2000, 0, 2000)
