"""raycondi.video.seek: clips decoded by seeking are the full decode's, pixel for pixel, on H.264 with B-frames,
MPEG-4 part 2 and VP9; what it cannot number it refuses; keyframe candidates; what a decode costs."""

from __future__ import annotations

import numpy as np
import pytest
from videos import gradient_frames, level_frames, write_video

from raycondi.video import ClipSpec, DecodeStats, VideoDecodeError, iter_clips
from raycondi.video.seek import NoSeek, SeekingDecoder, keyframe_offsets

GOP = 12
STREAMS = {  # codec, suffix, encoder options: a keyframe every 12 frames, B-frames where the codec has them
    "h264-bframes": ("h264", ".mp4", {"preset": "veryfast", "crf": "18",
                                      "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=3"}),
    "mpeg4-avi": ("mpeg4", ".avi", {"g": str(GOP), "bf": "2", "qscale": "3"}),
    "vp9": ("libvpx-vp9", ".webm", {"g": str(GOP)}),
}


@pytest.fixture(scope="module", params=sorted(STREAMS))
def stream(request, tmp_path_factory):
    codec, suffix, options = STREAMS[request.param]
    path = tmp_path_factory.mktemp("seek") / f"{request.param}{suffix}"
    return str(write_video(path, gradient_frames(77, 64, 48), codec=codec, options=options))


def _assert_same(sought, full):
    assert sought.index == full.index
    np.testing.assert_array_equal(sought.full(), full.full())
    assert sought.start_s == full.start_s
    assert sought.end_s == pytest.approx(full.end_s, abs=1e-9)


@pytest.mark.parametrize("clip_len, stride", [(8, 1), (4, 2)])
def test_sought_clips_are_the_full_decodes(stream, clip_len, stride):
    full = list(iter_clips(stream, clip_len, 32, stride))
    rng = np.random.default_rng(0)
    chosen = [list(range(len(full))), [len(full) - 1], [0, 3], sorted(rng.choice(len(full), 4, replace=False))]
    for indices in chosen:
        stats = DecodeStats()
        with SeekingDecoder(stream, ClipSpec(clip_len, 32, stride), stats=stats) as video:
            assert video.num_clips == len(full)
            sought = list(video.clips(indices))
        assert [c.index for c in sought] == sorted(indices)
        for clip in sought:
            _assert_same(clip, full[clip.index])
        if len(indices) == 1 and indices[0] == len(full) - 1:  # the last clip, padded: a fraction of the frames
            assert stats.frames < 77 / 2


def test_a_skimming_decode_seeks_to_the_same_clips(stream):
    full = list(iter_clips(stream, 8, 32, skim_step=2))
    with SeekingDecoder(stream, ClipSpec(8, 32), skim_step=2) as video:
        sought = list(video.clips([2, 5]))
    for clip in sought:
        np.testing.assert_array_equal(clip.frames, full[clip.index].frames)  # the skim frames
        _assert_same(clip, full[clip.index])  # and the whole clip on demand


def test_what_cannot_be_numbered_is_refused(tmp_path):
    vfr = write_video(tmp_path / "vfr.mp4", level_frames(8, 64, 48), times=[0.0, 0.04, 0.1, 0.3, 0.31, 0.5, 0.9, 1.0])
    with pytest.raises(NoSeek, match="variable frame rate"):
        SeekingDecoder(str(vfr), ClipSpec(3, 16))
    gap = write_video(tmp_path / "gap.mp4", level_frames(20, 64, 48), times=[i / 25 for i in range(21) if i != 7])
    with pytest.raises(NoSeek, match="variable frame rate"):  # one frame missing: its average rate is off
        SeekingDecoder(str(gap), ClipSpec(4, 16))

    avi = write_video(tmp_path / "bframes.avi", level_frames(24, 64, 48), fps=10, codec="mpeg4", options={"bf": "2"})
    with pytest.raises(NoSeek, match=r"the demuxer cannot seek \(\[Errno 1\] Operation not permitted\)"):
        with SeekingDecoder(str(avi), ClipSpec(4, 16)) as decoder:  # FFmpeg's AVI demuxer refuses this file's
            list(decoder.clips([0, 2, 5]))  # seeks: the job then decodes it in full (plans.py, decode_fallback)


def test_a_truncated_file_is_still_caught(tmp_path):
    good = write_video(tmp_path / "long.mkv", gradient_frames(100, 64, 48), codec="mjpeg")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises((VideoDecodeError, NoSeek)):
        with SeekingDecoder(str(cut), ClipSpec(4, 16)) as video:
            list(video.clips([0]))


def test_keyframe_candidates_are_the_clips_just_after_a_keyframe(stream):
    full = list(iter_clips(stream, 8, 32))
    stats = DecodeStats()
    with SeekingDecoder(stream, ClipSpec(8, 32), stats=stats) as video:
        keyframes = video.keyframes
        assert keyframes[:3] == [0, GOP, 2 * GOP]
        # clips start at 0, 8, 16, ...; with keyframes every 12 frames, 0, 8, 4, 0, 8, 4, ... after the last one
        expected = [8 * i - max(f for f in keyframes if f <= 8 * i) for i in range(10)]
        assert video.keyframe_offsets().tolist() == expected and expected[:6] == [0, 8, 4, 0, 8, 4]
        candidates = list(video.candidate_clips(5))
    assert [c.index for c in candidates] == [i for i, offset in enumerate(expected) if offset < 5]
    for clip in candidates:
        _assert_same(clip, full[clip.index])
    assert stats.frames < 77  # clips 1, 4 and 7 are skipped, with the frames before clips 2, 5 and 8


def test_keyframe_offsets_of_a_video_that_cannot_be_sought(tmp_path):
    vfr = write_video(tmp_path / "vfr.mp4", level_frames(8, 64, 48), times=[0.0, 0.04, 0.1, 0.3, 0.31, 0.5, 0.9, 1.0])
    assert keyframe_offsets(str(vfr), ClipSpec(3, 16)) is None


def test_decode_stats_count_frames_and_bytes(tmp_path):
    path = write_video(tmp_path / "v.mp4", gradient_frames(50, 64, 48), codec="h264")
    stats = DecodeStats()
    assert len(list(iter_clips(str(path), 8, 32, stats=stats))) == 7
    assert stats.frames == 50 and stats.bytes_read == path.stat().st_size
