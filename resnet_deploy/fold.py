"""Fold inference-mode BatchNorm into the convolution before it, at module level.

Done in PyTorch rather than left to the exporter, so the ONNX is the same whichever torch
exporter runs (TorchScript or dynamo) and whichever constant folding it applies: a graph with no
``BatchNormalization`` node. The folded convolution computes, per output channel c,
``(W_c * x + b_c - mean_c) * gamma_c / sqrt(var_c + eps) + beta_c``.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .errors import ExportError


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def _fuse(conv: nn.Module, bn: nn.Module) -> nn.Conv2d:
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise ExportError(f"cannot fold {type(bn).__name__} into {type(conv).__name__}")
    return fuse_conv_bn_eval(conv, bn)


def _fold_children(module: nn.Module) -> int:
    """Fold conv/bn pairs among ``module``'s direct children; returns how many were folded."""
    folded = 0
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential):
        names = list(children)
        for a, b in itertools.pairwise(names):
            if _foldable(children[a], children[b]):
                setattr(module, a, _fuse(children[a], children[b]))
                setattr(module, b, nn.Identity())
                folded += 1
    else:
        # torchvision naming inside blocks and the stem: convN is followed by bnN in forward().
        for name, child in children.items():
            if not name.startswith("bn"):
                continue
            conv_name = "conv" + name.removeprefix("bn")
            conv = children.get(conv_name)
            if conv is not None and _foldable(conv, child):
                setattr(module, conv_name, _fuse(conv, child))
                setattr(module, name, nn.Identity())
                folded += 1
    for child in module.children():
        folded += _fold_children(child)
    return folded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm folded into its convolution.

    Raises ``ExportError`` if a BatchNorm is left that has no convolution to fold into.
    """
    folded_model = copy.deepcopy(model).eval()
    with torch.no_grad():
        _fold_children(folded_model)
    left = [n for n, m in folded_model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ExportError(f"could not fold {len(left)} BatchNorm layer(s) into a convolution: {', '.join(left[:3])}")
    return folded_model
