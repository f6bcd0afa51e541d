"""torchvision's video classifiers as teachers, built by name without downloading weights.

Each builder returns the torchvision model with ``weights=None`` and a fresh classifier of ``num_classes``
outputs. The shapes each one accepts differ (``raycondi.models.registry`` states and checks them):

- ``r3d_18``, ``mc3_18``, ``r2plus1d_18`` (Tran et al., CVPR 2018): adaptive pooling, any clip size.
- ``s3d`` (Xie et al., ECCV 2018): ends in a fixed (2, 7, 7) average pool after 8x temporal and 32x spatial
  downsampling, so clips need >= 14 frames and crops >= 224 (torchvision's ``min_temporal_size``/``min_size``).
- ``mvit_v1_b`` (Fan et al., ICCV 2021): learned positional embeddings for exactly 16 x 224 x 224 clips.
- ``swin3d_t`` (Liu et al., CVPR 2022): pads to its (8, 7, 7) windows, so any clip size works.
"""

from __future__ import annotations

from types import ModuleType

from torch import nn

__all__ = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "swin3d_t"]


def _video() -> ModuleType:
    """``torchvision.models.video``, imported when a model is built, not when raycondi is: importing
    torchvision costs every process about 160 MB, and most of a labelling job's processes (decode and the
    student) never build one of these models."""
    from torchvision.models import video

    return video


def r3d_18(num_classes: int) -> nn.Module:
    """torchvision ``r3d_18`` (18-layer 3D ResNet), untrained."""
    return _video().r3d_18(weights=None, num_classes=num_classes)


def mc3_18(num_classes: int) -> nn.Module:
    """torchvision ``mc3_18`` (mixed 3D/2D convolution ResNet-18), untrained."""
    return _video().mc3_18(weights=None, num_classes=num_classes)


def r2plus1d_18(num_classes: int) -> nn.Module:
    """torchvision ``r2plus1d_18`` ((2+1)D ResNet-18), untrained."""
    return _video().r2plus1d_18(weights=None, num_classes=num_classes)


def s3d(num_classes: int) -> nn.Module:
    """torchvision ``s3d`` (separable 3D Inception), untrained; needs >= 14 frames and >= 224 pixels."""
    return _video().s3d(weights=None, num_classes=num_classes)


def mvit_v1_b(num_classes: int) -> nn.Module:
    """torchvision ``mvit_v1_b`` (multiscale vision transformer), untrained; needs 16 x 224 x 224 clips."""
    return _video().mvit_v1_b(weights=None, num_classes=num_classes)


def swin3d_t(num_classes: int) -> nn.Module:
    """torchvision ``swin3d_t`` (video Swin transformer, tiny), untrained."""
    return _video().swin3d_t(weights=None, num_classes=num_classes)
