"""3D ResNeXt (Hara et al., "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?",
CVPR 2018; the 3D-ResNets-PyTorch ``resnext.py``).

Cardinality 32, shortcut type B (a 1x1x1 convolution + batch norm projection wherever the shape changes,
identity elsewhere), a 64-channel 7x7x7 stem with stride (1, 2, 2) and a 3x3x3 max-pool with stride 2,
four stages of bottlenecks with planes 128/256/512/1024 whose grouped 3x3x3 convolution is ``planes`` wide
and whose output is ``2 * planes`` wide. Stages 2-4 halve time and space. Module names follow the
reference (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``). The global average pool is adaptive, so any
clip size works; the project uses clips of >= 4 frames and crops of >= 32.
"""

from __future__ import annotations

from torch import Tensor, nn

from raycondi.models._init import init_weights

__all__ = ["ResNeXt3D", "ResNeXtBottleneck3D", "LAYERS", "resnext3d"]

# Bottlenecks per stage for each depth.
LAYERS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class ResNeXtBottleneck3D(nn.Module):
    """1x1x1 reduce, grouped 3x3x3 (``cardinality`` groups, ``cardinality * planes // 32`` wide),
    1x1x1 expand to ``expansion * planes``, plus the (projected) shortcut."""

    expansion = 2

    def __init__(self, inplanes: int, planes: int, cardinality: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        mid = cardinality * (planes // 32)
        self.conv1 = nn.Conv3d(inplanes, mid, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXt3D(nn.Module):
    """3D ResNeXt classifier for (B, 3, T, H, W) clips.

    Args:
        layers: number of bottlenecks in each of the four stages.
        num_classes: number of output logits.
        cardinality: number of groups of the 3x3x3 convolutions.
    """

    def __init__(self, layers: tuple[int, int, int, int], num_classes: int = 400, cardinality: int = 32) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(128, layers[0], cardinality, stride=1)
        self.layer2 = self._make_layer(256, layers[1], cardinality, stride=2)
        self.layer3 = self._make_layer(512, layers[2], cardinality, stride=2)
        self.layer4 = self._make_layer(1024, layers[3], cardinality, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(1024 * ResNeXtBottleneck3D.expansion, num_classes)

        init_weights(self)

    def _make_layer(self, planes: int, blocks: int, cardinality: int, stride: int) -> nn.Sequential:
        outplanes = planes * ResNeXtBottleneck3D.expansion
        downsample = None
        if stride != 1 or self.inplanes != outplanes:  # shortcut type B
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, outplanes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(outplanes),
            )
        layers = [ResNeXtBottleneck3D(self.inplanes, planes, cardinality, stride, downsample)]
        self.inplanes = outplanes
        layers += [ResNeXtBottleneck3D(outplanes, planes, cardinality) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


def resnext3d(num_classes: int, depth: int = 101) -> ResNeXt3D:
    """3D ResNeXt-``depth`` (50, 101 or 152), cardinality 32, shortcut B, from
    `Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet? <https://arxiv.org/abs/1711.09577>`__.

    Depth 101 with 400 classes is the paper's teacher (48.34 M parameters).
    """
    if depth not in LAYERS:
        raise ValueError(f"resnext3d: depth must be one of {sorted(LAYERS)}, got {depth!r}")
    return ResNeXt3D(LAYERS[depth], num_classes=num_classes)

