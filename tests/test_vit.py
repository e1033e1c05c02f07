"""vit_tiny: the record it returns on CIFAR- and digits-sized images, and its refusals."""
from __future__ import annotations

import pytest
import torch

from distill.errors import UserError
from students import build_network


@pytest.mark.parametrize("input_shape, params, n_tokens", [
    ((3, 32, 32), {"patch_size": 4, "dim": 24, "depth": 2, "heads": 3}, 64),
    ((1, 8, 8), {"patch_size": 2, "dim": 16, "depth": 1, "heads": 2}, 16),
])
def test_vit_gives_logits_class_token_features_and_patch_tokens(input_shape, params, n_tokens):
    torch.manual_seed(0)
    net = build_network("vit_tiny", params, num_classes=10, input_shape=input_shape)
    net.eval()
    out = net(torch.randn(3, *input_shape))
    dim = params["dim"]
    assert out.logits.shape == (3, 10)
    assert out.features.shape == (3, dim) and out.tokens.shape == (3, n_tokens, dim)
    vit = net.net
    torch.testing.assert_close(vit.head(out.features), out.logits)
    # features and tokens are the final norm's output: the class token and the patch tokens
    x = torch.randn(2, *input_shape)
    patches = vit.patch_embed(x).flatten(2).transpose(1, 2)
    seq = torch.cat([vit.cls_token.expand(2, -1, -1), patches], 1) + vit.pos_embed
    normed = vit.norm(vit.blocks(seq))
    out = net(x)
    torch.testing.assert_close(out.features, normed[:, 0])
    torch.testing.assert_close(out.tokens, normed[:, 1:])


def test_vit_defaults_are_vit_tiny():
    net = build_network("vit_tiny", {}, num_classes=100, input_shape=(3, 32, 32))
    assert net(torch.randn(1, 3, 32, 32)).tokens.shape == (1, 64, 192)
    assert len(net.net.blocks) == 12
    assert 5.0e6 < sum(p.numel() for p in net.parameters()) < 5.8e6  # DeiT-Ti: 5.7M at 224 px


@pytest.mark.parametrize("input_shape, params, words", [
    ((40,), {}, "takes images"),
    ((1, 8, 8), {"patch_size": 3}, "do not divide"),
    ((1, 8, 8), {"patch_size": 2, "dim": 10, "heads": 3}, "not divisible by heads"),
])
def test_vit_refuses_what_it_cannot_patch(input_shape, params, words):
    with pytest.raises(UserError, match=words):
        build_network("vit_tiny", params, num_classes=10, input_shape=input_shape)
