"""torch's ONNX exporters, run quietly, and the graph clean-up after them.

Which exporter serves which opset (dynamo from 18, TorchScript for 13-20), the toolkit's tensor
names and dynamic axis, and the passes that make every export the same shape of graph (no
``Identity`` nodes, a named ``batch`` axis).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import onnx
import torch
from torch import nn

from .choices import Exporter as Exporter
from .errors import ConfigError, ExportError, MissingDependencyError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
DEFAULT_OPSET = 18


EXPORTERS = tuple(e.value for e in Exporter)
# The dynamo exporter emits opset >= 18 natively; below that torch's version converter is fragile,
# so "auto" picks the TorchScript exporter for opsets 13-17.
DYNAMO_MIN_OPSET = 18
TORCHSCRIPT_OPSETS = range(13, 21)
# ONNX Runtime 1.19+ and TensorRT 10.x read opsets up to 21/22; newer opsets need IR versions that
# deployment runtimes reject, so the toolkit stops at 22.
MAX_OPSET = 22


def pick_exporter(exporter: str, opset: int) -> str:
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    max_opset = min(onnx.defs.onnx_opset_version(), MAX_OPSET)
    if not 13 <= opset <= max_opset:
        raise ConfigError(
            f"opset {opset} is not supported: choose 13-{max_opset} (what ONNX Runtime and TensorRT 10 read)"
        )
    if exporter == "auto":
        exporter = "dynamo" if opset >= DYNAMO_MIN_OPSET else "torchscript"
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise ConfigError(
            f"the dynamo exporter emits opset >= {DYNAMO_MIN_OPSET}; use --exporter torchscript for opset {opset}"
        )
    if exporter == "torchscript" and opset not in TORCHSCRIPT_OPSETS:
        raise ConfigError(f"the TorchScript exporter supports opsets 13-20, not {opset}; use --exporter dynamo")
    return exporter


@contextlib.contextmanager
def quiet_torch_logs() -> Any:
    """torch's exporters log chatter (e.g. 'torchvision is not installed') on stderr; mute it."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def run_torch_exporter(
    model: nn.Module, sample: torch.Tensor, opset: int, exporter: str, dynamic: bool
) -> onnx.ModelProto:
    """Run one of torch's exporters quietly (they print and warn) and return the ModelProto."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad(), quiet_torch_logs():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            try:
                import onnxscript  # noqa: F401
            except ImportError:
                raise MissingDependencyError("onnxscript", purpose="torch's dynamo ONNX exporter") from None
            shapes = ({0: torch.export.Dim(BATCH_AXIS, min=1, max=65536)},) if dynamic else None
            program = torch.onnx.export(
                model,
                (sample,),
                None,
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_shapes=shapes,
                optimize=True,
                external_data=False,
            )
            if program is None:
                raise ExportError("torch.onnx.export returned no program")
            return program.model_proto
        buf = io.BytesIO()
        axes = {INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}} if dynamic else None
        torch.onnx.export(
            model,
            (sample,),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file-like objects too
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
        return onnx.load_from_string(buf.getvalue())


def remove_identity_nodes(graph: onnx.GraphProto) -> int:
    """Bypass every ``Identity`` node; returns how many were removed."""
    outputs = {o.name for o in graph.output}
    removed = 0
    for node in list(graph.node):
        if node.op_type != "Identity":
            continue
        src, dst = node.input[0], node.output[0]
        if dst in outputs:
            # Keep the graph output's name: let the producer of src write it directly.
            producers = [n for n in graph.node if src in n.output]
            if not producers or src in outputs or any(src in n.input for n in graph.node if n is not node):
                continue
            producer = producers[0]
            producer.output[list(producer.output).index(src)] = dst
        else:
            for n in graph.node:
                for i, name in enumerate(n.input):
                    if name == dst:
                        n.input[i] = src
        graph.node.remove(node)
        removed += 1
    return removed


def set_batch_dim(model: onnx.ModelProto, dynamic: bool) -> None:
    for value in [*model.graph.input, *model.graph.output]:
        dim0 = value.type.tensor_type.shape.dim[0]
        if dynamic:
            dim0.Clear()
            dim0.dim_param = BATCH_AXIS
