"""Multi-layer perceptron on flattened inputs (the mnist1d paper's MLP baseline)."""
from __future__ import annotations

import math

from torch import nn

from distill.registry import networks
from students.taps import Tapped


@networks.register("mlp")
def mlp(num_classes: int, input_shape: tuple, hidden: list[int] = [100, 100],
        dropout: float = 0.0) -> Tapped:
    """MLP: flatten -> [Linear -> ReLU -> Dropout] per hidden width -> Linear classifier."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    body = nn.Sequential(*layers)
    net = nn.Sequential()
    net.add_module("body", body)
    net.add_module("fc", nn.Linear(width, num_classes))
    return Tapped(net, {"features": "fc:input"})
