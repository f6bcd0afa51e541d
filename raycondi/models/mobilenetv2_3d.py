"""3D MobileNetV2 (Köpüklü et al., "Resource Efficient 3D Convolutional Neural Networks", ICCVW 2019).

The 3D extension of Sandler et al.'s MobileNetV2 from the Efficient-3DCNNs code: a 3x3x3 stem with stride
(1, 2, 2), seventeen inverted-residual blocks (four of which halve time and space), a 1x1x1 convolution to
1280 channels (1280 x width above width 1) and a dropout + linear classifier. As in the reference, channel
counts are ``int(c * width)`` with no rounding to multiples of 8, which is what reproduces the paper's
parameter counts. Module names follow the reference (``features``, ``classifier``). The global average
pool is adaptive, so any clip size works; the project uses clips of >= 4 frames and crops of >= 32.
"""

from __future__ import annotations

from torch import Tensor, nn

from raycondi.models._init import init_weights

__all__ = ["MobileNetV2_3D", "WIDTHS", "mobilenetv2_3d"]

WIDTHS: tuple[float, ...] = (0.2, 0.45, 0.7, 1.0)

# expansion t, output channels c, repeats n, stride of the first block s
_INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn(inp: int, oup: int, kernel_size: int, stride: int | tuple[int, int, int] = 1, groups: int = 1,
             relu6: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv3d(inp, oup, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm3d(oup),
    ]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual3D(nn.Module):
    """Pointwise expansion (skipped when ``expand_ratio`` is 1), depthwise 3x3x3, linear pointwise
    projection; a residual connection when the block keeps the shape."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_residual = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += _conv_bn(inp, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, oup, 1, relu6=False)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2_3D(nn.Module):
    """3D MobileNetV2 classifier for (B, 3, T, H, W) clips.

    Args:
        width: width multiplier applied to every layer's channels.
        num_classes: number of output logits.
        dropout: dropout probability before the final linear layer.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 600, dropout: float = 0.2) -> None:
        super().__init__()
        inp = int(32 * width)
        last = int(1280 * width) if width > 1.0 else 1280
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, inp, 3, stride=(1, 2, 2)))]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            oup = int(c * width)
            for i in range(n):
                layers.append(InvertedResidual3D(inp, oup, s if i == 0 else 1, expand_ratio=t))
                inp = oup
        layers.append(nn.Sequential(*_conv_bn(inp, last, 1)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier(x)


def mobilenetv2_3d(num_classes: int, width: float = 1.0, dropout: float = 0.2) -> MobileNetV2_3D:
    """3D MobileNetV2 at width multiplier ``width`` (0.2, 0.45, 0.7 or 1.0) from
    `Resource Efficient 3D Convolutional Neural Networks <https://arxiv.org/abs/1904.02422>`__."""
    if width not in WIDTHS:
        raise ValueError(f"mobilenetv2_3d: width must be one of {list(WIDTHS)}, got {width!r}")
    return MobileNetV2_3D(width, num_classes=num_classes, dropout=dropout)
