"""OpenVINO runner: an ONNX artifact of any precision (fp32, fp16, int8 Q/DQ) on OpenVINO's CPU plugin.

The file is checked by the toolkit first (readable, an ONNX graph, external data in place, its
metadata), then OpenVINO reads and compiles it once, for the artifact's own batch: a dynamic
batch stays dynamic, so every batch size runs on the same compiled model (no compile per call).
The settings (threads, performance hint) and what OpenVINO chose from them (inference precision,
streams, requests, the precision each convolution runs in) are recorded in ``describe()``.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..choices import PerformanceHint
from ..errors import ConfigError, EngineError, MissingDependencyError
from .base import check_threads
from .onnx_file import OnnxFileRunner

DEVICE = "CPU"
# What OpenVINO chose, read back from the compiled model.
RECORDED = ("PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "NUM_STREAMS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
            "INFERENCE_NUM_THREADS")  # fmt: skip
_KERNEL_LAYERS = ("Convolution", "FullyConnected", "MatMul")


def import_openvino() -> Any:
    """The ``openvino`` module, or a MissingDependencyError naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError(
            "openvino", extra="openvino", purpose="running ONNX models with --backend openvino"
        ) from None
    return openvino


def parse_hint(hint: str | PerformanceHint | None) -> PerformanceHint | None:
    """None (OpenVINO's own default, recorded) or ``latency`` / ``throughput``; else a ConfigError."""
    if hint is None or isinstance(hint, PerformanceHint):
        return hint
    try:
        return PerformanceHint(str(hint).strip().lower())
    except ValueError:
        raise ConfigError(f"--hint {hint!r}: choose one of {', '.join(h.value for h in PerformanceHint)}") from None


def openvino_error(e: BaseException) -> str:
    """OpenVINO's message without its source-location lines ("Exception from src/...:84:",
    "Check 'false' failed at ..."): what is left, on one line."""
    lines = [line.strip() for line in str(e).splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith(("Exception from ", "Check '"))]
    return " ".join(kept or [type(e).__name__])[:300]


class OpenVINORunner(OnnxFileRunner):
    """An ONNX file on OpenVINO's CPU plugin, one compiled model for every batch size.

    ``hint``: ``latency`` runs a batch as one inference request; ``throughput`` lets OpenVINO make
    several streams and splits each batch over its optimal number of requests, run in parallel.
    """

    name = "openvino"
    thread_safe = False  # inference requests are not: calls are serialised (infer_all and infer lock)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        hint: str | PerformanceHint | None = None,
    ) -> None:
        check_threads(threads)  # the options are judged before the file
        self.hint = parse_hint(hint)
        super().__init__(path, threads=threads)
        self._ov = import_openvino()  # before anything runs: a missing extra is the first error
        self._compiled: Any = None
        self._requests: list[Any] = []
        self._infer_lock = threading.Lock()  # one batch at a time on the requests
        self.chosen: dict[str, Any] = {}

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads}
        if self.hint is not None:
            config["PERFORMANCE_HINT"] = self.hint.value.upper()
        if self.metadata.precision in (None, "fp32"):
            # OpenVINO's CPU plugin computes in bf16 (or fp16) by default on CPUs that have it
            # (AVX512-BF16, AMX): an fp32 artifact would then silently run at about 3 significant
            # digits and fail check's fp32 gate (max|diff| <= 1e-4 x max|logit|). An fp32 artifact
            # is asked for f32. fp16 and int8 graphs keep OpenVINO's default, which is recorded
            # (their gates judge the result as they judge any lower-precision run).
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return config

    def activate(self) -> None:
        ov = self._ov
        self._check_file()
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises RuntimeError with its frontend's report
            raise EngineError(f"openvino cannot read {self.path.name}: {openvino_error(e)}") from None
        try:
            self._compiled = core.compile_model(model, DEVICE, self._config())
        except Exception as e:
            raise EngineError(f"openvino cannot compile {self.path.name}: {openvino_error(e)}") from None
        self.chosen = {key: _plain(self._compiled.get_property(key)) for key in RECORDED}
        self.chosen["layer_precisions"] = self._layer_precisions()
        jobs = int(self.chosen["OPTIMAL_NUMBER_OF_INFER_REQUESTS"]) if self.hint is PerformanceHint.throughput else 1
        self._requests = [self._compiled.create_infer_request() for _ in range(max(1, jobs))]
        self._dtype = np.dtype(self._compiled.input(0).get_element_type().to_dtype())

    def _layer_precisions(self) -> dict[str, int]:
        """How many convolution / fully connected layers run in each precision (u8/i8 = int8 kernels)."""
        counts: Counter[str] = Counter()
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and "runtimePrecision" in info:
                kind = str(info["layerType"].astype(str))
                if kind in _KERNEL_LAYERS:
                    counts[f"{kind} {info['runtimePrecision'].astype(str)}"] += 1
        return dict(sorted(counts.items()))

    def deactivate(self) -> None:
        self._requests = []
        self._compiled = None

    def infer(self, batch: NDArray[Any]) -> NDArray[Any]:
        x = self._check_batch(batch).astype(self._dtype, copy=False)
        with self._infer_lock:
            if len(self._requests) == 1 or self._fixed is not None or len(x) == 1:
                request = self._requests[0]
                request.infer({0: x})
                return np.array(request.get_output_tensor(0).data, dtype=np.float32)
            # throughput: the batch split over the requests, one stream each, run in parallel
            chunks = np.array_split(x, min(len(self._requests), len(x)))
            used = self._requests[: len(chunks)]
            for request, chunk in zip(used, chunks, strict=True):
                request.start_async({0: np.ascontiguousarray(chunk)})
            for request in used:
                request.wait()
            return np.concatenate([np.array(r.get_output_tensor(0).data, dtype=np.float32) for r in used])

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.name,
            "path": str(self.path),
            "device": DEVICE,
            "openvino": str(self._ov.get_version()),
            "threads": self.threads,
            "hint": self.hint.value if self.hint is not None else None,
            "requests": len(self._requests) or None,
            "compiled": dict(self.chosen),  # what OpenVINO chose: empty until the runner was entered
            "precision": self.metadata.precision,
            "model": self.metadata.model,
        }


def _plain(value: Any) -> Any:
    """A compiled-model property as JSON: ints and strings as they are, OpenVINO types by name."""
    if isinstance(value, (bool, int, float, str)):
        return value
    name = getattr(value, "name", None)  # enums (ExecutionMode...)
    if isinstance(name, str):
        return name
    return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)
