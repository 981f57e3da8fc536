"""Runners: one interface over PyTorch, ONNX Runtime and TensorRT (after Polygraphy).

Heavy setup (session, model, device) happens in ``__enter__`` and is released in ``__exit__``;
``infer(batch) -> logits`` takes float32 NCHW and returns float32 ``[batch, classes]``. Importing
this package imports neither onnxruntime nor tensorrt: each runner imports its library on use.
"""

from .base import Runner
from .onnxrt import OnnxRuntimeRunner, providers_for
from .pyt import TorchRunner
from .registry import Backend, open_backend, open_runner
from .trt import TensorRTRunner

__all__ = [
    "Backend",
    "OnnxRuntimeRunner",
    "Runner",
    "TensorRTRunner",
    "TorchRunner",
    "open_backend",
    "open_runner",
    "providers_for",
]
