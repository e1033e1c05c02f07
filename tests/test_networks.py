"""The registered networks: shapes of every ModelOutput field, parameter counts against the KD
literature (CRD / RepDistiller tables, CIFAR-100), taps, and torchvision models by name."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models

from distill.errors import UserError
from distill.registry import networks
from students import build_network
from students.taps import Tapped, parse_tap

CIFAR = (3, 32, 32)

# name: (features D, tokens N, tokens D, parameters for 100 classes in the literature)
CIFAR_NETS = {
    "resnet20": (64, 64, 64, 0.28e6),
    "resnet56": (64, 64, 64, 0.86e6),
    "resnet8x4": (256, 64, 256, 1.23e6),
    "resnet32x4": (256, 64, 256, 7.43e6),
    "wrn_16_2": (128, 64, 128, 0.70e6),
    "wrn_40_2": (128, 64, 128, 2.26e6),
    "vgg8": (512, 16, 512, 3.96e6),
    "vgg11": (512, 16, 512, 9.28e6),  # counted by hand from configuration A
    "vgg13": (512, 16, 512, 9.46e6),
    "mobilenetv2": (1280, 4, 1280, 0.81e6),
}


def last_linear(net: nn.Module) -> nn.Linear:
    return [m for m in net.modules() if isinstance(m, nn.Linear)][-1]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", CIFAR_NETS)
def test_cifar_network_outputs(name):
    d, n_tokens, d_tokens, _ = CIFAR_NETS[name]
    net = build_network(name, {}, num_classes=100, input_shape=CIFAR)
    out = net(torch.randn(2, *CIFAR))
    assert out.logits.shape == (2, 100)
    assert out.features.shape == (2, d)
    assert out.tokens.shape == (2, n_tokens, d_tokens)
    # features are the classifier's input and the average of the last stage's tokens
    torch.testing.assert_close(last_linear(net)(out.features), out.logits)
    torch.testing.assert_close(out.tokens.mean(1), out.features)


@pytest.mark.parametrize("name", CIFAR_NETS)
def test_cifar_network_parameter_count(name):
    expected = CIFAR_NETS[name][3]
    count = n_params(build_network(name, {}, num_classes=100, input_shape=CIFAR))
    assert abs(count - expected) / expected < 0.02, f"{name}: {count} parameters, expected {expected}"


def test_cifar_networks_take_other_channels_and_sizes():
    for name in ("resnet20", "wrn_16_2", "vgg8", "mobilenetv2"):
        out = build_network(name, {}, num_classes=10, input_shape=(1, 28, 28))(
            torch.randn(2, 1, 28, 28))
        assert out.logits.shape == (2, 10)


def test_vgg_keeps_a_4x4_last_map_for_64x64_inputs():
    out = build_network("vgg8", {}, num_classes=200, input_shape=(3, 64, 64))(
        torch.randn(2, 3, 64, 64))
    assert out.tokens.shape == (2, 16, 512)


def test_generic_wrn():
    assert set(networks.get("wrn").params.model_fields) == {"depth", "widen", "dropout"}
    net = build_network("wrn", {"depth": 22, "widen": 1, "dropout": 0.3}, 10, CIFAR)
    out = net(torch.randn(2, *CIFAR))
    assert out.features.shape == (2, 64) and out.logits.shape == (2, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 1 + 2 * 9 + 2  # stem, 9 blocks
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in net.modules())
    with pytest.raises(UserError, match="6n\\+4"):
        build_network("wrn", {"depth": 17}, 10, CIFAR)


def test_mobilenetv2_width_mult():
    wide = build_network("mobilenetv2", {"width_mult": 1.0}, 100, CIFAR)
    assert n_params(wide) > 2 * n_params(build_network("mobilenetv2", {}, 100, CIFAR))
    assert wide(torch.randn(2, *CIFAR)).features.shape == (2, 1280)


# --- taps: the '[k:]' suffix ------------------------------------------------------------------

def test_parse_tap():
    assert parse_tap("layer3") == ("layer3", "output", 0)
    assert parse_tap("fc:input") == ("fc", "input", 0)
    assert parse_tap("encoder[1:]") == ("encoder", "output", 1)
    assert parse_tap("blocks.2:output[2:]") == ("blocks.2", "output", 2)
    for bad in ("fc:inside", "encoder[1]", "encoder[:1]"):
        with pytest.raises(UserError):
            parse_tap(bad)


def test_a_file_s_taps_replace_the_networks_own_hooks():
    """A network built with the file's taps carries only its new wrapper's hooks: the registered
    wrapper's are removed, not left to run (and keep activations) at every forward pass."""
    net = build_network("mlp", {"hidden": [8]}, 3, (4,), taps={"h": "fc:input"})
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.net.modules())
    assert hooks == 2 and set(net.taps) == {"features", "h"}
    out = net(torch.randn(2, 4))
    torch.testing.assert_close(out.layers["h"], out.features)


def test_token_tap_drops_leading_tokens():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Identity()
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.encoder(x)[:, 0])

    x = torch.randn(2, 5, 4)
    out = Tapped(Tokens(), {"features": "head:input", "tokens": "encoder[1:]"})(x)
    torch.testing.assert_close(out.tokens, x[:, 1:])
    torch.testing.assert_close(out.features, x[:, 0])


# --- torchvision models by name ---------------------------------------------------------------

def tv(arch, num_classes=100, input_shape=CIFAR, **params):
    return build_network("torchvision", {"arch": arch, **params}, num_classes, input_shape)


def test_torchvision_schema():
    assert set(networks.get("torchvision").params.model_fields) == {"arch", "weights", "cifar_stem"}


@pytest.mark.parametrize("arch, head, d, n_tokens, d_tokens", [
    ("resnet18", "fc", 512, 1, 512),
    ("vgg11", "classifier.6", 4096, 1, 512),
    ("mobilenet_v2", "classifier.1", 1280, 1, 1280),
])
def test_torchvision_taps(arch, head, d, n_tokens, d_tokens):
    net = tv(arch)
    out = net(torch.randn(2, *CIFAR))
    assert out.logits.shape == (2, 100)
    assert out.features.shape == (2, d)
    assert out.tokens.shape == (2, n_tokens, d_tokens)
    torch.testing.assert_close(net.net.get_submodule(head)(out.features), out.logits)


def test_torchvision_cifar_stem_keeps_resolution():
    net = tv("resnet18", cifar_stem=True)
    assert net.net.conv1.kernel_size == (3, 3) and net.net.conv1.stride == (1, 1)
    assert isinstance(net.net.maxpool, nn.Identity)
    assert net(torch.randn(2, *CIFAR)).tokens.shape == (2, 16, 512)  # 32 / 8 = 4 x 4 positions
    with pytest.raises(UserError, match="cifar_stem"):
        tv("mobilenet_v2", cifar_stem=True)


def test_torchvision_other_input_channels():
    net = tv("resnet18", num_classes=10, input_shape=(1, 28, 28))
    assert net.net.conv1.in_channels == 1 and net.net.conv1.kernel_size == (7, 7)
    assert net(torch.randn(2, 1, 28, 28)).logits.shape == (2, 10)


def test_torchvision_vit_tokens_drop_the_class_token():
    net = tv("vit_b_16", num_classes=10)  # image_size follows input_shape: 2 x 2 patches
    encoded = {}
    net.net.encoder.register_forward_hook(lambda m, a, o: encoded.setdefault("x", o))
    out = net(torch.randn(2, *CIFAR))
    assert out.tokens.shape == (2, 4, 768) and out.features.shape == (2, 768)
    torch.testing.assert_close(out.tokens, encoded["x"][:, 1:])
    torch.testing.assert_close(out.features, encoded["x"][:, 0])


def test_torchvision_unknown_arch_suggests_a_name():
    with pytest.raises(UserError, match="'resnt18'.*did you mean 'resnet18'"):
        tv("resnt18")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache; any download attempt fails the test."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    yield tmp_path
    torch.hub.set_dir(old)


def test_torchvision_weights_not_cached(hub):
    with pytest.raises(UserError, match="not in the local torch hub cache") as error:
        tv("resnet18", weights="IMAGENET1K_V1")
    assert str(hub / "checkpoints" / "resnet18-f37072fd.pth") in str(error.value)


def test_torchvision_unknown_weights(hub):
    with pytest.raises(UserError, match="no weights 'IMAGENET1K_V3'.*did you mean 'IMAGENET1K_V1'"):
        tv("resnet18", weights="IMAGENET1K_V3")


def test_torchvision_cached_weights_are_loaded(hub):
    pretrained = models.resnet18().state_dict()  # stands in for the ImageNet file
    cached = Path(hub) / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir()
    torch.save(pretrained, cached)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new head for 10 classes is expected, not warned about
        net = tv("resnet18", num_classes=10, weights="IMAGENET1K_V1").net
    torch.testing.assert_close(net.layer4[1].conv2.weight, pretrained["layer4.1.conv2.weight"])
    torch.testing.assert_close(net.conv1.weight, pretrained["conv1.weight"])
    assert net.fc.weight.shape == (10, 512)

    with pytest.warns(UserWarning, match="conv1.weight"):
        stem = tv("resnet18", num_classes=10, weights="IMAGENET1K_V1", cifar_stem=True).net
    torch.testing.assert_close(stem.layer1[0].conv1.weight, pretrained["layer1.0.conv1.weight"])
