"""raycondi.models.preprocess: decoded uint8 clips -> model input, on small hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from raycondi.models import CheckpointConfig, model_input

UNIT = (1 / 255, 1 / 255, 1 / 255)  # std: x / 255 / (1 / 255) = the raw pixel value


def config(**overrides) -> CheckpointConfig:
    values = dict(architecture="resnet3d", num_classes=3, clip_len=2, crop_size=2, resize=4, mean=(0, 0, 0),
                  std=UNIT)
    return CheckpointConfig(**{**values, **overrides})


def test_centre_crop_and_random_windows():
    frames = np.arange(2 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 2, 4, 4, 3)
    x = model_input(frames, config())
    assert x.shape == (2, 3, 2, 2, 2) and x.is_contiguous()
    expected = frames[:, :, 1:3, 1:3].transpose(0, 4, 1, 2, 3).astype(np.float32)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5)
    windows = [frames[:, :, t:t + 2, l:l + 2][..., ::f, :] for t in range(3) for l in range(3) for f in (1, -1)]
    y = model_input(frames, config(), rng=np.random.default_rng(0)).numpy()
    for i in range(2):
        got = y[i].transpose(1, 2, 3, 0)
        assert any(np.allclose(got, w[i], rtol=1e-5) for w in windows)
    with pytest.raises(ValueError, match="crop_size=5 is larger than the 4x4 frames"):
        model_input(frames, config(crop_size=5, resize=8))


def test_centre_crop_of_a_wide_frame():
    # a 2x6 frame (as a fixed (H, W) resize gives): the centre 2x2 starts at column (6 - 2) // 2 = 2
    frames = np.zeros((1, 2, 2, 6, 3), np.uint8)
    frames[..., 2, :] = 7
    frames[..., 3, :] = 9
    x = model_input(frames, config(resize=(2, 6))).numpy()
    np.testing.assert_allclose(x[0, :, :, :, 0], 7.0, rtol=1e-6)
    np.testing.assert_allclose(x[0, :, :, :, 1], 9.0, rtol=1e-6)


def test_normalises_per_channel():
    frames = np.zeros((2, 2, 3, 3, 3), np.uint8)
    frames[1, 1, 0, 1, 0] = 255
    x = model_input(frames, config(crop_size=3, resize=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5)))
    assert x.shape == (2, 3, 2, 3, 3)
    assert x[1, 0, 1, 0, 1].item() == pytest.approx(1.0)  # (1 - 0.5) / 0.5
    assert x[1, 1, 1, 0, 1].item() == pytest.approx(-2.0)  # (0 - 0.5) / 0.25


def test_frame_step_takes_every_nth_frame_of_whole_clips_and_skim_frames_as_they_are():
    frames = np.stack([np.full((2, 2, 3), t, np.uint8) for t in range(5)])[None]  # one 5-frame clip
    skimmer = config(clip_len=5, frame_step=2, resize=2)
    whole = model_input(frames, skimmer)  # frames 0, 2, 4
    assert whole[0, 0, :, 0, 0].tolist() == [0.0, 2.0, 4.0]
    skim = model_input(frames[:, ::2], skimmer)  # a skim decode's 3 frames are taken as they are
    assert skim[0, 0, :, 0, 0].tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="4 frames per clip fit neither clip_len=5 nor the 3 frames"):
        model_input(frames[:, :4], skimmer)
