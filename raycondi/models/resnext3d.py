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

from raycondi.models.resnet3d import ResNet3D

__all__ = ["ResNeXt3D", "ResNeXtBottleneck3D", "LAYERS", "resnext3d"]

# Bottlenecks per stage for each depth.
LAYERS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class ResNeXtBottleneck3D(nn.Module):
    """1x1x1 reduce, grouped 3x3x3 (``cardinality`` groups, ``cardinality * planes // 32`` wide),
    1x1x1 expand to ``expansion * planes``, plus the (projected) shortcut."""

    expansion = 2

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 cardinality: int = 32) -> None:
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


class ResNeXt3D(ResNet3D):
    """3D ResNeXt classifier for (B, 3, T, H, W) clips: the 3D ResNet with bottlenecks of ``cardinality``
    groups, planes 128/256/512/1024 (as the reference's ``ResNeXt(ResNet)``).

    Args:
        layers: number of bottlenecks in each of the four stages.
        num_classes: number of output logits.
        cardinality: number of groups of the 3x3x3 convolutions.
    """

    def __init__(self, layers: tuple[int, int, int, int], num_classes: int = 400, cardinality: int = 32) -> None:
        super().__init__(ResNeXtBottleneck3D, layers, (128, 256, 512, 1024), num_classes, cardinality=cardinality)


def resnext3d(num_classes: int, depth: int = 101) -> ResNeXt3D:
    """3D ResNeXt-``depth`` (50, 101 or 152), cardinality 32, shortcut B, from
    `Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet? <https://arxiv.org/abs/1711.09577>`__.

    Depth 101 with 400 classes is the paper's teacher (48.34 M parameters).
    """
    if depth not in LAYERS:
        raise ValueError(f"resnext3d: depth must be one of {sorted(LAYERS)}, got {depth!r}")
    return ResNeXt3D(LAYERS[depth], num_classes=num_classes)

