"""The Runner interface: what every backend implements (after Polygraphy's ``BaseRunner``).

Only the interface lives here; which runner runs which artifact is ``registry.py``'s table.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..onnx_io import ArtifactMeta

if TYPE_CHECKING:
    from ..data import Preprocess


MAX_THREADS = 1024  # CPU threads a runner may be given (ONNX Runtime and torch take an int32)


def check_threads(threads: int | None) -> int | None:
    """None (the runner's default) or a thread count in 1-``MAX_THREADS``; else a ConfigError."""
    if threads is not None and (isinstance(threads, bool) or not 0 < threads <= MAX_THREADS):
        raise ConfigError(f"--threads {threads}: must be in 1-{MAX_THREADS}")
    return threads


class Runner(ABC):
    """Runs a classifier: float32 ``[n, 3, H, W]`` in (uint8 ``[n, H, W, 3]`` pixels for models
    exported with ``--input-format uint8-nhwc``: ``preprocess`` says which), float32
    ``[n, classes]`` logits out."""

    name = "runner"
    thread_safe = False  # may ``infer`` run from several threads at once?

    def __init__(self) -> None:
        self.active = False
        # What the artifact says about itself (an ONNX file's metadata_props, a plan's sidecar);
        # a PyTorch runner describes its model the same way.
        self.metadata = ArtifactMeta()
        self._lock = threading.Lock()  # serialises infer_all where the runner is not thread-safe

    def __enter__(self) -> Runner:
        self.activate()
        self.active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.deactivate()
        self.active = False

    @abstractmethod
    def activate(self) -> None:
        """Heavy setup: load the model, create the session."""

    def deactivate(self) -> None:  # noqa: B027 - optional hook, not every runner holds resources
        """Release what ``activate`` created."""

    @abstractmethod
    def infer(self, batch: NDArray[Any]) -> NDArray[Any]:
        """Logits for one preprocessed batch."""

    @property
    @abstractmethod
    def preprocess(self) -> Preprocess:
        """The preprocessing the model expects (from its config or its metadata)."""

    @property
    def max_batch(self) -> int | None:
        """The largest batch one call accepts (None: no limit)."""
        return None

    @property
    def fixed_batch(self) -> int | None:
        """The only batch size the artifact accepts, for fixed-batch exports."""
        return None

    def infer_all(self, x: NDArray[Any]) -> NDArray[Any]:
        """Logits for any number of inputs: split to fit an engine's profile, and for fixed-batch
        artifacts run in whole batches, the last one padded by repeating its final input. Safe to
        call from many threads: runners that are not thread-safe run one call at a time."""
        with contextlib.nullcontext() if self.thread_safe else self._lock:
            out = self._infer_all(x)
        self._check_classes(out)
        return out

    def _check_classes(self, out: NDArray[Any]) -> None:
        """The model's own output wins: logits that are not ``[n, num_classes]`` refuse the artifact
        (labels or a served model's shape built from that metadata would be wrong)."""
        n = self.metadata.num_classes
        if n is not None and (out.ndim != 2 or out.shape[1] != n):
            raise ConfigError(
                f"the artifact's metadata says num_classes={n} but the model outputs shape {list(out.shape)}: "
                "refusing the artifact"
            )

    def _infer_all(self, x: NDArray[Any]) -> NDArray[Any]:
        size = self.fixed_batch or self.max_batch
        if size is None or (self.fixed_batch is None and len(x) <= size):
            return np.asarray(self.infer(x), dtype=np.float32)
        parts = []
        for i in range(0, len(x), size):
            chunk = x[i : i + size]
            n = len(chunk)
            if self.fixed_batch is not None and n < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
            parts.append(np.asarray(self.infer(chunk), dtype=np.float32)[:n])
        return np.concatenate(parts)

    @property
    def input_spec(self) -> dict[str, Any]:
        """What ``infer`` takes: float32 NCHW; the batch is None (any), or the fixed size."""
        pre = self.preprocess
        return {
            "name": "input",
            "dtype": np.dtype(pre.dtype).name,
            "format": pre.input_format,
            "shape": [self.fixed_batch, *pre.input_shape(0)[1:]],
            "max_batch": self.max_batch,
        }

    def warmup(self, batch_size: int = 1, iterations: int = 3) -> None:
        """Run a few zero batches so lazy initialisation (kernels, autotuning, graphs) is done."""
        n = self.fixed_batch or batch_size
        x = self.preprocess.zeros(n)
        for _ in range(iterations):
            self.infer(x)

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name}

    def _check(self, batch: NDArray[Any]) -> NDArray[Any]:
        if not self.active:
            raise RuntimeError(f"{self.name} runner used outside its 'with' block")
        pre = self.preprocess
        arr = np.asarray(batch)
        if pre.pixels and arr.dtype != np.uint8:
            raise ConfigError(f"this model takes uint8 pixels [n, H, W, 3] ({pre.input_format}), got {arr.dtype}")
        x = np.ascontiguousarray(arr, dtype=pre.dtype)  # device copies assume a dense layout
        want = pre.input_shape(0)[1:]
        if x.ndim != 4 or x.shape[1:] != want:
            dims = ", ".join(map(str, want))
            raise ConfigError(f"expected input [n, {dims}] ({pre.input_format}), got {list(x.shape)}")
        return x
