"""Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016), WRN-depth-k.

Depth 6n+4: a 3x3 stem conv to 16 channels, three stages of n pre-activation wide blocks with
widths 16k/32k/64k (the 2nd and 3rd halve the resolution), a final BN-ReLU, global average pooling
and a linear classifier. Taps: ``features`` is the pooled classifier input (64k-d), ``tokens`` the
map after the final BN-ReLU (8 x 8 positions for 32 x 32 inputs).
"""
from __future__ import annotations

from torch import nn

from distill.errors import ConfigError
from distill.registry import networks
from students.taps import Tapped


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class WideBlock(nn.Module):
    """Pre-activation block BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3; where the shape changes, the
    shortcut is a 1x1 conv of the pre-activated input."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.preact = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.body = nn.Sequential(conv3x3(cin, cout, stride), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), conv3x3(cout, cout))
        self.shortcut = (None if stride == 1 and cin == cout
                         else nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        a = self.preact(x)
        return self.body(a) + (x if self.shortcut is None else self.shortcut(a))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, dropout: float, num_classes: int,
                 in_channels: int):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = conv3x3(in_channels, widths[0])
        self.block1 = self._stage(widths[0], widths[1], n, 1, dropout)
        self.block2 = self._stage(widths[1], widths[2], n, 2, dropout)
        self.block3 = self._stage(widths[2], widths[3], n, 2, dropout)
        self.bn_relu = nn.Sequential(nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(cin: int, cout: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        return nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                         dropout) for i in range(n)])

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return self.fc(self.pool(self.bn_relu(x)))


@networks.register("wrn")
def wrn(num_classes: int, input_shape: tuple, depth: int = 16, widen: int = 2,
        dropout: float = 0.0) -> Tapped:
    """Wide ResNet WRN-depth-widen (Zagoruyko & Komodakis 2016); depth 6n+4, features 64*widen-d."""
    if depth < 10 or (depth - 4) % 6:
        raise ConfigError("depth", f"wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), "
                                   f"got {depth}")
    if widen < 1:
        raise ConfigError("widen", f"wrn widen must be a positive integer, got {widen}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("dropout", f"wrn dropout must be in [0, 1), got {dropout}")
    return Tapped(WideResNet(depth, widen, dropout, num_classes, input_shape[0]),
                  {"features": "fc:input", "tokens": "bn_relu"})


@networks.register("wrn_16_2")
def wrn_16_2(num_classes: int, input_shape: tuple) -> Tapped:
    """Wide ResNet WRN-16-2 (Zagoruyko & Komodakis 2016), features 128-d."""
    return wrn(num_classes, input_shape, depth=16, widen=2)


@networks.register("wrn_40_2")
def wrn_40_2(num_classes: int, input_shape: tuple) -> Tapped:
    """Wide ResNet WRN-40-2 (Zagoruyko & Komodakis 2016), features 128-d."""
    return wrn(num_classes, input_shape, depth=40, widen=2)
