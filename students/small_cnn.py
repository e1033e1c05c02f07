"""Small 2-d CNN for small images such as the 8x8 scikit-learn digits."""
from __future__ import annotations

from torch import nn

from distill.registry import networks
from students.taps import Tapped


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, channels: int, width: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2))
        self.stage = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stage(self.stem(x))))


@networks.register("small_cnn")
def small_cnn(num_classes: int, input_shape: tuple, width: int = 32) -> Tapped:
    """Small CNN: two 3x3 convolutions, max-pool, one 3x3 stage -> average pool -> Linear."""
    return Tapped(SmallCNN(num_classes, input_shape[0], width),
                  {"features": "fc:input", "tokens": "stage"})
