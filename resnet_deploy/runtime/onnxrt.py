"""ONNX Runtime runner. A requested provider that cannot load is an error, never a silent fallback."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, EngineError, MissingDependencyError
from .onnx_file import OnnxFileRunner

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_PROVIDER_LIBS = {
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
}


def providers_for(name: str) -> tuple[str, ...]:
    """``cpu`` / ``cuda`` / ``tensorrt`` -> the provider list, each GPU one without a CPU fallback
    (so a provider that cannot start is an error rather than a slow run)."""
    key = name.strip().lower()
    if key not in PROVIDERS:
        raise ConfigError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDERS)}")
    if key == "tensorrt":  # ORT's TensorRT provider hands unsupported nodes to CUDA
        return (PROVIDERS["tensorrt"], PROVIDERS["cuda"])
    return (PROVIDERS[key],)


def provider_failure_reason(provider: str) -> str:
    """Why a GPU provider did not start: its library's own load error, or no GPU."""
    lib = _PROVIDER_LIBS.get(provider)
    if lib is None:
        return f"{provider} is not part of this onnxruntime build"
    try:
        import ctypes

        import onnxruntime as ort

        ctypes.CDLL(str(Path(ort.__file__).parent / "capi" / lib))
    except OSError as e:
        return f"{provider}: {str(e).splitlines()[0]} (install the CUDA/cuDNN{'/TensorRT' if 'Tensorrt' in provider else ''} libraries onnxruntime-gpu needs)"
    return f"{provider}: its libraries load, so no usable NVIDIA GPU or driver is visible"


def has_fp16_qdq(model: Any) -> bool:
    """Whether an int8 graph quantizes in fp16 (its Q/DQ scales are fp16: the tensorrt recipe's
    fp16 remainder)."""
    from onnx import TensorProto

    fp16 = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16}
    return any(
        n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 1 and n.input[1] in fp16
        for n in model.graph.node
    )


def session_options(threads: int, fp16_qdq: bool) -> Any:
    """The CPU session options every ONNX Runtime session of the toolkit uses: ``threads`` intra-op
    threads, one inter-op, quiet logs, and for a graph with fp16 Q/DQ (``has_fp16_qdq``) no QDQ fusions.

    ONNX Runtime's CPU QDQ fusions miscompute some graphs with fp16 Q/DQ scales (measured with
    onnxruntime 1.31 on a trained digits ResNet-20: SQNR -2 dB against fp32 with the fusions, 34 dB
    with the graph run as written). The cause (benchmarks/results/int8_repair.md): its
    WeightBiasQuantization step computes bias / (input scale x weight scale) in fp16, which overflows
    past 65504 (83,873 at that model's conv1). Such a graph runs as written
    (``session.disable_quant_qdq``): it is meant for TensorRT, and on a CPU the cpu recipe is the
    fast one."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", purpose="running ONNX models") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if fp16_qdq:
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return opts


class OnnxRuntimeRunner(OnnxFileRunner):
    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called concurrently

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        self.providers = providers
        self._session: Any = None
        super().__init__(path, threads=threads)

    def _inspect(self, model: Any) -> None:
        self._fp16_qdq = has_fp16_qdq(model)

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
        opts = session_options(self.threads, self._fp16_qdq)
        self._check_file()
        gpu = any(p != "CPUExecutionProvider" for p in self.providers)
        try:
            # A GPU provider that fails to load makes onnxruntime log to stderr, print its CPU
            # fallback on stdout (which would corrupt --json) and carry on: silence it, then check.
            if gpu:
                ort.set_default_logger_severity(4)
            with contextlib.redirect_stdout(io.StringIO()):
                self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(self.providers))
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime cannot load {self.path.name}: {str(e).splitlines()[0][:300]}") from None
        finally:
            if gpu:
                ort.set_default_logger_severity(2)
        active = self._session.get_providers()
        lost = [p for p in self.providers if p not in active]
        if lost:  # never a silent fallback to the CPU
            self._session = None
            raise EngineError(
                f"onnxruntime could not start {', '.join(lost)} (running only {', '.join(active)}): "
                + "; ".join(provider_failure_reason(p) for p in lost)
            )
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._dtype = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(inp.type, np.float32)

    def deactivate(self) -> None:
        self._session = None

    def infer(self, batch: NDArray[Any]) -> NDArray[Any]:
        x = self._check_batch(batch)
        (out,) = self._session.run(None, {self._input: x.astype(self._dtype, copy=False)})
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.name,
            "path": str(self.path),
            "providers": list(self.providers),
            "threads": self.threads,
            "precision": self.metadata.precision,
            "model": self.metadata.model,
        }
