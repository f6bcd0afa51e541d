"""raycondi.video.decode on real video files made with PyAV (tests/videos.py), locally and from loopback S3.

Most videos are 20 flat grey frames at 25 fps whose level encodes the frame index, so every test can say
exactly which decoded frame landed in which clip slot: 20 frames in clips of 8 give 3 clips, the last one
frames 16..19 looped to 16 17 18 19 16 17 18 19, starting at 0.00, 0.32, 0.64 s and ending at 0.32, 0.64,
0.80 s.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from raycondi.video import Clip, ClipSpec, DecodeLimits, SkimClip, VideoDecodeError, count_clips, iter_clips
from raycondi.video.storage import StorageOptions
from tests.videos import (
    gradient_frames,
    level_frames,
    level_index,
    quadrant_frames,
    write_audio_only,
    write_video,
)

CODECS = [("h264", ".mp4"), ("mpeg4", ".mp4"), ("libvpx-vp9", ".webm"), ("mjpeg", ".mkv")]
LOOPED = [list(range(8)), list(range(8, 16)), [16, 17, 18, 19, 16, 17, 18, 19]]
REPO = Path(__file__).resolve().parents[1]


def indices(clip: Clip) -> list[int]:
    """The frame index each slot of a clip of ``level_frames`` shows, read from its brightness."""
    return [level_index(frame.mean()) for frame in clip.frames]


def spans(clips: list[Clip]) -> list[tuple[float, float]]:
    return [(round(c.start_s, 3), round(c.end_s, 3)) for c in clips]


def decode_error(uri, **kwargs) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError) as caught:
        for _ in iter_clips(str(uri), **kwargs):
            pass
    assert caught.value.uri == str(uri)
    return caught.value


@pytest.fixture
def levels_mp4(tmp_path) -> Path:
    return write_video(tmp_path / "levels.mp4", level_frames(20, 64, 48))


# --- counting and configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "clip_len", "expected"), [(0, 16, 0), (1, 16, 1), (16, 16, 1), (17, 16, 2), (20, 8, 3)]
)
def test_count_clips(frames, clip_len, expected):
    assert count_clips(frames, clip_len) == expected


def test_invalid_arguments_raise_before_io():
    with pytest.raises(ValueError, match="clip_len"):
        iter_clips("/does/not/matter.mp4", clip_len=0)
    with pytest.raises(ValueError, match="stride"):
        ClipSpec(stride=0)
    with pytest.raises(ValueError, match=r"skim_step must be in \[1, clip_len=8\], got 9"):
        iter_clips("/does/not/matter.mp4", clip_len=8, skim_step=9)
    with pytest.raises(ValueError):
        count_clips(-1, 16)


# --- codecs, clip layout, padding ------------------------------------------------------------------------


@pytest.mark.parametrize(("codec", "suffix"), CODECS)
def test_each_codec_frame_exact(tmp_path, codec, suffix):
    path = write_video(tmp_path / f"v{suffix}", level_frames(20, 64, 48), codec=codec)
    clips = list(iter_clips(str(path), clip_len=8, size=32))
    assert [c.index for c in clips] == [0, 1, 2]
    assert all(c.frames.shape == (8, 32, 32, 3) and c.frames.dtype == np.uint8 for c in clips)
    assert spans(clips) == [(0.0, 0.32), (0.32, 0.64), (0.64, 0.8)]
    assert [indices(c) for c in clips] == LOOPED


def test_stride_samples_every_other_frame(levels_mp4):
    clips = list(iter_clips(str(levels_mp4), clip_len=4, size=16, stride=2))
    # sampled frames 0, 2, ..., 18: ten frames, clips of 4, the last one 16 18 looped
    assert [indices(c) for c in clips] == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18, 16, 18]]
    assert spans(clips) == [(0.0, 0.32), (0.32, 0.64), (0.64, 0.8)]


@pytest.mark.parametrize("step", [2, 3, 8])
def test_skim_converts_every_step_th_frame_and_the_rest_on_demand(levels_mp4, step):
    clips = list(iter_clips(str(levels_mp4), clip_len=8, size=16, skim_step=step))
    assert all(type(c) is SkimClip for c in clips)
    assert spans(clips) == [(0.0, 0.32), (0.32, 0.64), (0.64, 0.8)]
    # the skim frames are the full clip's frames 0, step, 2 step, ... (the looped padding included)
    assert [[level_index(f.mean()) for f in c.frames] for c in clips] == [looped[::step] for looped in LOOPED]
    assert [[level_index(f.mean()) for f in c.full()] for c in clips] == LOOPED
    assert all(c.full_shape == (8, 16, 16, 3) and c.frames.shape == (-(-8 // step), 16, 16, 3) for c in clips)
    # pixel for pixel what a plain decode gives
    for skim, plain in zip(clips, iter_clips(str(levels_mp4), clip_len=8, size=16), strict=True):
        assert np.array_equal(skim.full(), plain.frames) and np.array_equal(skim.frames, plain.frames[::step])
    assert clips[0].held_bytes > clips[0].frames.nbytes  # the unconverted pictures are held


def test_single_short_clip_is_looped(tmp_path):
    path = write_video(tmp_path / "three.mp4", level_frames(3, 64, 48))
    (clip,) = iter_clips(str(path), clip_len=8, size=16)
    assert indices(clip) == [0, 1, 2, 0, 1, 2, 0, 1]
    assert spans([clip]) == [(0.0, 0.12)]


def test_resize_short_side_and_centre_crop(tmp_path):
    # 96x48 in thirds red | green | blue, scaled to 48x24 (thirds of 16 columns); the centre crop keeps
    # columns 12..36 of it: 12..16 red, 16..32 green, 32..36 blue.
    frame = np.zeros((48, 96, 3), np.uint8)
    frame[:, :32, 0], frame[:, 32:64, 1], frame[:, 64:, 2] = 255, 255, 255
    path = write_video(tmp_path / "thirds.mkv", [frame] * 4, codec="mjpeg")
    (clip,) = iter_clips(str(path), clip_len=4, size=24)
    assert clip.frames.shape == (4, 24, 24, 3)
    row = clip.frames[0, 12].astype(int)
    assert row[1, 0] > 200 and row[1, 1] < 60  # column 1 of the crop is column 13 of the 48-wide frame: red
    assert row[12, 1] > 200 and row[12, 0] < 60  # the middle is green
    assert row[22, 2] > 200 and row[22, 1] < 60  # column 22 is column 34: blue


def test_resize_to_a_fixed_height_and_width(tmp_path):
    # the same thirds resized to 30x60 as a whole, aspect ratio ignored (torchvision's 128x171 rule): every
    # third keeps its 20 columns, nothing is cropped
    frame = np.zeros((48, 96, 3), np.uint8)
    frame[:, :32, 0], frame[:, 32:64, 1], frame[:, 64:, 2] = 255, 255, 255
    path = write_video(tmp_path / "thirds.mkv", [frame] * 4, codec="mjpeg")
    (clip,) = iter_clips(str(path), clip_len=4, size=(30, 60))
    assert clip.frames.shape == (4, 30, 60, 3)
    row = clip.frames[0, 15].astype(int)
    assert row[2, 0] > 200 and row[17, 0] > 200 and row[17, 1] < 60  # columns 0-19: red
    assert row[22, 1] > 200 and row[37, 1] > 200 and row[37, 2] < 60  # columns 20-39: green
    assert row[42, 2] > 200 and row[57, 2] > 200 and row[57, 1] < 60  # columns 40-59: blue


@pytest.mark.parametrize(("rotation", "shape"), [(None, (20, 30)), (-90, (20, 30))])
def test_fixed_resize_is_of_the_displayed_picture(tmp_path, rotation, shape):
    # a 64x48 video shown rotated a quarter turn is 48 wide and 64 high; the (20, 30) resize is of what is shown
    path = write_video(tmp_path / "rot.mp4", quadrant_frames(4, 64, 48), rotation=rotation)
    (clip,) = iter_clips(str(path), clip_len=4, size=(20, 30))
    assert clip.frames.shape == (4, *shape, 3)
    grey = clip.frames[0].mean(axis=-1)
    corner = (0, -1) if rotation else (0, 0)  # the white quadrant: top right once rotated clockwise
    assert grey[corner] > 200


# --- variable frame rate, odd sizes, rotation, audio -----------------------------------------------------


def test_variable_frame_rate_uses_timestamps(tmp_path):
    times = [0.0, 0.04, 0.1, 0.3, 0.31, 0.5, 0.9, 1.0]
    path = write_video(tmp_path / "vfr.mp4", level_frames(8, 64, 48), times=times)
    clips = list(iter_clips(str(path), clip_len=3, size=16))
    assert [indices(c) for c in clips] == [[0, 1, 2], [3, 4, 5], [6, 7, 6]]
    assert [c.start_s for c in clips] == pytest.approx([0.0, 0.3, 0.9], abs=1e-3)
    assert [c.end_s for c in clips[:2]] == pytest.approx([0.3, 0.9], abs=1e-3)
    assert 1.0 < clips[2].end_s <= 1.1  # the last frame lasts one nominal frame


@pytest.mark.parametrize(
    ("codec", "suffix", "width", "height", "pix_fmt"),
    [("mpeg4", ".mp4", 101, 75, None), ("mjpeg", ".mkv", 75, 101, None), ("h264", ".mp4", 33, 161, "yuv444p")],
)
def test_odd_sizes(tmp_path, codec, suffix, width, height, pix_fmt):
    path = write_video(tmp_path / f"odd{suffix}", level_frames(10, width, height), codec=codec, pix_fmt=pix_fmt)
    clips = list(iter_clips(str(path), clip_len=4, size=24))
    assert [c.frames.shape for c in clips] == [(4, 24, 24, 3)] * 3
    assert [indices(c) for c in clips] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]]


@pytest.mark.parametrize(
    ("rotation", "white_quadrant"),
    [(None, (0, 0)), (-90, (0, 1)), (90, (1, 0)), (180, (1, 1))],  # (row, column) of the white quadrant
)
def test_rotation_tag_rotates_frames(tmp_path, rotation, white_quadrant):
    # The source's top-left quadrant is white; a display matrix rotating by -90 degrees (90 clockwise,
    # a phone's "rotate=90" tag) moves it to the top right.
    path = write_video(tmp_path / "rot.mp4", quadrant_frames(4, 64, 48), rotation=rotation)
    (clip,) = iter_clips(str(path), clip_len=4, size=32)
    grey = clip.frames[0].mean(axis=-1)
    means = np.array([[grey[:16, :16].mean(), grey[:16, 16:].mean()], [grey[16:, :16].mean(), grey[16:, 16:].mean()]])
    assert means[white_quadrant] > 240
    assert np.sort(means.ravel())[2] < 15  # the other three stay black


@pytest.mark.parametrize(("codec", "suffix"), [("h264", ".mp4"), ("libvpx-vp9", ".webm")])
def test_audio_track_is_ignored(tmp_path, codec, suffix):
    path = write_video(tmp_path / f"av{suffix}", level_frames(20, 64, 48), codec=codec, audio=True)
    clips = list(iter_clips(str(path), clip_len=8, size=32))
    assert spans(clips) == [(0.0, 0.32), (0.32, 0.64), (0.64, 0.8)]
    assert [indices(c) for c in clips] == LOOPED


# --- bad files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"this is a text file, not a video\n" * 100, b"", bytes(range(256)) * 400])
def test_not_a_video(tmp_path, content):
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    assert decode_error(path).reason.startswith("not a readable media file")


def test_still_image(tmp_path):
    path = tmp_path / "photo.mp4"
    av_frame = av.VideoFrame.from_ndarray(np.zeros((32, 48, 3), np.uint8), format="rgb24")
    av_frame.save(str(tmp_path / "photo.png"))
    path.write_bytes((tmp_path / "photo.png").read_bytes())
    assert decode_error(path).reason == "a still image (png_pipe), not a video"


def test_missing_file(tmp_path):
    assert decode_error(tmp_path / "missing.mp4").reason == "cannot read the file: no such file or object"


def test_audio_only(tmp_path):
    path = write_audio_only(tmp_path / "tone.m4a")
    assert decode_error(path).reason == "no video stream (streams: audio)"


@pytest.mark.parametrize(
    ("codec", "suffix", "container_options", "reason"),
    [
        ("h264", ".mp4", None, r"not a readable media file or truncated before its index"),  # the index is lost
        ("h264", ".mp4", {"movflags": "faststart"}, r"corrupt or truncated video packet near 2\.\d\d s"),
        ("libvpx-vp9", ".webm", None, r"incomplete: decoded 2\.\d\d s of the declared 4\.00 s"),
        ("mjpeg", ".mkv", None, r"incomplete: decoded 2\.\d\d s of the declared 4\.00 s"),
    ],
)
def test_truncated(tmp_path, codec, suffix, container_options, reason):
    # 4 s of video cut to 60 % of its bytes
    path = write_video(
        tmp_path / f"full{suffix}", gradient_frames(100, 96, 64), codec=codec, container_options=container_options
    )
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert len(list(iter_clips(str(path), clip_len=16, size=16))) == 7
    assert re.match(reason, decode_error(cut, clip_len=16, size=16).reason)


@pytest.mark.parametrize(("codec", "suffix"), CODECS)
def test_corrupt_bytes_in_the_middle(tmp_path, codec, suffix):
    path = write_video(tmp_path / f"good{suffix}", gradient_frames(100, 96, 64), codec=codec)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(bytes(data))
    reason = decode_error(bad, clip_len=16, size=16).reason
    # H.264, MPEG-4 and MJPEG decoders reject the damaged packet; the WebM demuxer loses sync and ends early.
    assert reason.startswith("corrupt") or reason.startswith("incomplete: decoded 2.")


@pytest.mark.parametrize(
    ("suffix", "codec", "limits", "reason"),
    [
        (".mp4", "h264", DecodeLimits(max_width=32), "resolution 64x48 exceeds the limit 32x4096"),
        (".mp4", "h264", DecodeLimits(max_height=40), "resolution 64x48 exceeds the limit 4096x40"),
        (".mp4", "h264", DecodeLimits(max_duration_s=0.5), "duration over 0.8 s exceeds the limit 0.5 s"),
        (".mp4", "h264", DecodeLimits(max_frames=10), "20 frames exceed the limit 10"),  # declared in the header
        (".webm", "libvpx-vp9", DecodeLimits(max_frames=10), "11 frames exceed the limit 10"),  # counted while decoding
    ],
)
def test_limits(tmp_path, suffix, codec, limits, reason):
    path = write_video(tmp_path / f"v{suffix}", level_frames(20, 64, 48), codec=codec)
    assert decode_error(path, limits=limits).reason == reason


def test_limit_found_while_decoding_stops_early(tmp_path):
    # WebM declares no frame count: the limit is hit at frame 11, i.e. after the first clip of 8.
    path = write_video(tmp_path / "v.webm", level_frames(20, 64, 48), codec="libvpx-vp9")
    clips = iter_clips(str(path), clip_len=8, size=16, limits=DecodeLimits(max_frames=10))
    assert indices(next(clips)) == list(range(8))
    with pytest.raises(VideoDecodeError, match="11 frames exceed the limit 10"):
        next(clips)


# --- object storage --------------------------------------------------------------------------------------


def test_decode_from_s3_matches_local(s3_server, levels_mp4):
    key = "decode/levels.mp4"
    s3_server.client().upload_file(str(levels_mp4), s3_server.bucket, key)
    remote = list(iter_clips(s3_server.uri(key), clip_len=8, size=32))
    local = list(iter_clips(str(levels_mp4), clip_len=8, size=32))
    assert spans(remote) == spans(local) == [(0.0, 0.32), (0.32, 0.64), (0.64, 0.8)]
    assert all(np.array_equal(r.frames, l.frames) for r, l in zip(remote, local, strict=True))
    explicit = list(iter_clips(s3_server.uri(key), clip_len=8, size=32, storage=StorageOptions(s3_server.endpoint_url)))
    assert [indices(c) for c in explicit] == LOOPED


def test_missing_s3_object(s3_server):
    uri = s3_server.uri("decode/missing.mp4")
    assert decode_error(uri).reason == "cannot read the file: no such file or object"


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, re, sys
    from raycondi.video import iter_clips

    def mb(field):  # VmRSS: resident now; VmHWM: peak resident since the last reset
        return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current RSS, so the import's own peak does not hide growth
    baseline = mb("VmRSS")
    clips = iter_clips(sys.argv[1], clip_len=16, size=224)
    next(clips)
    first = mb("VmHWM")
    count = 1 + sum(1 for _ in clips)
    print(json.dumps({"baseline": baseline, "first": first, "peak": mb("VmHWM"), "clips": count}))
    """
)


@pytest.mark.slow  # 10-20 s on 2 shared cores, mostly encoding the 3-minute video
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak RSS from /proc")
def test_three_minute_video_from_s3_in_bounded_memory(s3_server, tmp_path):
    # 3 min at 25 fps = 4500 frames = 282 clips of 16. At size 224 each clip is 2.4 MB, so a decoder that
    # kept its clips (or decoded frames) would grow by >650 MB; streaming keeps a couple of clips.
    path = write_video(tmp_path / "long.mp4", gradient_frames(4500, 320, 240), codec="h264")
    s3_server.client().upload_file(str(path), s3_server.bucket, "decode/long.mp4")
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, s3_server.uri("decode/long.mp4")],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=True,
    )
    memory = json.loads(result.stdout)
    print("memory (MB):", memory)
    assert memory["clips"] == count_clips(4500, 16) == 282
    assert memory["peak"] - memory["baseline"] < 300
    assert memory["peak"] - memory["first"] < 50  # no growth with the length of the video
