"""3D ShuffleNetV2 (Köpüklü et al., "Resource Efficient 3D Convolutional Neural Networks", ICCVW 2019).

The 3D extension of Ma et al.'s ShuffleNetV2 from the Efficient-3DCNNs code: a 3x3x3 stem with stride
(1, 2, 2), a 3x3x3 max-pool with stride 2, three stages of channel-split units that downsample time and
space by 2 in their first unit, a 1x1x1 convolution and a dropout + linear classifier. Module names follow
the reference code (``conv1``, ``features``, ``conv_last``, ``classifier``) so its state dicts map one to
one (the reference's ``banch`` typo is spelled ``branch`` here). The global average pool is adaptive, so any
clip of at least 1 frame and 1 pixel works; the project uses clips of >= 4 frames and crops of >= 32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from raycondi.models._init import init_weights

__all__ = ["ShuffleNetV2_3D", "STAGE_CHANNELS", "shufflenetv2_3d"]

# Output channels of the stem, the three stages and the last 1x1x1 convolution, per width multiplier.
STAGE_CHANNELS: dict[float, tuple[int, int, int, int, int]] = {
    0.25: (24, 32, 64, 128, 1024),
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 224, 488, 976, 2048),
}
_STAGE_REPEATS = (4, 8, 4)


def _conv_bn_relu(inp: int, oup: int, kernel_size: int, stride: int | tuple[int, int, int] = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(inp, oup, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm3d(oup),
        nn.ReLU(inplace=True),
    )


def _depthwise_bn(channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(channels, channels, 3, stride, padding=1, groups=channels, bias=False),
        nn.BatchNorm3d(channels),
    )


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` groups: (B, g*c, T, H, W) -> channel order c0g0, c0g1, ..."""
    b, c, t, h, w = x.shape
    return x.view(b, groups, c // groups, t, h, w).transpose(1, 2).reshape(b, c, t, h, w)


class ShuffleUnit3D(nn.Module):
    """ShuffleNetV2 unit: with stride 1, split the channels and transform one half; with stride 2,
    transform the whole input in two branches (each with half the output channels) and concatenate."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        branch_channels = oup // 2
        branch2_in = inp if stride == 2 else branch_channels
        if stride == 2:
            self.branch1 = nn.Sequential(
                _depthwise_bn(inp, stride),
                _conv_bn_relu(inp, branch_channels, 1),
            )
        self.branch2 = nn.Sequential(
            _conv_bn_relu(branch2_in, branch_channels, 1),
            _depthwise_bn(branch_channels, stride),
            _conv_bn_relu(branch_channels, branch_channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2_3D(nn.Module):
    """3D ShuffleNetV2 classifier for (B, 3, T, H, W) clips.

    Args:
        stage_channels: stem, three stage and last-convolution channels (see ``STAGE_CHANNELS``).
        num_classes: number of output logits.
        dropout: dropout probability before the final linear layer.
    """

    def __init__(
        self, stage_channels: tuple[int, int, int, int, int], num_classes: int = 600, dropout: float = 0.2
    ) -> None:
        super().__init__()
        stem, *stages, last = stage_channels
        self.conv1 = _conv_bn_relu(3, stem, 3, stride=(1, 2, 2))
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        units: list[nn.Module] = []
        inp = stem
        for oup, repeats in zip(stages, _STAGE_REPEATS, strict=True):
            for i in range(repeats):
                units.append(ShuffleUnit3D(inp, oup, stride=2 if i == 0 else 1))
                inp = oup
        self.features = nn.Sequential(*units)
        self.conv_last = _conv_bn_relu(inp, last, 1)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv_last(self.features(x))
        x = self.avgpool(x).flatten(1)
        return self.classifier(x)


def shufflenetv2_3d(num_classes: int, width: float = 1.0, dropout: float = 0.2) -> ShuffleNetV2_3D:
    """3D ShuffleNetV2 at width multiplier ``width`` (0.25, 0.5, 1.0, 1.5 or 2.0) from
    `Resource Efficient 3D Convolutional Neural Networks <https://arxiv.org/abs/1904.02422>`__."""
    if width not in STAGE_CHANNELS:
        raise ValueError(f"shufflenetv2_3d: width must be one of {sorted(STAGE_CHANNELS)}, got {width!r}")
    return ShuffleNetV2_3D(STAGE_CHANNELS[width], num_classes=num_classes, dropout=dropout)
