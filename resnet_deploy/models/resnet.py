"""The ResNets of He et al., "Deep Residual Learning for Image Recognition" (2015).

Laid out like torchvision's ``models/resnet.py`` so that the state_dict names and shapes are
identical to torchvision's (a torchvision checkpoint loads with ``strict=True``): small conv
helpers, ``BasicBlock`` and ``Bottleneck`` with an ``expansion`` attribute, one ``ResNet`` class
and builders that hold the layer counts (the paper's Table 1 and section 4.2).

Two knobs come from the paper and its follow-ups:

* ``variant``: where a bottleneck block downsamples. The paper ("v1") puts stride 2 on the first
  1x1 convolution, which throws away 3/4 of the activations before any 3x3 looks at them.
  torchvision ("v1.5", the default here) moves the stride to the 3x3, which costs ~5% more MACs
  and gains ~0.5% top-1. Basic blocks have no 1x1, so both variants are the same network.
* ``shortcut``: the paper's options for shortcuts that change dimensions. "A": identity with
  zero-padding for the extra channels and subsampling for the stride (parameter-free; the CIFAR
  networks use it). "B": a 1x1 projection only where dimensions change (torchvision's choice).
  "C": a projection on every block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..choices import Shortcut as ShortcutChoice
from ..choices import Variant as VariantChoice

if TYPE_CHECKING:
    from .cfg import ModelCfg
    from .weights import WeightsInfo

Variant = Literal["v1", "v1.5"]
Shortcut = Literal["A", "B", "C"]
Stem = Literal["imagenet", "cifar"]


VARIANTS: tuple[str, ...] = tuple(v.value for v in VariantChoice)
SHORTCUTS: tuple[str, ...] = tuple(s.value for s in ShortcutChoice)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1: keeps the spatial size at stride 1."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no padding (padding here would grow the feature map)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option A: parameter-free shortcut that subsamples by ``stride`` and zero-pads new channels.

    The subsampling picks the same pixels a 1x1 convolution with that stride would read, so the
    shortcut lines up with the residual branch for even and odd feature-map sizes alike.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"option A cannot reduce channels ({in_planes} -> {out_planes})")
        self.stride = stride
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            # F.pad pads from the last dimension backwards: (W, W, H, H, C_before, C_after).
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


def _shortcut(
    in_planes: int, out_planes: int, stride: int, shortcut: Shortcut, norm_layer: Callable[[int], nn.Module]
) -> nn.Module | None:
    changes = stride != 1 or in_planes != out_planes
    if shortcut == "A":
        return PadShortcut(in_planes, out_planes, stride) if changes else None
    if shortcut == "B" and not changes:
        return None
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), norm_layer(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR ResNets); downsamples in the first."""

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        variant: Variant = "v1.5",
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        norm = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return cast(Tensor, self.relu(out))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4): ResNet-50/101/152.

    ``variant="v1.5"`` strides the 3x3 (torchvision); ``"v1"`` strides the first 1x1 (the paper).
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        variant: Variant = "v1.5",
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        norm = norm_layer or nn.BatchNorm2d
        stride_1x1, stride_3x3 = (stride, 1) if variant == "v1" else (1, stride)
        self.conv1 = conv1x1(inplanes, planes, stride_1x1)
        self.bn1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = norm(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return cast(Tensor, self.relu(out))


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A ResNet: stem, one stage per entry of ``layers``, global average pool, fully connected.

    ``stem="imagenet"``: 7x7/2 convolution and 3x3/2 max pool, stages of 64/128/256/512 filters
    (Table 1). ``stem="cifar"``: one 3x3 convolution, no pool, stages of 16/32/64 (section 4.2).
    Every stage after the first halves the feature map in its first block.
    """

    # Provenance, set by ``create_model``: the model's config and what weights went in.
    cfg: ModelCfg | None = None
    model_name: str = "resnet"
    weights_info: WeightsInfo | None = None

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        stem: Stem = "imagenet",
        widths: Sequence[int] | None = None,
        variant: Variant = "v1.5",
        shortcut: Shortcut = "B",
        zero_init_residual: bool = False,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}: choose one of {', '.join(SHORTCUTS)}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}: choose imagenet or cifar")
        widths = list(widths) if widths is not None else ([64, 128, 256, 512] if stem == "imagenet" else [16, 32, 64])
        if len(widths) != len(layers) or any(n <= 0 for n in layers):
            raise ValueError(f"layers {list(layers)} must be positive and match widths {widths}")
        self._norm_layer: Callable[[int], nn.Module] = norm_layer or nn.BatchNorm2d
        self.variant = variant
        self.shortcut = shortcut
        self.inplanes = widths[0]

        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        )
        # layer1 keeps the resolution (the stem already reduced it); each later stage halves it.
        for i, (width, blocks) in enumerate(zip(widths, layers, strict=True)):
            stage = self._make_layer(block, width, blocks, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        self.num_stages = len(layers)
        self.total_stride = (4 if stem == "imagenet" else 1) * 2 ** (len(layers) - 1)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015 ("Delving deep into rectifiers"), as the paper and torchvision use.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            # Each residual branch starts as zero, so every block starts as the identity.
            for m in self.modules():
                if isinstance(m, Bottleneck) and isinstance(m.bn3, nn.BatchNorm2d):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock) and isinstance(m.bn2, nn.BatchNorm2d):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            out_planes = planes * block.expansion
            downsample = _shortcut(self.inplanes, out_planes, s, self.shortcut, self._norm_layer)
            layers.append(block(self.inplanes, planes, s, downsample, self.variant, self._norm_layer))
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def stages(self) -> list[nn.Sequential]:
        return [cast(nn.Sequential, getattr(self, f"layer{i + 1}")) for i in range(self.num_stages)]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = stage(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return cast(Tensor, self.fc(x))


def _resnet(block: Block, layers: Sequence[int], **kwargs: Any) -> ResNet:
    return ResNet(block, layers, **kwargs)


# Table 1 of the paper: blocks per stage conv2_x..conv5_x.
def resnet18(**kwargs: Any) -> ResNet:
    return _resnet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    return _resnet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs: Any) -> ResNet:
    return _resnet(Bottleneck, [3, 8, 36, 3], **kwargs)


# Section 4.2: 6n+2 layers, n basic blocks per stage on 16/32/64 filters, option A shortcuts.
def _cifar_resnet(n: int, **kwargs: Any) -> ResNet:
    kwargs.setdefault("shortcut", "A")
    kwargs.setdefault("num_classes", 10)
    return _resnet(BasicBlock, [n, n, n], stem="cifar", **kwargs)


def resnet20(**kwargs: Any) -> ResNet:
    return _cifar_resnet(3, **kwargs)


def resnet32(**kwargs: Any) -> ResNet:
    return _cifar_resnet(5, **kwargs)


def resnet44(**kwargs: Any) -> ResNet:
    return _cifar_resnet(7, **kwargs)


def resnet56(**kwargs: Any) -> ResNet:
    return _cifar_resnet(9, **kwargs)


def resnet110(**kwargs: Any) -> ResNet:
    return _cifar_resnet(18, **kwargs)
