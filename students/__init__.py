"""The networks. Every network is a student at some point (a teacher is first trained as a student
of the labels). Each returns a :class:`ModelOutput` through taps; importing this package registers
them all."""
from __future__ import annotations

import inspect

from distill.errors import UserError
from distill.registry import networks
from students import (cifar_resnet, cnn1d, cross_encoder, dual_encoder, hf_seq2seq,  # noqa: F401
                      mlp, mobilenetv2, seq2seq, small_cnn, torchvision_nets, vgg, vit,
                      wrn)  # (registration)
from distill.contracts import ModelOutput
from students.taps import Tapped


def build_network(name: str, params: dict, num_classes: int, input_shape: tuple,
                  taps: dict[str, str] | None = None, **data_args) -> Tapped:
    """Build a registered network; ``taps`` adds or replaces its module-path taps. What the data
    declares (``num_classes``, ``input_shape``, and ``data_args`` such as a text vocabulary) is
    passed to the networks whose signature asks for it."""
    target = networks.get(name).target
    given = {"num_classes": num_classes, "input_shape": tuple(input_shape), **data_args}
    wanted = inspect.signature(target).parameters
    missing = [k for k in ("vocab_size", "text_length") if k in wanted and given.get(k) is None]
    if missing:
        raise UserError(f"network {name!r} reads text ({', '.join(missing)}), but the dataset has "
                        f"none; use it with a retrieval or text dataset")
    net = target(**{k: v for k, v in given.items() if k in wanted}, **params)
    if taps:
        net = Tapped(net.untap(), {**net.taps, **taps})
    return net


__all__ = ["ModelOutput", "Tapped", "build_network"]
