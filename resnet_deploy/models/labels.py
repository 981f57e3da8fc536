"""Class names: ImageNet's 1,000 and CIFAR-10's 10 (package data), or the user's own file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..onnx_io import ArtifactMeta
from ..safeio import LABELS_MAX_BYTES, read_text_capped


def class_names(meta: Mapping[str, str], labels: str | os.PathLike[str] | Sequence[str] | None = None) -> list[str]:
    """Class names in index order: from ``labels`` (a file, one name per line, or a list), else
    ImageNet's 1,000 or CIFAR-10's 10 names (package data) when the artifact says so, else indices."""
    n = ArtifactMeta(meta).num_classes or 0
    if not n and labels is None:
        raise ConfigError("the artifact's metadata has no num_classes: pass --labels FILE")
    if labels is not None:
        if isinstance(labels, (str, os.PathLike)):
            path = Path(labels)
            text = read_text_capped(
                path, "labels file", LABELS_MAX_BYTES, error=ConfigError, missing=f"labels file not found: {path}"
            )
            names = [line.strip() for line in text.splitlines() if line.strip()]
        else:
            names = [str(x) for x in labels]
        if n and len(names) != n:
            raise ConfigError(f"{len(names)} labels for a model with {n} classes")
        return names
    kind = meta.get("labels", "")
    if kind in ("imagenet", "cifar10"):
        text = resources.files("resnet_deploy").joinpath(f"assets/{kind}_classes.txt").read_text("utf-8")
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if len(names) == n:
            return names
    return [str(i) for i in range(n)]
