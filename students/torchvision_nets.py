"""Any torchvision classification model by name, with taps found per model family.

``features`` is the input of the last ``nn.Linear`` in module order (the classifier's input: ``fc``
for ResNets, ``classifier.6`` for VGG, ``heads.head`` for ViT; SqueezeNet has none). ``tokens`` is
the last stage: ``layer4`` (ResNet/ResNeXt/Wide ResNet), ``trunk_output`` (RegNet), the encoder
output without the class token (ViT), ``features`` (VGG, AlexNet, MobileNet, EfficientNet,
ConvNeXt, DenseNet, SqueezeNet), and the module named in ``TOKENS`` for the other families.

Inputs with other than 3 channels get a freshly initialised first convolution, otherwise like the
original. ViTs are built for the input's size (``image_size``). ``cifar_stem`` (ResNet family)
replaces the 7x7 stride-2 stem conv and max-pool by one 3x3 stride-1 conv for 32 x 32 inputs.
Pretrained weights are read only from the local torch hub cache and keep every tensor whose shape
still matches (a classifier for another class count, a replaced first conv and a CIFAR stem are
initialised anew; all but the classifier with a warning). torchvision is imported when such a
network is built (2 s), not when the registry is read.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from distill.errors import ConfigError
from distill.registry import nearest, networks
from students.taps import Tapped

TOKENS = {"resnet": "layer4", "resnext": "layer4", "wide_resnet": "layer4",
          "regnet": "trunk_output", "vit": "encoder[1:]", "swin": "permute",
          "maxvit": "blocks.3", "shufflenet": "conv5", "mnasnet": "layers",
          "googlenet": "inception5b", "inception": "Mixed_7c"}


def tokens_tap(arch: str, net: nn.Module) -> str | None:
    family = next((f for f in TOKENS if arch.startswith(f)), None)
    if family:
        return TOKENS[family]
    return "features" if "features" in dict(net.named_children()) else None


def last_linear(net: nn.Module) -> str | None:
    return next((p for p, m in reversed(list(net.named_modules())) if isinstance(m, nn.Linear)),
                None)


def constructor_kwargs(arch: str, num_classes: int, input_shape: tuple) -> dict:
    kwargs: dict = {"num_classes": num_classes}
    if arch.startswith("vit_"):
        kwargs["image_size"] = input_shape[-1]
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    return kwargs


def replace_first_conv(net: nn.Module, in_channels: int) -> None:
    """A new first Conv2d like the old one but reading ``in_channels`` channels."""
    path, old = next((p, m) for p, m in net.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    old.dilation, old.groups, old.bias is not None, old.padding_mode)
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent), name, new)


def load_cached_weights(net: nn.Module, arch: str, name: str, head: str | None) -> None:
    """Load torchvision weights ``name`` from the local torch hub cache, never from the network."""
    from torchvision import models

    enum = models.get_model_weights(arch)
    try:
        weights = enum.verify(name)
    except KeyError:
        options = [w.name for w in enum] + ["DEFAULT"]
        raise ConfigError("weights", f"torchvision {arch} has no weights {name!r}"
                                     f"{nearest(name, options)}; options: {', '.join(options)}") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not cached.is_file():
        raise ConfigError("weights", f"torchvision weights {arch} {weights.name} are not in the "
                                     f"local torch hub cache: {cached} does not exist, and they are "
                                     f"not downloaded here; put the file from {weights.url} there "
                                     f"(or point TORCH_HOME at a cache that has it)")
    state = weights.get_state_dict(progress=False)
    own = net.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(keep, strict=False)
    fresh = [k for k in own if k not in keep and not (head and k.startswith(head + "."))]
    if fresh:
        warnings.warn(f"torchvision {arch} {weights.name}: initialised anew (not in the weights or "
                      f"of another shape): {', '.join(fresh)}")


@networks.register("torchvision")
def torchvision_net(num_classes: int, input_shape: tuple, arch: str, weights: str | None = None,
                    cifar_stem: bool = False) -> Tapped:
    """A torchvision classification model by name (``arch``), optionally with cached weights."""
    from torchvision import models

    names = models.list_models(module=models)
    if arch not in names:
        raise ConfigError("arch", f"unknown torchvision model {arch!r}{nearest(arch, names)}; "
                                  f"torchvision.models.list_models() shows them")
    net = models.get_model(arch, weights=None, **constructor_kwargs(arch, num_classes, input_shape))
    if cifar_stem:
        if not isinstance(net, models.ResNet):
            raise ConfigError("cifar_stem", f"cifar_stem applies to ResNet-family models "
                                            f"(resnet*, resnext*, wide_resnet*), not {arch!r}")
        net.conv1 = nn.Conv2d(input_shape[0], net.conv1.out_channels, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif input_shape[0] != 3:
        replace_first_conv(net, input_shape[0])
    head = last_linear(net)
    if weights is not None:
        load_cached_weights(net, arch, weights, head)
    taps = {"features": f"{head}:input"} if head else {}
    tokens = tokens_tap(arch, net)
    if tokens:
        taps["tokens"] = tokens
    return Tapped(net, taps)
