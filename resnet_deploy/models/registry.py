"""The model zoo: ids, depths, configs and ``create_model``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError
from ..metadata_rules import MAX_CLASSES as MAX_CLASSES
from ..metadata_rules import MAX_PARAMS, MAX_WIDTH
from . import resnet as _r
from .cfg import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, ModelCfg, WeightSource

if TYPE_CHECKING:
    from .weights import WeightsSpec

_TV = "https://download.pytorch.org/models/"


def _v1(name: str, hash8: str, top1: float, top5: float) -> WeightSource:
    return WeightSource("IMAGENET1K_V1", f"{_TV}{name}-{hash8}.pth", top1, top5, 256, 224)


def _v2(name: str, hash8: str, top1: float, top5: float) -> WeightSource:
    # torchvision's "new training recipe" checkpoints are evaluated at resize 232, crop 224.
    return WeightSource("IMAGENET1K_V2", f"{_TV}{name}-{hash8}.pth", top1, top5, 232, 224)


# torchvision 0.29's published ImageNet-1k checkpoints (public facts: URL, sha256 prefix, accuracy).
_IMAGENET_WEIGHTS: dict[str, tuple[WeightSource, ...]] = {
    "resnet18": (_v1("resnet18", "f37072fd", 69.758, 89.078),),
    "resnet34": (_v1("resnet34", "b627a593", 73.314, 91.42),),
    "resnet50": (_v1("resnet50", "0676ba61", 76.13, 92.862), _v2("resnet50", "11ad3fa6", 80.858, 95.434)),
    "resnet101": (_v1("resnet101", "63fe2227", 77.374, 93.546), _v2("resnet101", "cd907fc2", 81.886, 95.78)),
    "resnet152": (_v1("resnet152", "394f9c45", 78.312, 94.046), _v2("resnet152", "f82ba261", 82.284, 96.002)),
}

_BUILDERS: dict[str, Callable[..., _r.ResNet]] = {
    "resnet18": _r.resnet18,
    "resnet34": _r.resnet34,
    "resnet50": _r.resnet50,
    "resnet101": _r.resnet101,
    "resnet152": _r.resnet152,
    "resnet20": _r.resnet20,
    "resnet32": _r.resnet32,
    "resnet44": _r.resnet44,
    "resnet56": _r.resnet56,
    "resnet110": _r.resnet110,
}

_LAYERS: dict[str, tuple[int, ...]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
    "resnet20": (3, 3, 3),
    "resnet32": (5, 5, 5),
    "resnet44": (7, 7, 7),
    "resnet56": (9, 9, 9),
    "resnet110": (18, 18, 18),
}

IMAGENET_DEPTHS = (18, 34, 50, 101, 152)
CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def _make_cfg(name: str) -> ModelCfg:
    depth = int(name.removeprefix("resnet"))
    if depth in IMAGENET_DEPTHS:
        return ModelCfg(
            name=name,
            depth=depth,
            dataset="imagenet",
            block="basic" if depth < 50 else "bottleneck",
            layers=_LAYERS[name],
            num_classes=1000,
            input_size=(3, 224, 224),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            resize_size=256,
            crop_size=224,
            labels="imagenet",
            default_shortcut="B",
            weights=_IMAGENET_WEIGHTS[name],
        )
    return ModelCfg(
        name=name,
        depth=depth,
        dataset="cifar10",
        block="basic",
        layers=_LAYERS[name],
        num_classes=10,
        input_size=(3, 32, 32),
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        resize_size=32,
        crop_size=32,
        labels="cifar10",
        default_shortcut="A",
    )


_CFGS: dict[str, ModelCfg] = {name: _make_cfg(name) for name in _BUILDERS}


def _unknown_model_message(what: object) -> str:
    return (
        f"unknown depth {what}: choose one of {', '.join(map(str, IMAGENET_DEPTHS))} (ImageNet) "
        f"or {', '.join(map(str, CIFAR_DEPTHS))} (CIFAR)"
    )


def resolve_model_name(model: str | int) -> str:
    """``50``, ``"50"``, ``"resnet50"`` and ``"ResNet-50"`` all name ``resnet50``."""
    text = str(model).strip().lower().replace("-", "").replace("_", "")
    depth = text.removeprefix("resnet")
    if not depth.isdigit() or f"resnet{int(depth)}" not in _CFGS:
        shown = model if isinstance(model, int) or str(model).isdigit() else repr(model)
        raise ConfigError(_unknown_model_message(shown))
    return f"resnet{int(depth)}"


def list_models(dataset: str | None = None) -> list[str]:
    """Model ids, ImageNet first then CIFAR, each in depth order."""
    names = list(_CFGS)
    if dataset is not None:
        names = [n for n in names if _CFGS[n].dataset == dataset]
    return names


def get_model_cfg(model: str | int) -> ModelCfg:
    return _CFGS[resolve_model_name(model)]


def create_model(
    model: str | int,
    *,
    weights: WeightsSpec = "auto",
    variant: str = "v1.5",
    shortcut: str | None = None,
    num_classes: int | None = None,
    zero_init_residual: bool = False,
    widths: tuple[int, ...] | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> _r.ResNet:
    """Build a zoo model and load its weights.

    ``model`` is an id (``"resnet50"``) or a depth (``50``). ``weights``: ``"random"`` (seeded He
    initialisation), ``"imagenet"`` / ``"imagenet:v1"`` (torchvision's published checkpoints,
    downloaded into the torch.hub cache and hash-checked), a path to a torchvision-format
    state_dict, or ``"auto"``: ImageNet weights when they are already in the local cache and fit
    the architecture, else random. The result carries ``.cfg`` (preprocessing, labels) and
    ``.weights_info`` (what went in, with hashes) for the later stages.
    """
    from .weights import load_weights

    name = resolve_model_name(model)
    cfg = _CFGS[name]
    if not isinstance(variant, str) or variant not in _r.VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}: choose one of {', '.join(_r.VARIANTS)}")
    shortcut = cfg.default_shortcut if shortcut is None else str(shortcut).upper()
    if shortcut not in _r.SHORTCUTS:
        raise ConfigError(f"unknown shortcut {shortcut!r}: choose one of {', '.join(_r.SHORTCUTS)}")
    if num_classes is None:
        num_classes = cfg.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes}")
    if num_classes > MAX_CLASSES:
        raise ConfigError(f"num_classes {num_classes} is too large (at most {MAX_CLASSES:,})")
    if weights is None or not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(f"weights {weights!r}: use 'auto', 'random', 'imagenet[:v1|:v2]' or a path to a state_dict")
    if widths is not None:
        _check_widths(name, tuple(widths), num_classes, variant, shortcut)

    # Seeded construction that leaves the caller's global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _BUILDERS[name](
            num_classes=num_classes,
            variant=variant,
            shortcut=shortcut,
            zero_init_residual=zero_init_residual,
            widths=widths,
            **kwargs,
        )
    net.cfg = cfg if num_classes == cfg.num_classes else _with_classes(cfg, num_classes)
    net.model_name = name
    info = load_weights(net, weights, seed=seed)
    net.weights_info = info
    if info.source == "imagenet" and info.tag is not None:
        net.cfg = net.cfg.with_weights(cfg.weight_source(info.tag))
    return net.eval()


def _check_widths(name: str, widths: tuple[int, ...], num_classes: int, variant: str, shortcut: str) -> None:
    """Stage widths the architecture takes, in range, and a model they make that is no larger than
    ``MAX_PARAMS``: counted on the meta device (no memory) before anything real is built."""
    cfg = _CFGS[name]
    if len(widths) != len(cfg.layers) or any(
        isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= MAX_WIDTH for w in widths
    ):
        raise ConfigError(f"widths {widths} must be {len(cfg.layers)} integers in 1..{MAX_WIDTH} for {name}")
    params, _ = model_stats(
        name, variant=variant, shortcut=shortcut, num_classes=num_classes, widths=widths, macs=False
    )
    if params > MAX_PARAMS:
        raise ConfigError(
            f"{name} with widths {','.join(map(str, widths))} would have {params:,} parameters, over the "
            f"{MAX_PARAMS:,} a single-file ONNX export can hold: refusing to build it"
        )


def _with_classes(cfg: ModelCfg, num_classes: int) -> ModelCfg:
    from dataclasses import replace

    return replace(cfg, num_classes=num_classes, labels="custom")


def model_stats(
    model: str | int,
    *,
    variant: str = "v1.5",
    shortcut: str | None = None,
    num_classes: int | None = None,
    image_size: tuple[int, int] | None = None,
    widths: tuple[int, ...] | None = None,
    macs: bool = True,
) -> tuple[int, int]:
    """(parameters, MACs per image) of a zoo architecture, computed on the meta device (instant;
    MACs 0 unless ``macs``)."""
    from .profile import count_macs, count_params

    name = resolve_model_name(model)
    cfg = _CFGS[name]
    with torch.device("meta"):
        net = _BUILDERS[name](
            num_classes=num_classes or cfg.num_classes,
            variant=variant,
            shortcut=shortcut or cfg.default_shortcut,
            widths=widths,
        )
    size = image_size or (cfg.input_size[1], cfg.input_size[2])
    return count_params(net), count_macs(net, size) if macs else 0
