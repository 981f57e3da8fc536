"""Runners: one interface over PyTorch and ONNX Runtime (TensorRT follows), after Polygraphy.

Heavy setup (session, model, device) happens in ``__enter__`` and is released in ``__exit__``;
``infer(batch) -> logits`` takes float32 NCHW and returns float32 ``[batch, classes]``.
"""

from .base import Runner, open_runner

__all__ = ["Runner", "open_runner"]
