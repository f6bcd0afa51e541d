"""Decoded clips -> model input: the one function training, evaluation, the teacher-logits pass and
``raycondi label`` call, driven by the checkpoint's own record of its preprocessing.

A frame reaches a model in three steps, each recorded in :class:`~raycondi.models.checkpoint.CheckpointConfig`
(as torchvision's ``Weights.transforms()`` records resize, crop, mean and std):

1. **resize** (``config.resize``): done by the decoder (:func:`raycondi.video.decode.iter_clips` with
   ``size=config.resize``), in ``prepare`` for training and evaluation and in ``label`` for an archive, so the
   two produce the same uint8 pixels;
2. **crop** (``config.crop_size``): the centre ``crop_size`` square at inference; a random one per clip in
   training, flipped left-right with probability 1/2 when asked;
3. **frames and normalisation**: every ``config.frame_step``-th frame of the clip, ``(x / 255 - mean) / std``.

:func:`model_input` does steps 2 and 3 on the device the model runs on, so the pixels travel as uint8.
"""

from __future__ import annotations

import numpy as np
import torch

from raycondi.models.checkpoint import CheckpointConfig

__all__ = ["model_input", "sampled_frames"]


def sampled_frames(config: CheckpointConfig) -> int:
    """How many frames of a ``clip_len`` clip the model sees: ``ceil(clip_len / frame_step)``."""
    return -(-config.clip_len // config.frame_step)


def model_input(
    frames: np.ndarray,
    config: CheckpointConfig,
    *,
    device: torch.device | str = "cpu",
    rng: np.random.Generator | None = None,
    flip: bool = True,
) -> torch.Tensor:
    """uint8 clips ``(B, T, H, W, 3)``, decoded at ``config.resize``, as the float ``(B, 3, T', crop, crop)``
    input of the model ``config`` describes, on ``device``.

    ``T`` is ``config.clip_len`` (whole clips: every ``frame_step``-th frame is kept) or already the
    ``ceil(clip_len / frame_step)`` frames the model sees (a skim decode's frames, used as they are). Without
    ``rng`` every clip gets the centre crop (evaluation and labelling); with it each clip gets its own random
    window and, with ``flip``, a left-right flip with probability 1/2 (training). The output is contiguous
    (NCDHW); a model that :func:`~raycondi.models.checkpoint.for_inference` laid out in ``channels_last_3d``
    converts it in its first convolution, a copy of the small cropped input. Raises ``ValueError`` when the
    frames are smaller than the crop or ``T`` fits neither count.
    """
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 clips (B, T, H, W, 3), got shape {frames.shape}")
    b, t, h, w, _ = frames.shape
    if t == config.clip_len:
        frames = frames[:, :: config.frame_step]
    elif t != sampled_frames(config):
        raise ValueError(f"frames: {t} frames per clip fit neither clip_len={config.clip_len} nor the "
                         f"{sampled_frames(config)} frames a frame_step={config.frame_step} model sees")
    crop = config.crop_size
    if h < crop or w < crop:
        raise ValueError(f"crop_size={crop} is larger than the {h}x{w} frames")
    if rng is None:
        top, left = np.full(b, (h - crop) // 2), np.full(b, (w - crop) // 2)
        flips = np.zeros(b, dtype=bool)
    else:
        top, left = rng.integers(0, h - crop + 1, b), rng.integers(0, w - crop + 1, b)
        flips = (rng.random(b) < 0.5) & flip
    if rng is None and b:  # one window for the whole batch: a view, no copy before the device
        crops = frames[:, :, top[0] : top[0] + crop, left[0] : left[0] + crop]
    else:
        crops = np.stack([frames[i, :, y : y + crop, x : x + crop][:, :, :: -1 if mirrored else 1]
                          for i, (y, x, mirrored) in enumerate(zip(top, left, flips, strict=True))])
    x = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 4, 1, 2, 3).float().div_(255)
    mean = torch.tensor(config.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    return ((x - mean) / std).contiguous()
