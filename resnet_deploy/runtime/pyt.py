"""PyTorch runner (CPU) for a zoo model or a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Preprocess
from ..errors import ConfigError
from ..models.registry import create_model, get_model_cfg
from ..models.resnet import ResNet
from ..weights import read_state_dict
from .base import Runner


def infer_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Classes and stage widths of a torchvision-format state_dict (so fine-tuned heads and narrow
    models load without flags)."""
    kwargs: dict[str, Any] = {}
    if "fc.weight" in state:
        kwargs["num_classes"] = int(state["fc.weight"].shape[0])
    widths = []
    for i in range(1, 5):
        key = f"layer{i}.0.conv1.weight"
        if key in state:
            widths.append(int(state[key].shape[0]))
    if widths:
        kwargs["widths"] = tuple(widths)
    blocks = {k.rsplit(".", 2)[0] for k in state if k.startswith("layer") and k.endswith(".conv1.weight")}
    projected = {k.rsplit(".", 3)[0] for k in state if k.endswith("downsample.0.weight")}
    if blocks:
        kwargs["shortcut"] = "A" if not projected else ("C" if projected >= blocks else "B")
    return kwargs


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model: ResNet, *, threads: int | None = None, label: str = "") -> None:
        super().__init__()
        if model.cfg is None:
            raise ConfigError("TorchRunner needs a model built by create_model")
        self.model = model
        self.threads = threads
        self.label = label or model.model_name
        self._pre = Preprocess.from_cfg(model.cfg)

    @classmethod
    def from_zoo(cls, model: str, *, weights: str = "auto", threads: int | None = None) -> TorchRunner:
        return cls(create_model(model, weights=weights), threads=threads)

    @classmethod
    def from_checkpoint(cls, depth: int | str, path: Path, *, threads: int | None = None) -> TorchRunner:
        cfg = get_model_cfg(depth)
        kwargs = infer_architecture(read_state_dict(path))
        if cfg.dataset == "imagenet" and "widths" in kwargs and len(kwargs["widths"]) != 4:
            raise ConfigError(f"{path.name} does not look like a {cfg.name} checkpoint")
        if kwargs.get("widths") == ((64, 128, 256, 512) if cfg.dataset == "imagenet" else (16, 32, 64)):
            kwargs.pop("widths")
        return cls(create_model(cfg.name, weights=os.fspath(path), **kwargs), threads=threads, label=path.name)

    def activate(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model.eval()

    @property
    def preprocess(self) -> Preprocess:
        return self._pre

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(self._check(batch))
        with torch.inference_mode():
            out: np.ndarray = self.model(x).float().numpy()
        return out

    def describe(self) -> dict[str, Any]:
        info = self.model.weights_info
        return {
            "runner": self.name,
            "model": self.model.model_name,
            "weights": info.label if info else None,
            "threads": torch.get_num_threads(),
            "device": "cpu",
        }
