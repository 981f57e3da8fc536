"""Parameter and multiply-accumulate counts.

MACs count the convolutions and the fully connected layer, the convention of the paper's FLOPs
row ("multiply-adds") and of torchvision's GFLOPS column; BatchNorm, ReLU, pooling and the
residual additions are a rounding error next to them and are left out, as both do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: tuple[int, int] = (224, 224)) -> int:
    """Multiply-accumulates of one forward pass on a single ``3 x H x W`` image."""
    total = 0

    def conv_hook(m: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv2d)
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        # On the meta device (see ``zoo_stats``) this runs shapes only: no memory, no arithmetic.
        with torch.no_grad():
            model(torch.empty(1, 3, *image_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
