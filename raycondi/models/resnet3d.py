"""3D ResNet (Hara et al., "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?",
CVPR 2018; the 3D-ResNets-PyTorch ``resnet.py``), with its width multiplier.

Basic blocks of two 3x3x3 convolutions, shortcut type B (a 1x1x1 convolution + batch norm projection
wherever the shape changes, identity elsewhere), a ``conv1_t_size`` x 7 x 7 stem (7x7x7 by default) with
stride (1, 2, 2), an optional 3x3x3 max-pool with stride 2, and four stages ``64 * width``, ``128 * width``,
``256 * width`` and ``512 * width`` wide, stages 2-4 halving time and space. Module names follow the
reference (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``).

Why it is here besides the paper's networks: on a CPU, dense 3x3x3 convolutions run about three times faster
per FLOP than the depthwise ones of ShuffleNet and MobileNet, and on small clips a narrow 3D ResNet learns
the motion classes of the synthetic benchmark in a few epochs where those barely start. The ``small``
preset's teacher and student are 3D ResNet-10s with a 1x7x7 stem (``conv1_t_size=1``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from raycondi.models._init import init_weights

__all__ = ["BasicBlock3D", "LAYERS", "ResNet3D", "resnet3d"]

# Basic blocks per stage for each depth.
LAYERS: dict[int, tuple[int, int, int, int]] = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock3D(nn.Module):
    """Two 3x3x3 convolutions with batch norm, plus the (projected) shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet3D(nn.Module):
    """3D ResNet classifier for (B, 3, T, H, W) clips: a stem, four stages of ``block``, pooling, ``fc``.

    Args:
        block: the residual block, a module class with an ``expansion`` (output width / ``planes``) built as
            ``block(inplanes, planes, stride, downsample, **block_kwargs)``.
        layers: number of blocks in each of the four stages.
        planes: each stage's ``planes``; stages 2-4 halve time and space.
        num_classes: number of output logits.
        stem: output channels of the stem.
        max_pool: the 3x3x3 max-pool after the stem (the reference's ``not no_max_pool``).
        conv1_t_size: the stem's temporal kernel size (the reference's name; the stem is
            ``conv1_t_size x 7 x 7``).
        block_kwargs: passed to every block (ResNeXt's ``cardinality``).
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        planes: Sequence[int],
        num_classes: int = 400,
        *,
        stem: int = 64,
        max_pool: bool = True,
        conv1_t_size: int = 7,
        **block_kwargs,
    ) -> None:
        super().__init__()
        self.inplanes = stem
        self.conv1 = nn.Conv3d(
            3, stem, kernel_size=(conv1_t_size, 7, 7), stride=(1, 2, 2), padding=(conv1_t_size // 2, 3, 3), bias=False
        )
        self.bn1 = nn.BatchNorm3d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1) if max_pool else nn.Identity()
        self.layer1 = self._make_layer(block, planes[0], layers[0], 1, block_kwargs)
        self.layer2 = self._make_layer(block, planes[1], layers[1], 2, block_kwargs)
        self.layer3 = self._make_layer(block, planes[2], layers[2], 2, block_kwargs)
        self.layer4 = self._make_layer(block, planes[3], layers[3], 2, block_kwargs)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)

        init_weights(self)

    def _make_layer(
        self, block: type[nn.Module], planes: int, blocks: int, stride: int, block_kwargs: dict
    ) -> nn.Sequential:
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != outplanes:  # shortcut type B
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, outplanes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(outplanes),
            )
        layers = [block(self.inplanes, planes, stride, downsample, **block_kwargs)]
        self.inplanes = outplanes
        layers += [block(outplanes, planes, **block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def resnet3d(
    num_classes: int, depth: int = 18, width: float = 1.0, max_pool: bool = True, conv1_t_size: int = 7
) -> ResNet3D:
    """3D ResNet-``depth`` (10, 18 or 34), shortcut B, stages ``width`` times 64/128/256/512 wide, from
    `Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet? <https://arxiv.org/abs/1711.09577>`__.

    Depth 18 at width 1.0 with 400 classes has 33.41 M parameters: the 33.2 M of Hara et al.'s Table 2
    (shortcut A, parameter-free) plus the 0.17 M of the three type-B projections.
    """
    if depth not in LAYERS:
        raise ValueError(f"resnet3d: depth must be one of {sorted(LAYERS)}, got {depth!r}")
    if not width > 0:
        raise ValueError(f"resnet3d: width must be > 0, got {width!r}")
    if conv1_t_size < 1 or conv1_t_size % 2 == 0:
        raise ValueError(f"resnet3d: conv1_t_size must be an odd number >= 1, got {conv1_t_size!r}")
    planes = [max(1, round(p * width)) for p in (64, 128, 256, 512)]
    return ResNet3D(
        BasicBlock3D, LAYERS[depth], planes, num_classes, stem=planes[0], max_pool=max_pool, conv1_t_size=conv1_t_size
    )
