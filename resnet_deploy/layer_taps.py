"""Every reported module's output, read from an ONNX file or from the PyTorch model.

``OnnxTaps`` makes each module's tensor (``layer_names.module_outputs``: the dequantized value
where a Q/DQ pair follows) an extra graph output of an in-memory copy of the ONNX, as Polygraphy's
``--onnx-outputs`` does: its element type from shape inference, else from its producer (a
DequantizeLinear yields its scale's type, other ops their first input's). It runs in an ONNX
Runtime CPU session with an explicit thread count. A marked tensor is kept as the graph computes
it, so ONNX Runtime fuses less around it (an int8 conv runs as DQ -> Conv, not one QLinearConv):
the values are those of the graph's own Q/DQ arithmetic.

``TorchTaps`` is the PyTorch model rebuilt from an artifact's metadata, BatchNorm folded as export
folds it (so a conv's output is the folded conv's), read with forward hooks.

Both take a batch and return ``({module: output}, logits)``; ``layers.compare_layers`` compares them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from .data import Preprocess
from .errors import ConfigError, EngineError
from .fold import fold_batchnorm
from .layer_names import module_outputs, recorded_layers
from .onnx_io import ArtifactMeta, load_onnx
from .reports import sha256_file
from .runtime.onnxrt import has_fp16_qdq, session_options
from .runtime.pyt import TorchRunner
from .runtime.registry import artifact_kind


class OnnxTaps:
    """An ONNX file run with every reported module's tensor as an extra output."""

    def __init__(self, path: str | os.PathLike[str], role: str) -> None:
        self.path = Path(path)
        kind = artifact_kind(self.path)
        if kind != "onnx":
            raise ConfigError(not_onnx(self.path, kind, role))
        self.model = load_onnx(self.path)
        self.metadata = ArtifactMeta.from_model(self.model)
        self.layers = recorded_layers(self.model)
        if not self.layers:
            raise ConfigError(
                f"{self.path.name} records no layer names (exported by another tool or an older resnet-deploy): "
                "re-export it with 'resnet-deploy export' (and convert it again) to compare its layers"
            )
        outputs = module_outputs(self.model)
        missing = [m for m in self.layers if m not in outputs]
        if missing:
            raise ConfigError(
                f"{self.path.name} lists layers its graph has no node for ({', '.join(missing[:3])}): "
                "re-export it with 'resnet-deploy export'"
            )
        self.tensors = {m: outputs[m] for m in self.layers}
        self.preprocess = Preprocess.from_metadata(self.metadata)
        dim = self.model.graph.input[0].type.tensor_type.shape.dim[0]
        self.fixed = dim.dim_value if dim.HasField("dim_value") else None
        self.session: Any = None

    def open(self, threads: int) -> None:
        _mark_outputs(self.model, list(self.tensors.values()))
        opts = session_options(threads, has_fp16_qdq(self.model))  # (raises if onnxruntime is missing)
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(
                self.model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime cannot load {self.path.name}: {str(e).splitlines()[0][:300]}") from None
        del self.model  # the session holds its own copy
        self.names = [o.name for o in self.session.get_outputs()]
        inp = self.session.get_inputs()[0]
        self.input = inp.name
        self.dtype = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(inp.type, np.float32)

    def run(self, x: NDArray[Any]) -> tuple[dict[str, NDArray[Any]], NDArray[Any]]:
        """Each module's output and the logits (the graph's first output) for the batch ``x``."""
        size = self.fixed or len(x)
        parts: list[list[NDArray[Any]]] = []
        for i in range(0, len(x), size):
            chunk = x[i : i + size]
            n = len(chunk)
            if n < size:  # a fixed batch: pad by repeating the last input, then drop the padding
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
            got = self.session.run(None, {self.input: np.ascontiguousarray(chunk, dtype=self.dtype)})
            parts.append([np.asarray(v)[:n] for v in got])
        values = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self.names)}
        return {m: values[t] for m, t in self.tensors.items()}, values[self.names[0]]

    def describe(self) -> dict[str, Any]:
        return {
            "runner": "onnxruntime",
            "path": str(self.path),
            "precision": self.metadata.precision,
            "model": self.metadata.model,
            "sha256": sha256_file(self.path),
        }


def not_onnx(path: Path, kind: str, role: str) -> str:
    if kind == "plan":
        import importlib.util

        absent = "" if importlib.util.find_spec("tensorrt") else " (and TensorRT is not installed here)"
        return (
            f"--layers needs an ONNX {role}: {path.name} is a TensorRT plan, whose fused layers have no "
            f"per-module outputs{absent}; compare the ONNX it was built from"
        )
    if role == "reference":
        return f"--layers compares with 'torch' or a toolkit ONNX, not {path.name}"
    return f"--layers needs an ONNX candidate exported by resnet-deploy, not {path.name}"


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Every tensor's element type: shape inference, then each untyped one from its producer
    (a DequantizeLinear yields its scale's type, other ops their first input's)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
        infos = [*inferred.value_info, *inferred.input, *inferred.output]
    except Exception:  # shape inference is a help here, not a requirement
        infos = [*model.graph.value_info, *model.graph.input, *model.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in infos if v.type.tensor_type.elem_type}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "Constant":
            types.update({o: a.t.data_type for o in node.output for a in node.attribute if a.name == "value"})
    for node in model.graph.node:  # topological order: inputs are typed before their readers
        source = node.input[1] if node.op_type == "DequantizeLinear" and len(node.input) > 1 else None
        source = source or (node.input[0] if node.input else None)
        for out in node.output:
            if out not in types and source in types:
                types[out] = types[source]
    return types


def _mark_outputs(model: onnx.ModelProto, tensors: Sequence[str]) -> None:
    """In place: make ``tensors`` graph outputs too (the graph's own outputs stay first)."""
    present = {o.name for o in model.graph.output}
    types = _elem_types(model)
    for name in dict.fromkeys(tensors):
        if name in present:
            continue
        if name not in types:
            raise ConfigError(f"cannot tell the element type of the tensor {name!r}: re-export the model")
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))


class TorchTaps:
    """The PyTorch model rebuilt from the candidate's metadata, BatchNorm folded as export folds
    it (so a conv's output is the folded conv's), read with forward hooks."""

    def __init__(self, meta: ArtifactMeta, weights: str | None, pre: Preprocess, layers: Sequence[str]) -> None:
        runner = TorchRunner.from_metadata(meta, weights=weights, preprocess=pre)
        self.description = runner.describe()
        self.preprocess = runner.preprocess
        self.net = fold_batchnorm(runner.model)
        self.modules = dict(self.net.named_modules())
        self.layers = [m for m in layers if m in self.modules]
        self.captured: dict[str, NDArray[Any]] = {}

    def open(self, threads: int) -> None:
        def hook(name: str) -> Any:
            def keep(_module: Any, _inputs: Any, output: Any) -> None:
                # a copy: the ReLU after a conv runs in place on the conv's output
                self.captured[name] = output.detach().float().cpu().numpy().copy()

            return keep

        for name in self.layers:
            self.modules[name].register_forward_hook(hook(name))
        self.threads = threads

    def run(self, x: NDArray[Any]) -> tuple[dict[str, NDArray[Any]], NDArray[Any]]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            self.captured = {}
            with torch.inference_mode():
                logits = self.net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()
        finally:
            torch.set_num_threads(before)
        captured, self.captured = self.captured, {}
        return captured, logits

    def describe(self) -> dict[str, Any]:
        return {**self.description, "batchnorm": "folded"}
