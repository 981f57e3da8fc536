"""Per-model configuration, after timm's ``PretrainedCfg``.

Everything that depends on "which model is this" lives here and only here: architecture facts,
input size, preprocessing (resize, crop, mean/std, interpolation), class labels and the published
weights. Export, calibration, parity, the Triton config and the Predictor all read from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CIFAR-10 training-set channel statistics (the values most CIFAR ResNet code uses).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass(frozen=True)
class WeightSource:
    """A published checkpoint: where it lives, how to verify it, what it scores, how to feed it."""

    tag: str
    url: str
    top1: float
    top5: float
    resize_size: int = 256
    crop_size: int = 224

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        """torch.hub convention: the hex digits after the last '-' of the file name."""
        stem = self.filename.rsplit(".", 1)[0]
        return stem.rsplit("-", 1)[-1]


@dataclass(frozen=True)
class ModelCfg:
    """What a model is and how its inputs must be prepared."""

    name: str
    depth: int
    dataset: str  # "imagenet" | "cifar10"
    block: str  # "basic" | "bottleneck"
    layers: tuple[int, ...]
    num_classes: int
    input_size: tuple[int, int, int]  # C, H, W
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    resize_size: int = 256  # shorter side before the center crop
    crop_size: int = 224
    labels: str = "imagenet"  # "imagenet" | "cifar10" | "custom"
    default_shortcut: str = "B"
    weights: tuple[WeightSource, ...] = field(default_factory=tuple)

    @property
    def default_weights(self) -> WeightSource | None:
        """torchvision's DEFAULT: the newest recipe (V2 where it exists)."""
        return self.weights[-1] if self.weights else None

    def weight_source(self, tag: str) -> WeightSource:
        for w in self.weights:
            if w.tag.lower() == tag.lower() or w.tag.lower().endswith("_" + tag.lower()):
                return w
        tags = ", ".join(w.tag for w in self.weights) or "none"
        raise KeyError(f"{self.name} has no published weights {tag!r} (available: {tags})")

    def with_image_size(self, height: int, width: int) -> ModelCfg:
        """The same preprocessing recipe scaled to another crop (keeps the resize/crop ratio)."""
        ratio = self.resize_size / self.crop_size
        return replace(
            self,
            input_size=(3, height, width),
            crop_size=min(height, width),
            resize_size=round(max(height, width) * ratio),  # the resized image covers the whole crop
        )

    def with_weights(self, source: WeightSource) -> ModelCfg:
        return replace(self, resize_size=source.resize_size, crop_size=source.crop_size)

    def label_names(self, num_classes: int | None = None) -> list[str] | None:
        n = num_classes if num_classes is not None else self.num_classes
        names: tuple[str, ...] | None = None
        if self.labels == "imagenet":
            names = imagenet_classes()
        elif self.labels == "cifar10":
            names = CIFAR10_CLASSES
        if names is None or len(names) != n:
            return None
        return list(names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = [asdict(w) | {"sha256_prefix": w.sha256_prefix} for w in self.weights]
        return d


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in index order (shipped as package data)."""
    text = resources.files("resnet_deploy").joinpath("assets/imagenet_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise RuntimeError(f"package data imagenet_classes.txt has {len(names)} names, expected 1000")
    return names
