"""Preprocessing inside the graph: a ``uint8-nhwc`` model takes raw RGB pixels.

``add_pixel_input`` wraps a finished toolkit ONNX (any precision) so its input ``input`` is
``uint8 [batch, H, W, 3]``, images already resized and center-cropped, and the graph does the rest:
``Cast -> Transpose(NHWC->NCHW) -> Mul(1 / (255 std)) -> Add(-mean / std)`` (and a Cast to fp16 for
fp16-input models), then the original network. Clients send a quarter of the bytes and no longer
need the normalisation constants. The wrapped file is verified against the float model on seeded
random pixels (the float model gets the same pixels normalised in numpy) before it is kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper, numpy_helper

from ._version import __version__
from .data import Preprocess
from .errors import ConfigError
from .metrics import FP32_TOLERANCE, ParityResult, Tolerance, judged_batch_sizes
from .onnx_io import FLOAT_NCHW, UINT8_NHWC, ArtifactMeta, load_onnx, save_checked
from .precisions import precision_spec
from .reports import Progress, Reporter, check_output_path, sha256_file, shown_path
from .runtime.onnxrt import OnnxRuntimeRunner
from .stage import Verification, write_verified

NORMALIZED = "input_normalized"  # the original network's input, now an internal tensor


@dataclass
class PixelInputReport:
    path: str
    source: str
    source_sha256: str
    precision: str
    input: dict[str, Any]
    sha256: str = ""
    file_size_bytes: int = 0
    parity: list[ParityResult] = field(default_factory=list)
    parity_passed: bool = False
    tolerance: str = ""
    written: bool = True
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "written": self.written,
            "source": self.source,
            "source_sha256": self.source_sha256,
            "precision": self.precision,
            "input_format": UINT8_NHWC,
            "input": self.input,
            "sha256": self.sha256,
            "file_size_bytes": self.file_size_bytes,
            "parity": {
                "reference": "the float-input ONNX on the same pixels normalised in numpy (onnxruntime CPU)",
                "passed": self.parity_passed,
                "tolerance": self.tolerance,
                "results": [p.to_dict() for p in self.parity],
            },
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


def default_output(src: Path) -> Path:
    """``resnet50.int8.onnx`` -> ``resnet50.int8.uint8-nhwc.onnx``."""
    return src.with_name(f"{src.name.removesuffix('.onnx')}.{UINT8_NHWC}.onnx")


def wrap_graph(model: onnx.ModelProto, pre: Preprocess) -> None:
    """Put the pixel preprocessing in front of ``model``'s single input, in place."""
    graph = model.graph
    if len(graph.input) != 1:
        raise ConfigError(f"expected a model with one input, got {len(graph.input)}")
    old = graph.input[0]
    name = old.name
    elem = old.type.tensor_type.elem_type
    if elem not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise ConfigError(f"the model's input is {TensorProto.DataType.Name(elem)}, not a float NCHW tensor")
    dims = old.type.tensor_type.shape.dim
    if len(dims) != 4 or int(dims[1].dim_value) != 3:
        raise ConfigError("the model's input is not [batch, 3, H, W]")
    batch: str | int = dims[0].dim_param or int(dims[0].dim_value)
    h, w = int(dims[2].dim_value), int(dims[3].dim_value)
    for node in graph.node:
        node.input[:] = [NORMALIZED if i == name else i for i in node.input]
    scale, bias = pre.scale_bias()
    graph.initializer.extend(
        [
            numpy_helper.from_array(scale.reshape(1, 3, 1, 1), "pixel_scale"),
            numpy_helper.from_array(bias.reshape(1, 3, 1, 1), "pixel_bias"),
        ]
    )
    last = NORMALIZED if elem == TensorProto.FLOAT else "pixels_fp32_normalized"
    nodes = [
        helper.make_node("Cast", [name], ["pixels_fp32"], name="pixels/cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels_fp32"], ["pixels_nchw"], name="pixels/nhwc_to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["pixels_nchw", "pixel_scale"], ["pixels_scaled"], name="pixels/scale"),
        helper.make_node("Add", ["pixels_scaled", "pixel_bias"], [last], name="pixels/normalize"),
    ]
    if elem == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", [last], [NORMALIZED], name="pixels/to_fp16", to=TensorProto.FLOAT16))
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(name, TensorProto.UINT8, [batch, h, w, 3]))


def add_pixel_input(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    tolerance: Tolerance | None = None,
    allow_mismatch: bool = False,
    progress: Progress | None = None,
) -> PixelInputReport:
    """A verified ``uint8-nhwc`` copy of the toolkit ONNX ``src`` (any precision), written atomically.

    Raises ``ParityError`` (nothing written) if it disagrees with ``src`` beyond ``tolerance``.
    Default: fp32's 1e-4 x max|logit| (both run the same network on the same numbers, and outputs
    are usually bit-identical); for an fp16-input model fp16's cosine >= 0.999, because ONNX Runtime
    may fuse the wrapper's fp32->fp16 Cast away and feed the first layer unrounded inputs."""
    say = Reporter(progress)
    t0 = time.perf_counter()
    src_path = Path(src)
    model = load_onnx(src_path)
    meta = ArtifactMeta.from_model(model)
    if not meta.is_toolkit:
        raise ConfigError(f"{src_path.name} was not exported by resnet-deploy (no model/preprocessing metadata)")
    if meta.input_format != FLOAT_NCHW:
        raise ConfigError(f"{src_path.name} already takes {meta['input_format']} input")
    default = default_output(src_path)
    out = check_output_path(dst if dst is not None else default, default.name)
    if out.resolve() == src_path.resolve():
        raise ConfigError(f"the pixel-input model would overwrite its source {src_path}: choose another path")
    pre = Preprocess.from_metadata(meta)
    if tolerance is None:
        fp16_input = model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
        tolerance = precision_spec("fp16").gate("random", meta.weights_trained) if fp16_input else FP32_TOLERANCE
    say("adding uint8 NHWC preprocessing to the graph")
    wrap_graph(model, pre)
    source_sha = sha256_file(src_path)
    updates = {
        "input_format": UINT8_NHWC,
        "input_dtype": "uint8",
        "input_layout": "NHWC",
        "pixel_source_sha256": source_sha,
        "toolkit_version": __version__,
    }
    (meta | updates).write_to(model)
    model.producer_name, model.producer_version = "resnet-deploy", __version__
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    report = PixelInputReport(
        path=shown_path(out),
        source=str(src_path.resolve()),
        source_sha256=source_sha,
        precision=meta.precision,
        input={
            "name": model.graph.input[0].name,
            "dtype": "uint8",
            "shape": [batch.dim_param or batch.dim_value, pre.crop[0], pre.crop[1], 3],
        },
        tolerance=tolerance.describe(),
    )

    def write(tmp: Path) -> None:
        save_checked(model, tmp, "pixel-input")
        model.Clear()
        say("comparing the pixel-input model with the float model")

    def failure(parity: list[ParityResult]) -> str:
        worst = max(parity, key=lambda r: r.diff_to_scale)
        return (
            f"the pixel-input model differs from {src_path.name}: max|diff| {worst.diff_to_scale:.3g} x "
            f"max|logit| (tolerance {tolerance.describe()})"
        )

    fixed = batch.dim_value if batch.HasField("dim_value") else None
    verification = Verification(
        reference=OnnxRuntimeRunner(src_path),
        tolerance=tolerance,
        step="pixel-input",
        described_as=f"float-input ONNX {src_path.name} (sha256 {source_sha[:12]}) on the same pixels, onnxruntime CPU",
        weights_trained=meta.weights_trained,
        failure=failure,
        keep="--allow-mismatch" if allow_mismatch else None,
        seed=seed,
        batch_sizes=judged_batch_sizes(fixed or None),
    )
    write_verified(out, report, write, verification)
    report.seconds = time.perf_counter() - t0
    return report
