"""TensorRT runner on the TensorRT 10.x / 11.x Python API (name-based I/O, execute_async_v3).

Device buffers are torch CUDA tensors; host staging uses pinned memory. The plan is verified
(sha256 + sidecar against this TensorRT and GPU) before it is deserialized.

Timing as trtexec does it (``--useCudaGraph``, ``--infStreams=N``; samples/common/sampleInference.cpp):

* ``cuda_graph=True``: per input shape, one warm-up ``execute_async_v3`` (so TensorRT's deferred
  initialisation is not captured), then that enqueue captured into a CUDA graph on the runner's
  stream (thread-local capture mode, as trtexec's TrtCudaGraph) and replayed on every later call of
  that shape. A graph bakes in the shapes and tensor addresses it was captured with (a new shape
  needs a new capture), so each captured shape keeps its own execution context and device buffers,
  as trtexec keeps one context per graph: no context is ever re-shaped under a graph captured from
  it. The cost is one context's activation memory per (stream, shape). Some engines cannot be
  captured (TensorRT names data-dependent shapes, loops, some plugins; trtexec falls back the same
  way): the enqueue then returns False under capture or the capture is invalidated, that shape
  runs as a plain enqueue, and ``describe()["cuda_graph"]`` says why.
* ``streams=N``: N CUDA streams, each with its own execution context(s) and device buffers (as
  trtexec's per-stream IExecutionContext). ``infer_streams(x)`` enqueues the same batch on all N
  and waits for all: one call processes N x batch images; ``infer_timed`` does the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from ..data import Preprocess
from ..engine import check_host_code, load_engine
from ..errors import ConfigError, EngineError
from ..onnx_io import ArtifactMeta
from ..sidecar import Sidecar, sidecar_path
from .base import Runner

MAX_STREAMS = 64  # each stream holds its own execution context (activation memory) per shape


def check_streams(streams: int) -> int:
    """An int in 1-``MAX_STREAMS``, else a ConfigError naming the option."""
    if isinstance(streams, bool) or not isinstance(streams, int) or not 1 <= streams <= MAX_STREAMS:
        raise ConfigError(f"--streams {streams!r}: must be an integer in 1-{MAX_STREAMS}")
    return streams


def stream_phases(
    inputs_ready: Sequence[float], compute_done: Sequence[float], outputs_done: Sequence[float]
) -> dict[str, float]:
    """h2d / compute / d2h milliseconds of one call from per-stream CUDA event times (ms since the
    call's start event; one entry per stream): ``h2d`` until the first stream can enqueue,
    ``compute`` from that first enqueue to the last stream's compute end, ``d2h`` from there to the
    last stream's output copied back. The three add up to the call's GPU time; with one stream they
    are the plain h2d / compute / d2h."""
    if not inputs_ready or not len(inputs_ready) == len(compute_done) == len(outputs_done):
        raise ValueError("one event time per stream for each phase")
    first = min(inputs_ready)
    last_compute = max(compute_done)
    return {"h2d": first, "compute": last_compute - first, "d2h": max(outputs_done) - last_compute}


def graph_summary(requested: bool, statuses: Sequence[str]) -> str:
    """``describe()``'s ``cuda_graph``: 'off', 'not captured yet', 'captured' (every shape so far),
    or the first failure ('failed: <reason>'; those shapes run as plain enqueues)."""
    if not requested:
        return "off"
    if not statuses:
        return "not captured yet"
    failed = [s for s in statuses if s != "captured"]
    return failed[0] if failed else "captured"


@dataclass
class _Slot:
    """One input shape on one stream: its context, static device buffers, pinned output, graph."""

    context: Any
    dev_in: Any
    dev_out: Any
    host_out: Any
    graph: Any = None
    status: str = ""  # with cuda_graph: 'captured' or 'failed: <reason>'


@dataclass
class _Lane:
    """One CUDA stream with its execution context (without CUDA graphs: shared by its shapes)."""

    stream: Any
    context: Any
    slots: dict[tuple[int, ...], _Slot] = field(default_factory=dict)
    bound: tuple[int, ...] | None = None  # the shape the shared context is set to


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(
        self,
        plan: str | os.PathLike[str],
        *,
        allow_host_code: bool | None = None,
        cuda_graph: bool = False,
        streams: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(cuda_graph, bool):
            raise ConfigError(f"cuda_graph must be True or False, got {cuda_graph!r}")
        self.streams = check_streams(streams)  # images per infer_timed / infer_streams call: batch x streams
        self.cuda_graph = cuda_graph
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
        self._lanes: list[_Lane] = []
        self._staging: dict[tuple[int, ...], Any] = {}  # pinned host input per shape, shared by the lanes

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
        import tensorrt as trt
        import torch

        self._engine, _ = load_engine(self.path, allow_host_code=self.allow_host_code)
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
        # One stream per lane; without CUDA graphs one context per stream (re-shaped per call as
        # needed), with them one context per (stream, shape), made when the shape is first seen.
        self._lanes = [
            _Lane(torch.cuda.Stream(), None if self.cuda_graph else self._new_context()) for _ in range(self.streams)
        ]
        self._staging = {}

    def _new_context(self) -> Any:
        context = self._engine.create_execution_context()
        if context is None:
            raise EngineError(f"TensorRT could not create an execution context for {self.path.name}")
        return context

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
        for lane in self._lanes:
            lane.stream.synchronize()  # nothing in flight may still use the buffers dropped here
            for slot in lane.slots.values():
                slot.graph = None  # graphs go before the contexts whose memory they point at
        self._lanes = []
        self._staging = {}
        self._engine = None

    def infer(self, batch: NDArray[Any]) -> NDArray[Any]:
        """Logits for ``batch``, on the first stream (the others stay idle)."""
        return self._run(batch, self._lanes[:1], timed=False)[0][0]

    def infer_streams(self, batch: NDArray[Any]) -> list[NDArray[Any]]:
        """The same batch on every stream at once, waiting for all: one logits array per stream."""
        return self._run(batch, self._lanes, timed=False)[0]

    def infer_timed(self, batch: NDArray[Any]) -> dict[str, float]:
        """``batch`` on every stream (``streams`` x batch images), timed by CUDA events:
        host-to-device until the first stream can enqueue, compute from that first enqueue (or
        graph replay) to the last stream's end, device-to-host after it (``stream_phases``)."""
        phases = self._run(batch, self._lanes, timed=True)[1]
        assert phases is not None
        return phases

    def warmup(self, batch_size: int = 1, iterations: int = 3) -> None:
        """Warm every stream (and capture its CUDA graph for this batch size)."""
        x = self.preprocess.zeros(batch_size)
        for _ in range(iterations):
            self.infer_streams(x)

    def _slot(self, lane: _Lane, shape: tuple[int, ...]) -> _Slot:
        """The lane's buffers (and context, and graph) for ``shape``, made on first use."""
        import torch

        slot = lane.slots.get(shape)
        if slot is not None:
            return slot
        context = self._new_context() if self.cuda_graph else lane.context
        if not context.set_input_shape(self._inputs[0], shape):
            raise EngineError(f"TensorRT refused input shape {shape}")
        out_shape = tuple(context.get_tensor_shape(self._outputs[0]))
        with torch.cuda.stream(lane.stream):  # allocated in the stream that uses them
            dev_in = torch.zeros(shape, dtype=self._in_dtype, device="cuda")
            dev_out = torch.zeros(out_shape, dtype=self._out_dtype, device="cuda")
        host_out = torch.empty(out_shape, dtype=self._out_dtype, pin_memory=True)
        slot = _Slot(context, dev_in, dev_out, host_out)
        self._bind(lane, slot, shape)
        if self.cuda_graph:
            self._capture(lane, slot)
        lane.slots[shape] = slot
        return slot

    def _bind(self, lane: _Lane, slot: _Slot, shape: tuple[int, ...]) -> None:
        """Shape and tensor addresses (a context shared by several shapes is re-set when its shape changes)."""
        if not slot.context.set_input_shape(self._inputs[0], shape):
            raise EngineError(f"TensorRT refused input shape {shape}")
        slot.context.set_tensor_address(self._inputs[0], slot.dev_in.data_ptr())
        slot.context.set_tensor_address(self._outputs[0], slot.dev_out.data_ptr())
        lane.bound = shape

    def _enqueue(self, lane: _Lane, slot: _Slot) -> None:
        if not slot.context.execute_async_v3(lane.stream.cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed")

    def _capture(self, lane: _Lane, slot: _Slot) -> None:
        """One warm-up enqueue, then capture the next one into a CUDA graph on the lane's stream
        (trtexec's IterationStd::createEnqueueFunction). TensorRT may refuse capture for some
        engines (execute_async_v3 returns False while capturing, or the capture is invalidated):
        the slot then keeps the plain enqueue, with the reason in ``slot.status``."""
        import torch

        with torch.cuda.stream(lane.stream):
            self._enqueue(lane, slot)  # TensorRT: enqueue once before capturing (deferred setup)
        lane.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        previous = torch.cuda.current_stream()
        try:
            # torch's capture runs cudaStreamBeginCapture/EndCapture on lane.stream, the stream
            # TensorRT enqueues on; thread-local mode as trtexec (other threads' CUDA calls are not
            # forbidden during capture).
            with torch.cuda.graph(graph, stream=lane.stream, capture_error_mode="thread_local"):
                if not slot.context.execute_async_v3(lane.stream.cuda_stream):
                    raise EngineError("execute_async_v3 returned False under stream capture")
        except (RuntimeError, EngineError) as e:
            slot.status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
            torch.cuda.set_stream(previous)  # a failed capture_end leaves torch's stream context entered
            lane.stream.synchronize()
            return
        slot.graph = graph
        slot.status = "captured"

    def _run(
        self, batch: NDArray[Any], lanes: list[_Lane], *, timed: bool
    ) -> tuple[list[NDArray[Any]], dict[str, float] | None]:
        """Copy ``batch`` to every lane, run it (graph replay or enqueue), copy the logits back, wait
        for all lanes; with ``timed`` the CUDA-event phases of the whole call (``stream_phases``)."""
        import torch

        x = self._check(batch)
        n = len(x)
        if not self._min <= n <= self._max:
            raise ConfigError(f"batch {n} is outside the engine's profile ({self._min}-{self._max})")
        shape = tuple(int(d) for d in x.shape)
        slots = [self._slot(lane, shape) for lane in lanes]  # setup and capture happen before timing
        staged = self._staging.get(shape)
        if staged is None:
            staged = self._staging[shape] = torch.empty(shape, dtype=self._in_dtype, pin_memory=True)
        staged.copy_(torch.from_numpy(x))  # the previous call has finished with it (synchronised)
        start = torch.cuda.Event(enable_timing=timed)
        marks = [[torch.cuda.Event(enable_timing=timed) for _ in range(3)] for _ in lanes]
        start.record(lanes[0].stream)
        for lane, slot, (ready, computed, copied) in zip(lanes, slots, marks, strict=True):
            stream = lane.stream
            stream.wait_event(start)  # every stream starts at the common start event
            with torch.cuda.stream(stream):
                slot.dev_in.copy_(staged, non_blocking=True)
                ready.record(stream)
                if slot.graph is not None:
                    slot.graph.replay()  # replays on the current stream: this lane's
                else:
                    if not self.cuda_graph and lane.bound != shape:  # the lane's shared context
                        self._bind(lane, slot, shape)
                    self._enqueue(lane, slot)
                computed.record(stream)
                slot.host_out.copy_(slot.dev_out, non_blocking=True)
                copied.record(stream)
        for _, _, copied in marks:
            copied.synchronize()
        outputs = [slot.host_out.to(torch.float32, copy=True).numpy() for slot in slots]
        phases = None
        if timed:
            since = [[start.elapsed_time(e) for e in lane_marks] for lane_marks in marks]
            phases = stream_phases(*([t[k] for t in since] for k in range(3)))
        return outputs, phases

    def describe(self) -> dict[str, Any]:
        statuses = [s.status for lane in self._lanes for s in lane.slots.values() if s.status]
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
            "streams": self.streams,
            "cuda_graph": graph_summary(self.cuda_graph, statuses),
            "cuda_graph_batches": {
                str(shape[0]): slot.status for shape, slot in (self._lanes[0].slots.items() if self._lanes else ())
            }
            if self.cuda_graph
            else {},
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
