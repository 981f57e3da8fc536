"""The fp16 graph rewrite: every float tensor of an ONNX becomes FP16.

Used by ``precision.to_fp16`` (a whole fp16 model) and ``qdq.to_fp16_remainder`` (the tensors
between an int8 graph's Q/DQ pairs). Weights outside FP16's range are clamped and counted; tiny
ones that underflow to zero are counted too. ``keep_io_types`` keeps FP32 graph inputs and outputs
with a Cast at each end, so clients do not change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, numpy_helper

from .errors import ExportError

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)  # 2**-24


def _fp16_array(arr: NDArray[Any]) -> tuple[NDArray[Any], int, int]:
    a = arr.astype(np.float64)
    clamped = int(np.count_nonzero(np.abs(a) > FP16_MAX))
    under = int(np.count_nonzero((a != 0) & (np.abs(a) < FP16_TINY / 2)))
    return np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16), clamped, under


def convert_graph_to_fp16(model: onnx.ModelProto, *, keep_io_types: bool = True) -> tuple[int, int]:
    """In place: every float tensor of ``model`` becomes FP16. Returns (clamped, underflowed)."""
    graph = model.graph
    clamped = under = 0
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            arr, c, u = _fp16_array(numpy_helper.to_array(init))
            clamped, under = clamped + c, under + u
            graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                arr, c, u = _fp16_array(numpy_helper.to_array(attr.t))
                clamped, under = clamped + c, under + u
                attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            if attr.type == onnx.AttributeProto.GRAPH:
                raise ExportError(f"to_fp16 does not handle subgraphs ({node.op_type} node {node.name!r})")
    for value in graph.value_info:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16

    io_type = TensorProto.FLOAT if keep_io_types else TensorProto.FLOAT16
    init_names = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name in init_names or value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        value.type.tensor_type.elem_type = io_type
        if keep_io_types:  # input (fp32) -> Cast -> input_fp16 -> the graph
            inner = f"{value.name}_fp16"
            for node in graph.node:
                for j, name in enumerate(node.input):
                    if name == value.name:
                        node.input[j] = inner
            graph.node.insert(
                0,
                onnx.helper.make_node(
                    "Cast", [value.name], [inner], name=f"{value.name}_to_fp16", to=TensorProto.FLOAT16
                ),
            )
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        value.type.tensor_type.elem_type = io_type
        if keep_io_types:  # the graph -> logits_fp16 -> Cast -> logits (fp32)
            inner = f"{value.name}_fp16"
            for node in graph.node:
                for j, name in enumerate(node.output):
                    if name == value.name:
                        node.output[j] = inner
                for j, name in enumerate(node.input):
                    if name == value.name:
                        node.input[j] = inner
            graph.node.append(
                onnx.helper.make_node("Cast", [inner], [value.name], name=f"{value.name}_to_fp32", to=TensorProto.FLOAT)
            )
    return clamped, under
