"""The networks. Every network is a student at some point (a teacher is first trained as a student
of the labels). Each returns a :class:`ModelOutput` through taps; importing this package registers
them all."""
from __future__ import annotations

from distill.registry import networks
from students import cifar_resnet, cnn1d, mlp, mobilenetv2, small_cnn  # noqa: F401  (registration)
from students import torchvision_nets, vgg, vit, wrn  # noqa: F401  (registration)
from distill.contracts import ModelOutput
from students.taps import Tapped


def build_network(name: str, params: dict, num_classes: int, input_shape: tuple,
                  taps: dict[str, str] | None = None) -> Tapped:
    """Build a registered network; ``taps`` adds or replaces its module-path taps."""
    net = networks.get(name).target(num_classes=num_classes, input_shape=tuple(input_shape),
                                    **params)
    if taps:
        net = Tapped(net.net, {**net.taps, **taps})
    return net


__all__ = ["ModelOutput", "Tapped", "build_network"]
