"""BatchNorm folding: same function, no BatchNorm left, original untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_deploy import create_model, list_models
from resnet_deploy.fold import fold_batchnorm


def randomize_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm trained-looking statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return net


@pytest.mark.parametrize("name", list_models())
def test_fold_preserves_outputs(name: str) -> None:
    net = randomize_bn(create_model(name, weights="random"))
    size = 32 if net.cfg is not None and net.cfg.dataset == "cifar10" else 64
    x = torch.randn(2, 3, size, size)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) > 0  # original untouched
    with torch.no_grad():
        ref, out = net(x), folded(x)
    scale = ref.abs().max()
    assert float((ref - out).abs().max() / scale) < 1e-5


@pytest.mark.parametrize("shortcut", ["A", "C"])
def test_fold_covers_every_shortcut_option(shortcut: str) -> None:
    net = randomize_bn(create_model("resnet50", weights="random", shortcut=shortcut, variant="v1"))
    folded = fold_batchnorm(net)
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert sum(isinstance(m, nn.Conv2d) and m.bias is not None for m in folded.modules()) == convs
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), folded(x), rtol=1e-4, atol=1e-4 * float(net(x).abs().max()))
