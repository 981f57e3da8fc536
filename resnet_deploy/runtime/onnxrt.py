"""ONNX Runtime runner. A requested provider that cannot load is an error, never a silent fallback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Preprocess
from ..errors import ConfigError, EngineError, MissingDependencyError
from .base import Runner


def _cpu_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        super().__init__()
        from ..artifacts import load_onnx

        self.path = Path(path)
        model = load_onnx(self.path, load_weights=False)  # clear errors for missing / non-ONNX files
        self.metadata = {p.key: p.value for p in model.metadata_props}
        self._pre = Preprocess.from_metadata(self.metadata)
        batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        self._fixed = batch_dim.dim_value if batch_dim.HasField("dim_value") else None
        self.providers = providers
        if threads is not None and threads <= 0:
            raise ConfigError(f"threads must be a positive integer, got {threads}")
        self.threads = threads or _cpu_threads()
        self._session: Any = None

    def activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime", purpose="running ONNX models") from None
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise EngineError(
                f"onnxruntime {ort.__version__} has no {', '.join(missing)} (available: {', '.join(available)})"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(self.providers))
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime cannot load {self.path.name}: {str(e).splitlines()[0][:300]}") from None
        active = self._session.get_providers()
        lost = [p for p in self.providers if p not in active]
        if lost:  # onnxruntime falls back to CPU silently when a GPU provider's libraries fail to load
            raise EngineError(
                f"onnxruntime could not start {', '.join(lost)} (running: {', '.join(active)}): "
                "its CUDA/cuDNN/TensorRT libraries are missing or there is no GPU"
            )
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def deactivate(self) -> None:
        self._session = None

    @property
    def preprocess(self) -> Preprocess:
        return self._pre

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self._check(batch)
        if self._fixed is not None and len(x) != self._fixed:
            raise ConfigError(f"{self.path.name} has a fixed batch of {self._fixed}, got {len(x)}")
        (out,) = self._session.run(None, {self._input: x.astype(self._dtype, copy=False)})
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.name,
            "path": str(self.path),
            "providers": list(self.providers),
            "threads": self.threads,
            "precision": self.metadata.get("precision", "fp32"),
            "model": self.metadata.get("model"),
        }
