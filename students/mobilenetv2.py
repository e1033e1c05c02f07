"""MobileNetV2 for CIFAR (Sandler et al. 2018), in the variant of the KD literature (CRD,
RepDistiller's ``mobile_half``: expansion 6, width multiplier 0.5).

Differences from the ImageNet net: the second stage keeps stride 1 (total stride 16, a 2 x 2 map for
32 x 32 inputs), every inverted residual has its 1x1 expansion conv (also for expansion 1), and
channel counts are ``int(c * width_mult)`` without rounding to multiples of 8. Taps: ``features``
is the pooled classifier input (1280-d), ``tokens`` the map of the last 1x1 conv.
"""
from __future__ import annotations

from torch import nn

from distill.errors import ConfigError
from distill.registry import networks
from students.taps import Tapped

# expansion t, channels c, repeats n, stride s of each stage
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(conv_bn(cin, hidden, 1),
                                  conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, cout, 1, relu=False))

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width_mult: float, num_classes: int, in_channels: int):
        super().__init__()
        c = int(32 * width_mult)
        self.stem = conv_bn(in_channels, c, 3, stride=2)
        blocks = []
        for t, width, n, s in STAGES:
            for i in range(n):
                blocks.append(InvertedResidual(c, int(width * width_mult), s if i == 0 else 1, t))
                c = int(width * width_mult)
        self.blocks = nn.Sequential(*blocks)
        last = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv_last = conv_bn(c, last, 1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.pool(self.conv_last(self.blocks(self.stem(x)))))


@networks.register("mobilenetv2")
def mobilenetv2(num_classes: int, input_shape: tuple, width_mult: float = 0.5) -> Tapped:
    """CIFAR MobileNetV2 (Sandler et al. 2018) as in CRD/RepDistiller; features 1280-d."""
    if int(16 * width_mult) < 1:
        raise ConfigError("width_mult", f"mobilenetv2 width_mult must be at least 1/16, "
                                        f"got {width_mult}")
    return Tapped(MobileNetV2(width_mult, num_classes, input_shape[0]),
                  {"features": "classifier:input", "tokens": "conv_last"})
