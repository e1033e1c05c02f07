"""1-d convolutional network for sequences such as mnist1d (the mnist1d paper's CNN baseline)."""
from __future__ import annotations

from torch import nn

from distill.registry import networks
from students.taps import Tapped


class ChannelsLast(nn.Module):
    """B x C x L -> B x L x C, so the positions of the last stage read as tokens."""

    def forward(self, x):
        return x.transpose(1, 2)


class CNN1D(nn.Module):
    def __init__(self, num_classes: int, length: int, channels: int, width: int,
                 batch_norm: bool = False):
        super().__init__()
        layers, c = [], channels
        for stride, kernel in ((2, 5), (2, 3), (2, 3)):
            layers.append(nn.Conv1d(c, width, kernel, stride=stride, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            c = width
        self.convs = nn.Sequential(*layers)
        self.stage = ChannelsLast()
        for _ in range(3):
            length = (length + 1) // 2
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width * length, num_classes)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.fc(self.flatten(self.stage(self.convs(x))))


@networks.register("cnn1d")
def cnn1d(num_classes: int, input_shape: tuple, width: int = 64,
          batch_norm: bool = False) -> Tapped:
    """1-d CNN: three strided convolutions (kernel 5, 3, 3; optionally each followed by BatchNorm)
    -> Linear; tokens are the positions."""
    channels, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
    return Tapped(CNN1D(num_classes, length, channels, width, batch_norm),
                  {"features": "fc:input", "tokens": "stage"})
