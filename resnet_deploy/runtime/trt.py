"""TensorRT runner on the TensorRT 10.x / 11.x Python API (name-based I/O, execute_async_v3).

Device buffers are torch CUDA tensors; host staging uses pinned memory. The plan is verified
(sha256 + sidecar against this TensorRT and GPU) before it is deserialized.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from ..data import Preprocess
from ..engine import check_host_code, load_engine
from ..errors import ConfigError, EngineError
from ..onnx_io import ArtifactMeta
from ..sidecar import Sidecar, sidecar_path
from .base import Runner


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(self, plan: str | os.PathLike[str], *, allow_host_code: bool | None = None) -> None:
        super().__init__()
        self.path = Path(plan)
        if not self.path.is_file():
            raise ConfigError(f"engine not found: {self.path}")  # a missing file: a usage error (exit 2)
        self.sidecar = Sidecar.from_file(sidecar_path(self.path))
        self.allow_host_code = check_host_code(self.path, self.sidecar, allow_host_code)
        self.metadata = ArtifactMeta({**self.sidecar.metadata, "precision": self.sidecar.precision})
        self._pre = Preprocess.from_metadata(self.metadata)
        self._max = int(self.sidecar.profile["max"][0])
        self._min = int(self.sidecar.profile["min"][0])
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None

    @property
    def preprocess(self) -> Preprocess:
        return self._pre

    @property
    def max_batch(self) -> int | None:
        return self._max

    @property
    def min_batch(self) -> int:
        return self._min

    def activate(self) -> None:
        import torch

        self._engine, _ = load_engine(self.path, allow_host_code=self.allow_host_code)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {self.path.name}")
        self._stream = torch.cuda.Stream()
        import tensorrt as trt

        self._inputs = []
        self._outputs = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(name)
            else:
                self._outputs.append(name)
        if len(self._inputs) != 1 or len(self._outputs) != 1:
            raise EngineError(f"expected one input and one output, got {self._inputs} and {self._outputs}")
        self._check_shapes()
        self._in_dtype = _torch_dtype(self._engine.get_tensor_dtype(self._inputs[0]))
        self._out_dtype = _torch_dtype(self._engine.get_tensor_dtype(self._outputs[0]))

    def _check_shapes(self) -> None:
        """The engine's own image shape and class count must be what its sidecar's metadata says
        (the sidecar drives preprocessing and labels): refused at load, not at the first batch."""
        image = [int(d) for d in self._engine.get_tensor_shape(self._inputs[0])][1:]
        classes = int(self._engine.get_tensor_shape(self._outputs[0])[-1])
        expected = [int(d) for d in self._pre.input_shape(1)[1:]]
        if image != expected:
            raise EngineError(f"{self.path.name}: the engine takes {image} images, its sidecar says {expected}")
        n = self.metadata.num_classes
        if n and classes not in (-1, n):
            raise EngineError(f"{self.path.name}: the engine outputs {classes} classes, its sidecar says {n}")

    def deactivate(self) -> None:
        self._context = None
        self._engine = None
        self._stream = None

    def infer(self, batch: NDArray[Any]) -> NDArray[Any]:
        return self._execute(batch, timed=False)[0]

    def infer_timed(self, batch: NDArray[Any]) -> dict[str, float]:
        """Host-to-device, compute and device-to-host milliseconds from CUDA events on the stream."""
        phases = self._execute(batch, timed=True)[1]
        assert phases is not None
        return phases

    def _execute(self, batch: NDArray[Any], *, timed: bool) -> tuple[NDArray[Any], dict[str, float] | None]:
        import torch

        x = self._check(batch)
        n = len(x)
        if not self._min <= n <= self._max:
            raise ConfigError(f"batch {n} is outside the engine's profile ({self._min}-{self._max})")
        host_in = torch.from_numpy(x).to(self._in_dtype).pin_memory()
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)] if timed else []
        with torch.cuda.stream(self._stream):
            if timed:
                events[0].record(self._stream)
            dev_in = host_in.to("cuda", non_blocking=True)
            if timed:
                events[1].record(self._stream)
            if not self._context.set_input_shape(self._inputs[0], tuple(dev_in.shape)):
                raise EngineError(f"TensorRT refused input shape {tuple(dev_in.shape)}")
            out_shape = tuple(self._context.get_tensor_shape(self._outputs[0]))
            dev_out = torch.empty(out_shape, dtype=self._out_dtype, device="cuda")
            self._context.set_tensor_address(self._inputs[0], dev_in.data_ptr())
            self._context.set_tensor_address(self._outputs[0], dev_out.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise EngineError("TensorRT execute_async_v3 failed")
            if timed:
                events[2].record(self._stream)
            host_out = torch.empty(out_shape, dtype=self._out_dtype, pin_memory=True)
            host_out.copy_(dev_out, non_blocking=True)
            if timed:
                events[3].record(self._stream)
        self._stream.synchronize()
        phases = None
        if timed:
            phases = {
                "h2d": events[0].elapsed_time(events[1]),
                "compute": events[1].elapsed_time(events[2]),
                "d2h": events[2].elapsed_time(events[3]),
            }
        return host_out.float().numpy(), phases

    def describe(self) -> dict[str, Any]:
        return {
            "runner": self.name,
            "path": str(self.path),
            "precision": self.sidecar.precision,
            "tensorrt": self.sidecar.tensorrt_version,
            "gpu": self.sidecar.gpu_name,
            "profile": self.sidecar.profile,
            "version_compatible": self.sidecar.version_compatible,
            "allow_host_code": self.allow_host_code,
            "model": self.metadata.model,
        }


def _torch_dtype(trt_dtype: Any) -> Any:
    import tensorrt as trt
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int8: torch.int8,
        trt.int32: torch.int32,
        trt.uint8: torch.uint8,
    }
    if trt_dtype not in table:
        raise EngineError(f"unsupported engine I/O dtype {trt_dtype}")
    return table[trt_dtype]
