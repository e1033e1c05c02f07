"""CIFAR ResNets (He et al. 2016, sec. 4.2) as used across the KD literature (CRD, RepDistiller).

Depth 6n+2: a 3x3 stem conv, three stages of n BasicBlocks (the 2nd and 3rd halve the resolution),
global average pooling and a linear classifier. ``resnet20``/``resnet56`` have widths 16/16/32/64;
the "x4" nets (``resnet8x4``, ``resnet32x4``) have 32/64/128/256. Taps: ``features`` is the pooled
classifier input (the last width), ``tokens`` the last stage's map (8 x 8 positions for 32 x 32).
"""
from __future__ import annotations

from torch import nn

from distill.registry import networks
from students.taps import Tapped


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (identity, or 1x1 conv-BN where the shape changes),
    then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, 3, stride)
        self.conv2 = conv_bn(cout, cout, 3)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else conv_bn(cin, cout, 1, stride))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int,
                 in_channels: int):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(conv_bn(in_channels, widths[0], 3), nn.ReLU(inplace=True))
        self.layer1 = self._stage(widths[0], widths[1], n, stride=1)
        self.layer2 = self._stage(widths[1], widths[2], n, stride=2)
        self.layer3 = self._stage(widths[2], widths[3], n, stride=2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
        return nn.Sequential(*[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                               for i in range(n)])

    def forward(self, x):
        return self.fc(self.pool(self.layer3(self.layer2(self.layer1(self.stem(x))))))


def cifar_resnet(depth: int, widths: tuple[int, int, int, int], num_classes: int,
                 input_shape: tuple) -> Tapped:
    return Tapped(CifarResNet(depth, widths, num_classes, input_shape[0]),
                  {"features": "fc:input", "tokens": "layer3"})


@networks.register("resnet20")
def resnet20(num_classes: int, input_shape: tuple) -> Tapped:
    """CIFAR ResNet-20 (He et al. 2016): widths 16/16/32/64, features 64-d."""
    return cifar_resnet(20, (16, 16, 32, 64), num_classes, input_shape)


@networks.register("resnet56")
def resnet56(num_classes: int, input_shape: tuple) -> Tapped:
    """CIFAR ResNet-56 (He et al. 2016): widths 16/16/32/64, features 64-d."""
    return cifar_resnet(56, (16, 16, 32, 64), num_classes, input_shape)


@networks.register("resnet8x4")
def resnet8x4(num_classes: int, input_shape: tuple) -> Tapped:
    """CIFAR ResNet-8 with 4x widths 32/64/128/256 (CRD, Tian et al. 2020), features 256-d."""
    return cifar_resnet(8, (32, 64, 128, 256), num_classes, input_shape)


@networks.register("resnet32x4")
def resnet32x4(num_classes: int, input_shape: tuple) -> Tapped:
    """CIFAR ResNet-32 with 4x widths 32/64/128/256 (CRD, Tian et al. 2020), features 256-d."""
    return cifar_resnet(32, (32, 64, 128, 256), num_classes, input_shape)
