"""NVDEC decodes (PyNvVideoCodec) against PyAV's: the same clips, pixels within the documented tolerance. Runs
where PyNvVideoCodec and a CUDA GPU exist (``benchmarks/gpu_suite.sh`` carries the wheel); skipped, with the
reason, elsewhere."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from raycondi.video import nvdec
from raycondi.video.decode import ClipSpec, DecodeLimits, ResizeRGB, iter_clips
from tests.videos import gradient_frames, quadrant_frames, write_video

WHY = nvdec.unavailable()


@pytest.mark.skipif(WHY is not None, reason=f"NVDEC unavailable here: {WHY}")
@pytest.mark.parametrize("size", [32, (24, 40)])
def test_nvdec_clips_match_pyav_within_the_tolerance(tmp_path, size):
    options = {"preset": "veryfast", "x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=2"}
    frames = [*gradient_frames(30, 96, 64), *quadrant_frames(30, 96, 64)]
    video = str(write_video(tmp_path / "v.mp4", frames, options=options))
    spec = ClipSpec(8, size)
    reference, got = list(iter_clips(video, 8, size)), nvdec.iter_clips(video, spec)
    assert [c.index for c in got] == [c.index for c in reference]
    np.testing.assert_allclose([c.start_s for c in got], [c.start_s for c in reference], atol=1e-9)
    np.testing.assert_allclose([c.end_s for c in got], [c.end_s for c in reference], atol=1e-9)
    difference = np.abs(np.stack([c.frames for c in got]).astype(int) - np.stack([c.frames for c in reference]))
    tolerance = nvdec.TOLERANCE
    assert difference.mean() <= tolerance.mean_abs
    assert (difference > tolerance.large).mean() <= tolerance.large_share


def test_presentation_times_from_the_packets_are_the_decoded_frames_times(tmp_path):
    """What NVDEC's clips are cut by, checked where PyAV decodes: B-frames reorder, the packets' order is not
    the frames'."""
    options = {"preset": "veryfast", "x264-params": "keyint=10:min-keyint=10:scenecut=0:bframes=3"}
    video = str(write_video(tmp_path / "b.mp4", list(gradient_frames(37, 64, 48)), fps=25, options=options))
    times = nvdec._presentation_times(video, DecodeLimits(), None, None)
    frames = [(c.start_s, c.end_s) for c in iter_clips(video, 1, 16)]  # one-frame clips: each frame's span
    assert len(times) == 37
    np.testing.assert_allclose(times, frames, atol=1e-9)


@pytest.mark.parametrize("size", [16, (20, 30)])
def test_gpu_resize_is_the_cpu_resize_within_the_tolerance(size):
    """The resize NVDEC's frames take (run here on CPU tensors) against PyAV's on the same RGB pictures."""
    rgb = np.stack([np.asarray(f) for f in quadrant_frames(4, 96, 64)])
    to_rgb = ResizeRGB(size, None)
    expected = np.stack([to_rgb(av.VideoFrame.from_ndarray(f, format="rgb24")) for f in rgb])
    got = nvdec.resize_rgb(torch.from_numpy(rgb), size).numpy()
    assert got.shape == expected.shape
    difference = np.abs(got.astype(int) - expected)
    assert difference.mean() <= nvdec.TOLERANCE.mean_abs
    assert (difference > nvdec.TOLERANCE.large).mean() <= nvdec.TOLERANCE.large_share


def test_without_nvdec_the_reason_is_given(tmp_path):
    if WHY is None:
        pytest.skip("NVDEC is available here")
    video = str(write_video(tmp_path / "v.mp4", gradient_frames(8, 64, 48)))
    assert "PyNvVideoCodec" in WHY or "CUDA" in WHY
    with pytest.raises(nvdec.NoNvdec, match=WHY.split(" (")[0]):
        nvdec.iter_clips(video, ClipSpec(4, 32))
