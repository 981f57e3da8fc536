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

    def __init__(
        self, model: ResNet, *, threads: int | None = None, label: str = "", preprocess: Preprocess | None = None
    ) -> None:
        super().__init__()
        if model.cfg is None:
            raise ConfigError("TorchRunner needs a model built by create_model")
        self.model = model
        self.threads = threads
        self.label = label or model.model_name
        self._pre = preprocess or Preprocess.from_cfg(model.cfg)

    @classmethod
    def from_metadata(
        cls,
        meta: dict[str, str],
        *,
        weights: str | None = None,
        preprocess: Preprocess | None = None,
        threads: int | None = None,
    ) -> TorchRunner:
        """The PyTorch model an artifact was exported from, rebuilt from its metadata and checked
        against the weights hash it records (so the reference is provably the same model)."""
        if "model" not in meta or "weights_sha256" not in meta:
            raise ConfigError(
                "the artifact has no resnet-deploy metadata to rebuild a PyTorch reference from: use --reference PATH"
            )
        kwargs: dict[str, Any] = {
            "variant": meta.get("variant", "v1.5"),
            "shortcut": meta.get("shortcut"),
            "num_classes": int(meta.get("num_classes", "1000")),
        }
        if meta.get("widths"):
            kwargs["widths"] = tuple(int(v) for v in meta["widths"].split(","))
        source = meta.get("weights_source")
        if weights is not None:
            spec = weights
        elif source == "random":
            spec, kwargs["seed"] = "random", int(meta.get("weights_seed", "0"))
        elif source == "imagenet" and meta.get("weights_tag"):
            spec = f"imagenet:{meta['weights_tag']}"
        elif source == "file":
            raise ConfigError(
                f"the artifact was exported from the weights file {meta.get('weights_file', '?')}: "
                "pass --weights PATH to rebuild the PyTorch reference"
            )
        else:
            raise ConfigError(
                "the artifact's weights were changed in memory before export: compare it with "
                "--reference PATH (e.g. its fp32 ONNX) or pass --weights PATH"
            )
        model = create_model(meta["model"], weights=spec, **kwargs)
        got = model.weights_info.state_sha256 if model.weights_info else ""
        if got != meta["weights_sha256"]:
            raise ConfigError(
                f"the rebuilt PyTorch model's weights (sha256 {got[:12]}...) are not the ones the "
                f"artifact was exported from ({meta['weights_sha256'][:12]}...)"
            )
        return cls(model, preprocess=preprocess, threads=threads, label=f"torch {meta['model']} ({spec})")

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
