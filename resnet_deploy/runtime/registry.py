"""The one table that decides which runner runs an artifact on a backend.

``open_backend`` is the only place that maps (artifact kind, backend) to a Runner: ``check``,
``eval``, ``bench``, ``predict``, ``Predictor`` and ``serve`` all open runners through it.
Adding a backend is one runner module plus one row in ``BACKENDS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..choices import Backend as Backend
from ..errors import ConfigError
from ..onnx_io import ArtifactMeta
from .base import Runner
from .onnxrt import OnnxRuntimeRunner, providers_for
from .openvino import OpenVINORunner
from .pyt import TorchRunner
from .trt import TensorRTRunner

ONNX_SUFFIXES = (".onnx",)
PLAN_SUFFIXES = (".plan", ".engine")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


def artifact_kind(artifact: str | os.PathLike[str]) -> str:
    """'onnx' | 'plan' | 'checkpoint' | 'model-id' (a zoo name or depth); a ConfigError for other files."""
    path = Path(os.fspath(artifact))
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in PLAN_SUFFIXES:
        return "plan"
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if path.is_file() or suffix:
        raise ConfigError(
            f"{path.name}: not an artifact this toolkit runs (.onnx, .plan/.engine, .pth/.pt/.safetensors)"
        )
    return "model-id"


@dataclass(frozen=True)
class RunOptions:
    """How to open a runner: everything a backend may need, each used only where it applies."""

    threads: int | None = None
    providers: tuple[str, ...] | None = None  # ONNX Runtime providers (None: the backend's, or the device's)
    device: str = "cpu"  # cpu | cuda: PyTorch's device, and ONNX Runtime's provider for 'onnxruntime'
    weights: str | None = None  # a model id's weights
    depth: int | str | None = None  # a checkpoint's architecture
    torch: tuple[tuple[str, Any], ...] = ()  # TorchRunner options: dtype, channels_last, compile, cuda_graphs
    hint: str | None = None  # OpenVINO's performance hint: latency | throughput (None: OpenVINO's default)
    streams: int = 1  # TensorRT: CUDA streams, each with its own execution context

    def torch_options(self) -> dict[str, Any]:
        options = dict(self.torch)
        if self.device != "cpu":
            options["device"] = self.device
        return options


def _onnxruntime(provider: str | None) -> Callable[[Path, str, RunOptions], Runner]:
    def open_(path: Path, kind: str, o: RunOptions) -> Runner:
        if kind != "onnx":
            name = "onnxruntime" if provider is None else f"onnxruntime-{provider}"
            raise ConfigError(f"backend {name} runs .onnx files, not {path.name}")
        if dict(o.torch).get("cuda_graphs"):
            raise ConfigError("--cuda-graphs applies to --backend tensorrt and torch (--device cuda), not onnxruntime")
        providers = o.providers if provider is None and o.providers else providers_for(provider or o.device)
        return OnnxRuntimeRunner(path, providers=providers, threads=o.threads)

    return open_


def _tensorrt(path: Path, kind: str, o: RunOptions) -> Runner:
    if kind != "plan":
        raise ConfigError(
            f"backend tensorrt runs .plan/.engine files, not {path.name}: build one first with 'resnet-deploy build {path}'"
        )
    return TensorRTRunner(path, cuda_graph=bool(dict(o.torch).get("cuda_graphs", False)), streams=o.streams)


def _openvino(path: Path, kind: str, o: RunOptions) -> Runner:
    if kind != "onnx":
        raise ConfigError(f"backend openvino runs .onnx files, not {path.name}")
    if dict(o.torch).get("cuda_graphs"):
        raise ConfigError("--cuda-graphs applies to --backend tensorrt and torch (--device cuda), not openvino")
    return OpenVINORunner(path, threads=o.threads, hint=o.hint)


def _torch(path: Path, kind: str, o: RunOptions) -> Runner:
    options = o.torch_options()
    if kind == "model-id":
        return TorchRunner.from_zoo(os.fspath(path), weights=o.weights or "auto", threads=o.threads, **options)
    if kind == "checkpoint":
        if o.weights is not None:
            raise ConfigError("give the checkpoint as the artifact or as --weights, not both")
        if o.depth is None:
            raise ConfigError(f"{path.name} is a PyTorch checkpoint: name its architecture (--depth N)")
        return TorchRunner.from_checkpoint(o.depth, path, threads=o.threads, **options)
    # An ONNX file or a plan: the PyTorch model it was exported from, rebuilt from its metadata
    # and checked against the weights hash it records.
    source = OnnxRuntimeRunner(path) if kind == "onnx" else TensorRTRunner(path)
    return TorchRunner.from_metadata(
        ArtifactMeta(source.metadata), weights=o.weights, preprocess=source.preprocess, threads=o.threads, **options
    )


# backend -> how it opens each kind of artifact (the opener raises for kinds it cannot run).
BACKENDS: dict[Backend, Callable[[Path, str, RunOptions], Runner]] = {
    Backend.onnxruntime: _onnxruntime(None),
    Backend.onnxruntime_cuda: _onnxruntime("cuda"),
    Backend.onnxruntime_tensorrt: _onnxruntime("tensorrt"),
    Backend.tensorrt: _tensorrt,
    Backend.torch: _torch,
    Backend.openvino: _openvino,
}
# auto: the backend for each kind of artifact.
DEFAULT_BACKEND = {
    "onnx": Backend.onnxruntime,
    "plan": Backend.tensorrt,
    "checkpoint": Backend.torch,
    "model-id": Backend.torch,
}


def parse_backend(backend: str | Backend) -> Backend:
    try:
        return Backend(backend.strip().lower() if isinstance(backend, str) else backend)
    except ValueError:
        raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(b.value for b in Backend)}") from None


def resolve_backend(artifact: str | os.PathLike[str], backend: str | Backend = Backend.auto) -> Backend:
    """The concrete backend that runs ``artifact`` (``auto`` picks by the artifact's kind)."""
    key = parse_backend(backend)
    return DEFAULT_BACKEND[artifact_kind(artifact)] if key is Backend.auto else key


def open_backend(
    artifact: str | os.PathLike[str],
    backend: str | Backend = Backend.auto,
    *,
    threads: int | None = None,
    depth: int | str | None = None,
    weights: str | None = None,
    providers: tuple[str, ...] | None = None,
    device: str = "cpu",
    hint: str | None = None,
    streams: int = 1,
    **torch_options: Any,
) -> Runner:
    """The runner for ``artifact`` on ``backend``: an ONNX file, a TensorRT plan, a PyTorch
    checkpoint (``depth`` names its architecture) or a model id / depth (``weights``). ``auto``:
    ONNX Runtime for an ONNX, TensorRT for a plan, PyTorch otherwise. A GPU backend that cannot
    start is an error when the runner is entered, never a silent move to the CPU. ``hint``:
    OpenVINO's performance hint (latency | throughput), refused for every other backend;
    ``streams``: TensorRT's CUDA streams (each with its own execution context), likewise."""
    key = parse_backend(backend)  # an unknown backend fails before any file is looked at
    kind = artifact_kind(artifact)
    chosen = DEFAULT_BACKEND[kind] if key is Backend.auto else key
    if hint is not None and chosen is not Backend.openvino:
        raise ConfigError(f"--hint applies to --backend openvino, not {chosen.value}")
    if streams != 1 and chosen is not Backend.tensorrt:
        raise ConfigError(f"--streams applies to --backend tensorrt, not {chosen.value}")
    options = RunOptions(threads, providers, device, weights, depth, tuple(torch_options.items()), hint, streams)
    return BACKENDS[chosen](Path(os.fspath(artifact)), kind, options)


def open_runner(
    artifact: str | os.PathLike[str],
    *,
    weights: str | None = None,
    depth: int | str | None = None,
    threads: int | None = None,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> Runner:
    """A runner for an ONNX file (ONNX Runtime on ``providers``), a TensorRT plan, a model id or
    depth (PyTorch, with ``weights``), or a PyTorch checkpoint (``depth`` names the architecture;
    classes and widths are read from it): ``open_backend`` with ``auto``."""
    return open_backend(artifact, Backend.auto, threads=threads, depth=depth, weights=weights, providers=providers)
