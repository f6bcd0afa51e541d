"""Weight initialisation shared by the project's own 3D CNNs."""

from torch import nn


def init_weights(model: nn.Module) -> None:
    """He (fan-out) init for 3D convolutions, unit/zero batch norm, N(0, 0.01) linear layers with zero bias.

    The scheme of the reference implementations (Hara et al.'s 3D-ResNets, Köpüklü et al.'s Efficient-3DCNNs).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
