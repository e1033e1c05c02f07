"""CIFAR VGG with batch norm (Simonyan & Zisserman 2015), in the variant of the KD literature (CRD,
RepDistiller): five blocks of 3x3 conv-BN-ReLU, max-pooling between blocks until the map is 4 x 4,
global average pooling and a single linear classifier (no 4096-d fully connected layers).

Taps: ``features`` is the pooled classifier input (512-d), ``tokens`` the last block's map (4 x 4
positions for 32 x 32 and 64 x 64 inputs).
"""
from __future__ import annotations

from torch import nn

from distill.registry import networks
from students.taps import Tapped

CONFIGS = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}


def block(cin: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*layers)


class CifarVGG(nn.Module):
    """Max-pools after blocks 0-2, and after block 3 only for inputs wider than 32 (64 x 64), so the
    last block always sees a 4 x 4 map as in RepDistiller."""

    def __init__(self, config, num_classes: int, in_channels: int, size: int):
        super().__init__()
        widths = [in_channels] + [c[-1] for c in config]
        self.blocks = nn.ModuleList(block(widths[i], c) for i, c in enumerate(config))
        self.maxpools = 4 if size > 32 else 3
        self.maxpool = nn.MaxPool2d(2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i < self.maxpools:
                x = self.maxpool(x)
        return self.classifier(self.pool(x))


def cifar_vgg(name: str, num_classes: int, input_shape: tuple) -> Tapped:
    net = CifarVGG(CONFIGS[name], num_classes, input_shape[0], input_shape[-1])
    return Tapped(net, {"features": "classifier:input", "tokens": "blocks.4"})


@networks.register("vgg8")
def vgg8(num_classes: int, input_shape: tuple) -> Tapped:
    """CIFAR VGG-8 with BN (RepDistiller's vgg8_bn): one conv per block, features 512-d."""
    return cifar_vgg("vgg8", num_classes, input_shape)


@networks.register("vgg11")
def vgg11(num_classes: int, input_shape: tuple) -> Tapped:
    """CIFAR VGG-11 with BN (configuration A; RepDistiller's vgg11_bn), features 512-d."""
    return cifar_vgg("vgg11", num_classes, input_shape)


@networks.register("vgg13")
def vgg13(num_classes: int, input_shape: tuple) -> Tapped:
    """CIFAR VGG-13 with BN (Simonyan & Zisserman 2015; RepDistiller's vgg13_bn), features 512-d."""
    return cifar_vgg("vgg13", num_classes, input_shape)
