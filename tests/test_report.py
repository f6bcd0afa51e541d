"""Tests for raycondi.audit (``raycondi report``): the arithmetic on hand-made rows, the frame strips on real
videos, the page rendered by a real headless Chromium, the command's errors, S3, and a real labelling run."""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raycondi import cli_report
from raycondi.audit import ReportConfig, write_report
from raycondi.audit.errors import ErrorGroups, reason_key
from raycondi.audit.frames import clip_strips, decoded_clips, frame_indices, strip
from raycondi.audit.page import teacher_sentence
from raycondi.audit.scan import SCALARS, Totals, open_labels, read_samples, scan
from raycondi.pipeline.schema import OUTPUT_SCHEMA, output_files
from raycondi.video.container import DecodeLimits
from raycondi.video.decode import ClipSpec, iter_clips
from raycondi.video.storage import StorageOptions, list_files, read_bytes, write_bytes
from tests.checkpoints import save_models
from tests.videos import gradient_frames, level_frames, level_index, write_video

PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def row(video_id: str, score: float | None = 0.5, **columns) -> dict:
    """An output row with every column: an ok condi_sr row of 4 clips (clips 2 and 0 selected) unless told."""
    base = dict(video_id=video_id, uri=f"/videos/{video_id}.mp4", status="ok", error=None, label="MoveLeft",
                label_index=0, score=score, top5_labels=["MoveLeft", "MoveRight"], top5_scores=[score, 0.1],
                num_clips=4, duration_s=1.6, strategy="condi_sr", k=2, k_student=1, selected_clips=[2, 0],
                selected_start_s=[0.8, 0.0], selected_end_s=[1.2, 0.4], selected_confidence=[0.9, 0.7],
                selected_by=["student", "teacher"], teacher_clips=1, clip_confidence=[0.7, 0.2, 0.9, 0.1],
                candidate_clips=None, student_model="/m/student", student_architecture="shufflenetv2_3d",
                teacher_model="/m/teacher", teacher_architecture="shufflenetv2_3d", decode_s=0.1, frames_decoded=16,
                bytes_read=1000, decode_mode="full", decode_fallback=None, decoder="pyav", student_s=0.01,
                teacher_s=0.01, run_id="run1")
    return {**base, **columns}


def error_row(video_id: str, error: str, **columns) -> dict:
    nulls = dict.fromkeys(("label", "label_index", "score", "top5_labels", "top5_scores", "num_clips", "duration_s",
                           "selected_clips", "selected_start_s", "selected_end_s", "selected_confidence",
                           "selected_by", "clip_confidence", "decoder"))
    return row(video_id, **{**nulls, "status": "error", "error": error, "teacher_clips": 0, **columns})


def write_labels(folder: str, *files: list[dict]) -> str:
    """Each list of rows as one part file under ``folder`` (local or s3://), as the labelling job writes them."""
    for number, rows in enumerate(files):
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), buffer)
        write_bytes(f"{folder}/part-run1-{number:06d}.parquet", buffer.getvalue().to_pybytes())
    return folder


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA).select(SCALARS)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not on PATH: the report's browser test needs it (apt-get install -y chromium)")
    return path


def browse(page: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` (a local file) with its own profile folder."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={work / 'profile'}", "--window-size=1200,2400", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


class Images(HTMLParser):
    """The ``src`` of every ``<img>`` and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def check_in_browser(page: Path, work: Path, video_ids: list[str]) -> np.ndarray:
    """Render ``page`` in Chromium: its DOM names every video and has only inline PNGs; its screenshot (returned)
    is not blank."""
    dom = Images()
    dom.feed(browse(page, work, "--dump-dom").stdout)
    text = " ".join(dom.text)
    assert all(video_id in text for video_id in video_ids)
    assert dom.sources and all(s.startswith("data:image/png;base64,") for s in dom.sources)
    for source in dom.sources:
        data = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert data.startswith(PNG) and matplotlib.image.imread(io.BytesIO(data)).size > 0
    browse(page, work, f"--screenshot={work / 'shot.png'}")
    shot = matplotlib.image.imread(work / "shot.png")[..., :3]
    colours = np.unique((shot.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert shot.std() > 0.05 and len(colours) > 50
    return shot


@pytest.fixture
def videos(tmp_path) -> Path:
    """Three real 2 s videos, a text file named .mp4, nothing at missing.mp4, and the teacher checkpoint (4-frame
    clips: 0.4 s at 10 fps) the rows name, whose clip_len and resize the report cuts the clips with."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a", "b", "c"):
        write_video(folder / f"{name}.mp4", gradient_frames(20, 64, 48), fps=10)
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    save_models(str(tmp_path / "models"))
    return folder


def mixed_rows(videos: Path) -> list[list[dict]]:
    """Two files: three ok condi_sr rows on real videos, an ok dense row, an ok row whose video is gone, and
    three error rows of two reasons."""
    uri = {name: str(videos / f"{name}.mp4") for name in ("a", "b", "c", "text", "missing")}
    teacher = str(videos.parent / "models" / "teacher")
    return [[{**r, "teacher_model": teacher} for r in part] for part in _mixed_rows(uri)]


def _mixed_rows(uri: dict[str, str]) -> list[list[dict]]:
    return [
        [row("a", 0.9, uri=uri["a"]), row("b", 0.4, uri=uri["b"], label="MoveRight"),
         row("gone", 0.2, uri=uri["missing"]),
         error_row("text", "not a readable media file or truncated before its index (Invalid data)", uri=uri["text"])],
        [row("c", 0.6, uri=uri["c"], candidate_clips=[0, 2, 3], clip_confidence=[0.7, 0.9, 0.1]),
         row("dense", 0.3, uri=uri["a"], strategy="dense", k=4, k_student=0, teacher_clips=4, selected_clips=[0, 3],
             selected_start_s=[0.0, 1.2], selected_end_s=[0.4, 1.6], selected_confidence=None,
             selected_by=["teacher", "teacher"], clip_confidence=[], student_model=None, run_id="run2"),
         error_row("late1", "corrupt or unreadable video data near 1.20 s (x)", uri="/v/late1.mp4"),
         error_row("late2", "corrupt or unreadable video data near 0.40 s (x)", uri="/v/late2.mp4")],
    ]


# --------------------------------------------------------------------------------------------------
# arithmetic on hand-made rows
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("error, uri, key", [
    ("corrupt or unreadable video data near 12.48 s (Invalid data)", None,
     "corrupt or unreadable video data near # s (Invalid data)"),
    ("resolution 5000x4000 exceeds the limit 4096x4096", None, "resolution # exceeds the limit #"),
    ("s3://b/v/a 1.mp4: cannot read s3://b/v/a 1.mp4 again", "s3://b/v/a 1.mp4", "cannot read <video> again"),
    ("h264 decoder:  no frame decoded from 513 packets\nin a row", None,
     "h264 decoder: no frame decoded from # packets in a row"),
    ("worker died decoding this video (3 attempts, --max-video-attempts 3)", None,
     "worker died decoding this video (# attempts, --max-video-attempts #)"),
    ("decoding took longer than the video timeout of 1e-3 s", None, "decoding took longer than the video timeout of # s"),
    (None, "/v.mp4", "(no reason given)"),
])
def test_reason_key_drops_what_is_particular_to_the_video(error, uri, key):
    assert reason_key(error, uri) == key


def test_error_groups_count_each_reason_and_keep_three_examples():
    groups = ErrorGroups()
    for i in range(5):
        groups.add(f"v{i}", f"/v{i}.mp4", f"corrupt video frame near {i}.5 s")
    groups.add("w", "/w.mp4", "/w.mp4: cannot read the file: no such file or object")
    groups.add("x", "/x.mp4", "a rare reason")
    listed = [(g.reason, g.count, g.examples) for g in groups.groups()]
    assert listed == [("corrupt video frame near # s", 5, [("v0", "/v0.mp4"), ("v1", "/v1.mp4"), ("v2", "/v2.mp4")]),
                      ("a rare reason", 1, [("x", "/x.mp4")]),
                      ("cannot read the file: no such file or object", 1, [("w", "/w.mp4")])]


def test_totals_hand_computed():
    rows = [row("a", 0.05, teacher_clips=1, num_clips=4), row("b", 0.5, label="MoveRight", teacher_clips=2,
                                                             num_clips=10),
            row("c", 1.0, teacher_clips=0, num_clips=6, run_id="run2"), row("d", None, label=None, num_clips=2),
            error_row("e", "no video stream (streams: audio)", num_clips=7)]
    totals = Totals(bins=4, videos=2)
    totals.add(table(rows))
    assert (totals.rows, totals.ok, totals.errors) == (5, 4, 1)
    assert totals.labels == Counter({"MoveLeft": 2, "MoveRight": 1})
    assert totals.score_counts.tolist() == [1, 0, 1, 1]  # 0.5 opens the third bin; 1.0 is in the last
    assert (totals.teacher_clips, totals.dense_clips) == (1 + 2 + 0 + 1, 4 + 10 + 6 + 2)  # the error row's 7: no
    assert totals.settings["run_id"] == {"run1", "run2"} and totals.settings["k"] == {2}
    assert [(g.reason, g.count) for g in totals.error_groups.groups()] == [("no video stream (streams: audio)", 1)]
    assert totals.sample_ids == ["a", "b"]  # lowest first; d has no score
    assert teacher_sentence(4, 22) == "The teacher ran on 4 of 22 clips, 18.2 % of dense."
    assert teacher_sentence(0, 0) == "No ok rows: the teacher ran on no clip."


@pytest.mark.parametrize("order, expected", [("lowest", ["t1", "t2", "t4"]), ("highest", ["h", "t3", "x"])])
def test_the_sample_breaks_ties_by_video_id_whatever_the_batches(order, expected):
    scores = {"t4": 0.3, "h": 0.9, "t2": 0.3, "x": 0.5, "t1": 0.3, "t3": 0.9, "e": None}
    rows = [row(v, s) if s is not None else error_row(v, "bad") for v, s in scores.items()]
    for batch_rows in (1, 2, 3, 100):
        totals = Totals(bins=2, videos=3, sample_order=order)
        whole = table(rows)
        for start in range(0, whole.num_rows, batch_rows):
            totals.add(whole.slice(start, batch_rows))
        assert totals.sample_ids == expected, batch_rows
        assert totals.rows == 7 and totals.errors == 1


def test_scan_in_tiny_batches_equals_one_batch_and_reads_only_the_sample(tmp_path):
    rows = [row(f"v{i:02d}", (i * 7 % 10) / 10 + 0.05, label=f"c{i % 3}") for i in range(20)]
    labels = write_labels(str(tmp_path / "labels"), rows[:7], rows[7:15], rows[15:])
    results = []
    for batch_rows in (1, 3, 65_536):
        config = ReportConfig(labels, videos=4, bins=5, batch_rows=batch_rows)
        dataset = open_labels(config)
        totals = scan(config, dataset)
        samples = read_samples(config, dataset, totals.sample_ids)
        results.append((totals.rows, dict(totals.labels), totals.score_counts.tolist(), totals.sample_ids,
                        [s["video_id"] for s in samples], totals.dense_clips))
    assert results[0] == results[1] == results[2]
    assert results[0][3] == ["v00", "v10", "v03", "v13"]  # scores 0.05, 0.05, 0.15, 0.15
    assert results[0][4] == results[0][3] and results[0][2] == [4, 4, 4, 4, 4]
    assert samples[0]["clip_confidence"] == pytest.approx([0.7, 0.2, 0.9, 0.1])


# --------------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, codec, options", [
    ("plain.mp4", "h264", None),
    ("gop8.ts", "h264", {"g": "8"}),  # MPEG-TS: no index, timestamps that start late
    ("one-keyframe.ts", "h264", {"g": "1000"}),
    ("bframes.avi", "mpeg4", {"bf": "2"}),  # B-frames: the first frame's pts is not the stream's start
])
def test_strips_are_the_jobs_clips(tmp_path, name, codec, options):
    """The frames shown are those of the clips the labelling job decoded (iter_clips), whatever the container."""
    video = write_video(tmp_path / name, level_frames(24, 64, 48), fps=10, codec=codec, options=options)
    spec = ClipSpec(clip_len=4, size=24)
    job = {clip.index: clip.full() for clip in iter_clips(str(video), 4, 24)}
    shown = decoded_clips(str(video), [5, 2, 0], spec, limits=DecodeLimits(), storage=None)
    assert sorted(shown) == [0, 2, 5] and all(np.array_equal(shown[i], job[i]) for i in shown)
    assert frame_indices(4, 2).tolist() == [1, 3] and frame_indices(4, 4).tolist() == [0, 1, 2, 3]
    strips = clip_strips(str(video), [2, 0, 9], spec, frames=2, height=12, limits=DecodeLimits(), storage=None)
    assert strips[2] is None  # the video has 6 clips
    assert [s.shape for s in strips[:2]] == [(12, 2 * 12 + 2, 3)] * 2  # 24x24 frames at height 12, 2 pixels apart
    assert np.array_equal(strips[0], strip(list(job[2][[1, 3]]), 12))
    if codec == "h264":  # these encodes keep the levels exactly (MPEG-4 part 2 moves them by one or two)
        levels = [[level_index(s[:, :12].mean()), level_index(s[:, 14:].mean())] for s in strips[:2]]
        assert levels == [[9, 11], [1, 3]]  # frames 1 and 3 of clips 2 (frames 8-11) and 0


# --------------------------------------------------------------------------------------------------
# the page in a browser, the command, S3
# --------------------------------------------------------------------------------------------------
def test_report_renders_in_chromium(tmp_path, videos):
    labels = write_labels(str(tmp_path / "labels"), *mixed_rows(videos))
    before = output_files(labels, None)
    summary = write_report(ReportConfig(labels, videos=8))
    out = tmp_path / "labels" / "_report"
    assert summary.html == f"{labels}/_report/index.html" and (summary.rows, summary.ok, summary.errors) == (8, 5, 3)
    assert summary.videos == ("gone", "dense", "b", "c", "a")  # lowest score first
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.html", "classes.png", "scores.png", "teacher_share.png", "confidence-01.png", "confidence-03.png",
         "confidence-04.png", "confidence-05.png"])  # no confidence chart for dense (02): it runs no student
    assert output_files(labels, None) == before  # a resumed labelling run sees no new rows

    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "The teacher ran on 8 of 20 clips, 40.0 % of dense." in page  # 1+1+1+1 condi_sr, 4 dense; 5 x 4 clips
    assert "corrupt or unreadable video data near # s (x)</td><td>2</td>" in page.replace("<td class='n'>", "<td>")
    assert page.count("frames not shown: cannot read the file: no such file or object") == 1  # "gone"
    assert page.count("frames of clip") == 2 * 4  # a, b, c, dense: two clips each
    shot = check_in_browser(out / "index.html", tmp_path, list(summary.videos) + ["late1", "text"])
    if os.environ.get("RAYCONDI_REPORT_SCREENSHOT"):
        matplotlib.image.imsave(os.environ["RAYCONDI_REPORT_SCREENSHOT"], shot)


def test_odd_values_are_shown_as_they_are(tmp_path):
    """A class name with "$" (matplotlib's math), markup in ids and reasons, a null inside the lists."""
    odd = "cost $5 to $10 <b>"
    rows = [row("<script>x</script>", 0.5, label=odd, top5_labels=[odd, "b"], top5_scores=[None, 0.1],
                selected_by=None, selected_confidence=None),
            error_row("e&1", "bad & <i>worse</i>")]
    summary = write_report(ReportConfig(write_labels(str(tmp_path / "labels"), rows)))
    page = Path(summary.html).read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "cost $5 to $10 &lt;b&gt;" in page and "<td>–</td>" in page.replace("<td class='n'>", "<td>")
    assert "bad &amp; &lt;i&gt;worse&lt;/i&gt;" in page and summary.videos == ("<script>x</script>",)


def test_report_command_errors_are_one_line(tmp_path, videos, capsys):
    parser = argparse.ArgumentParser(prog="raycondi")
    cli_report.add_command(parser.add_subparsers())

    def run(*argv: str) -> int:
        args = parser.parse_args(["report", *argv])
        return args.run(args)

    (tmp_path / "empty").mkdir()
    for argv, message in [((str(tmp_path / "nowhere"),), "no such directory or prefix"),
                          ((str(tmp_path / "empty"),), "no Parquet files"),
                          ((str(tmp_path / "empty"), "--videos", "-1"), "--videos: must be 0 or more, got -1"),
                          ((str(tmp_path / "empty"), "--sample", "middle"), "--sample: must be one of lowest, highest")]:
        assert run(*argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("raycondi report: ") and message in err and err.count("\n") == 1
    labels = write_labels(str(tmp_path / "labels"), *mixed_rows(videos))
    assert run(labels, "--videos", "1", "--out", str(tmp_path / "elsewhere")) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'elsewhere' / 'index.html'} (8 rows, 1 video(s)")
    assert not (tmp_path / "labels" / "_report").exists()


def test_report_reads_and_writes_s3(tmp_path, videos, s3_server):
    root = s3_server.uri("report")
    for name in ("a", "b", "c", "text"):
        write_bytes(f"{root}/videos/{name}.mp4", (videos / f"{name}.mp4").read_bytes())
    rows = [[{**r, "uri": r["uri"].replace(str(videos), f"{root}/videos")} for r in part] for part in mixed_rows(videos)]
    labels = write_labels(f"{root}/labels", *rows)
    storage = StorageOptions(endpoint_url=s3_server.endpoint_url)
    summary = write_report(ReportConfig(labels, videos=3, storage=storage))
    assert summary.html == f"{labels}/_report/index.html" and summary.videos == ("gone", "dense", "b")
    page = read_bytes(summary.html, storage).decode()
    assert page.count("frames of clip") == 4 and "frames not shown" in page  # dense and b from S3; gone is gone
    assert len(list_files(f"{labels}/_report", (".png",), storage)) == len(summary.pngs) == 5
    assert output_files(labels, storage) == [f"{labels}/part-run1-{n:06d}.parquet" for n in range(2)]


# --------------------------------------------------------------------------------------------------
# a real labelling run
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow  # Ray's start and a labelling run: about 30 s on 2 CPUs
def test_report_of_a_real_labelling_run(tmp_path, ray_runtime):
    from raycondi.pipeline import LabelConfig, label_videos, labelled_ids
    from tests.checkpoints import save_models, synth

    videos = tmp_path / "videos"
    synth(str(videos / "good"), 4)  # beside a synthetic dataset, so the input is a prefix listing, not its manifest
    (videos / "bad").mkdir()
    (videos / "bad" / "broken.mp4").write_text("this is not a video\n" * 50)
    teacher, student = save_models(str(tmp_path / "models"))
    out = str(tmp_path / "labels")
    label_videos(LabelConfig(str(videos), out, teacher, student, k=2, k_student=1, student_batch_size=4))
    ids = labelled_ids(out)
    summary = write_report(ReportConfig(out, videos=3))
    assert labelled_ids(out) == ids and (summary.rows, summary.errors) == (5, 1) and len(summary.videos) == 3
    page = Path(summary.html).read_text()
    assert "not a readable media file or truncated before its index" in page and "bad/broken" in page
    assert "frames not shown" not in page and page.count("frames of clip") == 3 * 2  # K = 2 clips each
    assert sum(name.startswith("confidence-") for name in map(os.path.basename, summary.pngs)) == 3
    check_in_browser(Path(summary.html), tmp_path, list(summary.videos))
