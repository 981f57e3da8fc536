"""PyTorch runner (CPU) for a zoo model or a checkpoint."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from numpy.typing import NDArray

from ..choices import Device, TorchDtype
from ..data import Preprocess
from ..errors import ConfigError, EngineError
from ..models.registry import create_model, get_model_cfg
from ..models.resnet import ResNet
from ..models.weights import read_state_dict
from ..onnx_io import ArtifactMeta
from .base import Runner, check_threads

DEVICES = tuple(d.value for d in Device)
DTYPES = tuple(d.value for d in TorchDtype)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        self,
        model: ResNet,
        *,
        threads: int | None = None,
        label: str = "",
        preprocess: Preprocess | None = None,
        device: str = "cpu",
        dtype: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        if model.cfg is None:
            raise ConfigError("TorchRunner needs a model built by create_model")
        if device not in DEVICES:
            raise ConfigError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
        if dtype == "fp16" and device == "cpu":
            raise ConfigError("fp16 runs on CUDA; on the CPU use bf16 (or fp32)")
        if cuda_graphs and device != "cuda":
            raise ConfigError("CUDA graphs need --device cuda")
        self.model = model
        self.metadata = ArtifactMeta(
            {"model": model.model_name, "num_classes": str(model.fc.out_features), "labels": model.cfg.labels}
        )
        self.threads = check_threads(threads)
        self.label = label or model.model_name
        # The PyTorch network takes normalised float NCHW, whatever its exported artifact takes.
        self._pre = (preprocess or Preprocess.from_cfg(model.cfg)).as_float()
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        self.compile, self.cuda_graphs = compile, cuda_graphs
        self._net: Any = None
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_metadata(
        cls,
        meta: Mapping[str, str],
        *,
        weights: str | None = None,
        preprocess: Preprocess | None = None,
        threads: int | None = None,
        **options: Any,
    ) -> TorchRunner:
        """The PyTorch model an artifact was exported from, rebuilt from its metadata and checked
        against the weights hash it records (so the reference is provably the same model)."""
        if "model" not in meta or "weights_sha256" not in meta:
            raise ConfigError(
                "the artifact has no resnet-deploy metadata to rebuild a PyTorch reference from: use --reference PATH"
            )
        m = ArtifactMeta(meta)
        kwargs: dict[str, Any] = {"variant": m.variant, "shortcut": m.shortcut, "num_classes": m.num_classes or 1000}
        if m.widths:
            kwargs["widths"] = m.widths
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
        return cls(model, preprocess=preprocess, threads=threads, label=f"torch {meta['model']} ({spec})", **options)

    @classmethod
    def from_zoo(cls, model: str, *, weights: str = "auto", threads: int | None = None, **options: Any) -> TorchRunner:
        return cls(create_model(model, weights=weights), threads=threads, **options)

    @classmethod
    def from_checkpoint(
        cls, depth: int | str, path: Path, *, threads: int | None = None, **options: Any
    ) -> TorchRunner:
        cfg = get_model_cfg(depth)
        kwargs = infer_architecture(read_state_dict(path))
        if cfg.dataset == "imagenet" and "widths" in kwargs and len(kwargs["widths"]) != 4:
            raise ConfigError(f"{path.name} does not look like a {cfg.name} checkpoint")
        if kwargs.get("widths") == ((64, 128, 256, 512) if cfg.dataset == "imagenet" else (16, 32, 64)):
            kwargs.pop("widths")
        return cls(
            create_model(cfg.name, weights=os.fspath(path), **kwargs), threads=threads, label=path.name, **options
        )

    def activate(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model.eval()
        if self.device == "cuda" and not torch.cuda.is_available():
            raise EngineError("--device cuda: no CUDA GPU is visible to torch (torch.cuda.is_available() is False)")
        net: Any = self.model
        if (self.device, self.dtype, self.channels_last) != ("cpu", "fp32", False):
            net = copy.deepcopy(self.model)  # never change the caller's model
            net = net.to(device=self.device, dtype=_DTYPES[self.dtype])
            if self.channels_last:
                net = net.to(memory_format=torch.channels_last)
        if self.compile:
            # Manual CUDA graphs below replace inductor's own; otherwise the default mode.
            net = torch.compile(net, mode="max-autotune-no-cudagraphs" if self.cuda_graphs else None)
        self._net = net
        self._graphs = {}

    def deactivate(self) -> None:
        self._net = None
        self._graphs = {}
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def _to_device(self, batch: NDArray[Any]) -> torch.Tensor:
        x = torch.from_numpy(batch)
        if self.device == "cuda":
            x = x.pin_memory().to("cuda", non_blocking=True)
        x = x.to(_DTYPES[self.dtype])
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        """One captured CUDA graph per input shape: copy in, replay, copy out."""
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up outside the capture (cuDNN autotuning, lazy init)
                    self._net(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._net(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    @property
    def preprocess(self) -> Preprocess:
        return self._pre

    def infer(self, batch: NDArray[Any]) -> NDArray[Any]:
        x = self._to_device(self._check(batch))
        with torch.inference_mode():
            y = self._replay(x) if self.cuda_graphs else self._net(x)
            out: NDArray[Any] = y.float().cpu().numpy()
        return out

    def infer_timed(self, batch: NDArray[Any]) -> dict[str, float] | None:
        """On CUDA: host-to-device copy, compute (dtype/layout conversion, the network, the fp32
        cast of the logits) and device-to-host copy, in milliseconds from CUDA events on the
        current stream. None on the CPU."""
        if self.device != "cuda":
            return None
        x = torch.from_numpy(self._check(batch)).pin_memory()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        with torch.inference_mode():
            events[0].record()
            dev = x.to("cuda", non_blocking=True)
            events[1].record()
            dev = dev.to(_DTYPES[self.dtype])
            if self.channels_last:
                dev = dev.contiguous(memory_format=torch.channels_last)
            y = (self._replay(dev) if self.cuda_graphs else self._net(dev)).float()
            host = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
            events[2].record()
            host.copy_(y, non_blocking=True)
            events[3].record()
        events[3].synchronize()
        return {
            "h2d": events[0].elapsed_time(events[1]),
            "compute": events[1].elapsed_time(events[2]),
            "d2h": events[2].elapsed_time(events[3]),
        }

    def describe(self) -> dict[str, Any]:
        info = self.model.weights_info
        return {
            "runner": self.name,
            "model": self.model.model_name,
            "weights": info.label if info else None,
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if self.device == "cuda" and torch.cuda.is_available() else "cpu",
            "dtype": self.dtype,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "cuda_graphs": self.cuda_graphs,
        }
