"""Precision lives in the ONNX graph (what TensorRT 10/11 strongly-typed builds need).

``to_fp16`` rewrites an FP32 ONNX from ``export_onnx`` so that weights and activations are FP16:
every float initializer, Constant and internal Cast, every float tensor type. Weights outside
FP16's range are clamped (and counted), tiny ones that underflow to zero are counted too. By
default the graph keeps FP32 ``input``/``logits`` with a Cast at each end, so clients do not change;
``keep_io_types=False`` makes the interface FP16 as well.

The result is checked (full ONNX checker) and run in ONNX Runtime against the FP32 source on
seeded inputs before it is kept, like the export itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, numpy_helper

from ._version import __version__
from .artifacts import load_onnx, save_checked
from .errors import ConfigError, DataError, ExportError, MissingDependencyError
from .parity import ParityResult, Tolerance, compare_outputs, refuse_or_keep
from .records import record_report
from .reports import atomic_path, check_output_path
from .weights import sha256_file

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)  # 2**-24
# FP16 keeps ~3 significant digits: judge by direction and ranking, not by a tight abs tolerance.
FP16_TOLERANCE = Tolerance(scale_rtol=2e-2, min_cosine=0.999)

Progress = Callable[[str], None]
Steps = Callable[[str, int, int], None]  # (stage, done, total): a counted stage, for progress bars


@dataclass
class PrecisionReport:
    """What a precision conversion produced, and how close it stays to its FP32 source."""

    path: str
    source: str
    precision: str
    io_dtype: str
    file_size_bytes: int = 0
    sha256: str = ""
    source_sha256: str = ""
    nodes_by_op: dict[str, int] = field(default_factory=dict)
    clamped_weights: int = 0  # |w| > 65504, clamped to +-65504
    underflowed_weights: int = 0  # 0 < |w| < 2**-24, became 0
    parity: list[ParityResult] = field(default_factory=list)
    parity_passed: bool = False
    tolerance: str = ""
    written: bool = True
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "written": self.written,
            "source": self.source,
            "precision": self.precision,
            "io_dtype": self.io_dtype,
            "file_size_bytes": self.file_size_bytes,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "num_nodes": sum(self.nodes_by_op.values()),
            "nodes_by_op": self.nodes_by_op,
            "clamped_weights": self.clamped_weights,
            "underflowed_weights": self.underflowed_weights,
            "parity": {
                "reference": "fp32 ONNX (onnxruntime CPU)",
                "passed": self.parity_passed,
                "tolerance": self.tolerance,
                "results": [p.to_dict() for p in self.parity],
            },
            "seconds": self.seconds,
            "warnings": self.warnings,
            **self.extra,
        }


def _judge(report: PrecisionReport, tmp: Path, tolerance: Tolerance, *, keep: str | None) -> None:
    """Record the file and the verdict; a failed comparison raises ParityError (nothing is written)
    unless ``keep`` names why the file is kept anyway."""
    report.parity_passed = all(r.passed for r in report.parity)
    report.file_size_bytes = tmp.stat().st_size
    report.sha256 = sha256_file(tmp)
    if report.parity_passed:
        return
    worst = min(report.parity, key=lambda r: r.cosine_min)
    message = (
        f"{report.precision} output differs from fp32 beyond tolerance ({tolerance.describe()}): cosine "
        f"{worst.cosine_min:.6f}, top-1 agreement {worst.top1_agreement:.0%}, max|diff| "
        f"{worst.diff_to_scale:.3g} x max|logit|"
    )
    refuse_or_keep(report, message, keep)


def _write_record(report: PrecisionReport, meta: dict[str, str]) -> None:
    """The parity record beside the written file (what ``ship`` requires)."""
    record_report(
        report.path,
        report,
        step="convert",
        reference=f"fp32 ONNX {Path(report.source).name} (sha256 {report.source_sha256[:12]}), onnxruntime CPU",
        weights_trained=meta.get("weights_trained", "true") == "true",
    )


def graph_precision(model: onnx.ModelProto) -> str:
    """'int8' if the graph quantizes, else 'fp16' if its Conv weights are FP16, else 'fp32'."""
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops or "QLinearConv" in ops:
        return "int8"
    inits = {t.name: t.data_type for t in model.graph.initializer}
    conv_types = {inits.get(n.input[1]) for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1}
    return "fp16" if TensorProto.FLOAT16 in conv_types else "fp32"


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


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _set_metadata(model: onnx.ModelProto, updates: dict[str, str]) -> None:
    meta = _metadata(model) | updates
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


def _open_fp32_source(
    src: Path, dst: str | os.PathLike[str] | None, precision: str, *, load_weights: bool
) -> tuple[onnx.ModelProto, Path, dict[str, str]]:
    """The fp32 toolkit ONNX a conversion starts from, the checked output path, and its metadata."""
    model = load_onnx(src, load_weights=load_weights)
    default = default_output(src, precision)
    out = check_output_path(dst if dst is not None else default, default.name)
    current = graph_precision(model)
    if current != "fp32":
        raise ConfigError(
            f"{src.name} is already {current}: converting to {precision} takes an fp32 ONNX "
            "(export it with --precision fp32)"
        )
    if out.resolve() == src.resolve():
        raise ConfigError(f"the {precision} output would overwrite its source {src}: choose another path")
    meta = _metadata(model)
    if "model" not in meta or "image_size" not in meta:
        raise ConfigError(
            f"{src.name} was not exported by resnet-deploy (no model/preprocessing metadata): "
            "export it with 'resnet-deploy export' first"
        )
    if meta.get("input_format", "float32-nchw") != "float32-nchw":
        raise ConfigError(
            f"{src.name} takes {meta['input_format']} input: convert its float-input model, then add the pixel "
            "input (export --precision P --input-format uint8-nhwc does both)"
        )
    return model, out, meta


def default_output(src: Path, precision: str) -> Path:
    """``resnet50.onnx`` -> ``resnet50.fp16.onnx`` (STYLE's artifact names)."""
    stem = src.name.removesuffix(".onnx")
    for p in (".fp32", ".fp16", ".int8"):
        stem = stem.removesuffix(p)
    return src.with_name(f"{stem}.{precision}.onnx")


def fixed_batch(path: Path) -> int | None:
    """The batch size an ONNX file is pinned to, or None for a dynamic batch axis."""
    dim = load_onnx(path, load_weights=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def run_onnx(path: Path, x: NDArray[Any], threads: int | None = None) -> NDArray[Any]:
    """Logits of a toolkit ONNX file in ONNX Runtime on the CPU (fixed batches handled by the runner)."""
    from .runtime.onnxrt import OnnxRuntimeRunner

    with OnnxRuntimeRunner(path, threads=threads) as runner:
        return runner.infer_all(x)


def _parity_inputs(meta: dict[str, str], seed: int, batch_sizes: tuple[int, ...]) -> list[NDArray[Any]]:
    h, w = (int(v) for v in meta.get("image_size", "224x224").split("x"))
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, 3, h, w)).astype(np.float32) for b in batch_sizes]


def _batch_sizes(meta: dict[str, str]) -> tuple[int, ...]:
    fixed = meta.get("batch", "dynamic")
    return (int(fixed),) if fixed.isdigit() else (1, 3)


def to_fp16(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    keep_io_types: bool = True,
    tolerance: Tolerance = FP16_TOLERANCE,
    allow_mismatch: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> PrecisionReport:
    """FP32 ONNX (from ``export_onnx``) -> FP16 ONNX, checked and compared with the source."""
    say = progress or (lambda _stage: None)
    t0 = time.perf_counter()
    src_path = Path(src)
    model, out, meta = _open_fp32_source(src_path, dst, "fp16", load_weights=True)
    say("converting to fp16")
    clamped, under = convert_graph_to_fp16(model, keep_io_types=keep_io_types)
    io_dtype = "float32" if keep_io_types else "float16"
    _set_metadata(
        model,
        {
            "precision": "fp16",
            "input_dtype": io_dtype,
            "output_dtype": io_dtype,
            "fp16_clamped_weights": str(clamped),
            "source_precision": "fp32",
            "source_sha256": sha256_file(src_path),
            "toolkit_version": __version__,
        },
    )
    model.producer_name, model.producer_version = "resnet-deploy", __version__
    report = PrecisionReport(
        path=str(out.resolve()),
        source=str(src_path.resolve()),
        precision="fp16",
        io_dtype=io_dtype,
        source_sha256=sha256_file(src_path),
        clamped_weights=clamped,
        underflowed_weights=under,
        nodes_by_op=dict(sorted(Counter(n.op_type for n in model.graph.node).items(), key=lambda kv: (-kv[1], kv[0]))),
        tolerance=tolerance.describe(),
    )
    if clamped:
        report.warnings.append(f"{clamped} weight value(s) outside the fp16 range were clamped to +-{FP16_MAX:g}")
    with atomic_path(out) as tmp:
        save_checked(model, tmp, "fp16")
        del model
        say("comparing fp16 with fp32 in ONNX Runtime")
        for x in _parity_inputs(meta, seed, _batch_sizes(meta)):
            report.parity.append(compare_outputs(run_onnx(src_path, x), run_onnx(tmp, x), tolerance))
        _judge(report, tmp, tolerance, keep="--allow-mismatch" if allow_mismatch else None)
    report.seconds = {"total": round(time.perf_counter() - t0, 3)}
    _write_record(report, meta)
    return report


# ------------------------------------------------------------------------------------------ INT8

INT8_RECIPES = ("tensorrt", "cpu")
CALIB_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIB_COUNT = 512
# Judged on real images: the int8 model must still point the same way as fp32.
INT8_TOLERANCE = Tolerance(scale_rtol=None, min_cosine=0.95)
CACHE_ENV = "RESNET_DEPLOY_CACHE"


HELD_OUT = 32  # images read beyond the calibration set to compare int8 with fp32 on unseen data


@dataclass
class CalibrationSet:
    """Preprocessed calibration inputs and where they came from."""

    inputs: NDArray[Any]  # float32 [n, 3, H, W]
    source: str  # a folder, "array" or "random"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    held_out: NDArray[Any] | None = None  # images not used for calibration, for the parity check

    @property
    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(np.ascontiguousarray(self.inputs, dtype=np.float32).tobytes()).hexdigest()


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over in-memory batches, with ``set_range`` so
    that calibration runs one batch at a time (``CalibStridedMinMax``): ranges and histograms are
    merged batch by batch instead of holding every activation of every image in memory (~100 MB
    per ResNet-50 image). (ORT's own ``CalibMaxIntermediateOutputs`` drops data with MinMax.)"""

    def __init__(self, inputs: NDArray[Any], input_name: str, batch_size: int, progress: Steps) -> None:
        self._batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
        self._name = input_name
        self._start, self._end, self._i = 0, len(self._batches), 0
        self._progress = progress
        self._total = len(inputs)
        self._seen = 0

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end, self._i = start_index, min(end_index, len(self._batches)), start_index

    def get_next(self) -> dict[str, NDArray[Any]] | None:
        if self._i >= self._end:
            return None
        batch = self._batches[self._i]
        self._i += 1
        self._seen = min(self._seen + len(batch), self._total)
        self._progress("calibrating", self._seen, self._total)
        return {self._name: batch}

    def __len__(self) -> int:
        return len(self._batches)


def load_calibration(
    calibration: str | os.PathLike[str] | NDArray[Any],
    meta: dict[str, str],
    *,
    count: int = DEFAULT_CALIB_COUNT,
    seed: int = 0,
    steps: Steps | None = None,
) -> CalibrationSet:
    """Calibration inputs from an image folder (preprocessed as the model's metadata says), an
    array of already-preprocessed inputs, or ``"random"`` (seeded noise: the accuracy is meaningless)."""
    from .data import Preprocess, list_images, load_image

    step = steps or (lambda _stage, _done, _total: None)
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise ConfigError(f"calibration count must be a positive integer, got {count}")
    pre = Preprocess.from_metadata(meta)
    if isinstance(calibration, np.ndarray):
        arr = np.asarray(calibration, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[1:] != (3, *pre.crop) or len(arr) == 0:
            raise ConfigError(f"calibration array must be [n, 3, {pre.crop[0]}, {pre.crop[1]}], got {arr.shape}")
        return CalibrationSet(arr[:count], "array")
    text = os.fspath(calibration)
    if text.strip().lower() == "random":
        rng = np.random.default_rng(seed)
        n = min(count, 64)
        return CalibrationSet(rng.standard_normal((n, 3, *pre.crop)).astype(np.float32), "random")
    files = list_images(text)  # DataError for a missing folder
    if not files:
        raise DataError(f"no images ({', '.join(('.jpg', '.jpeg', '.png', '.webp', '.bmp'))}) in {text}")
    # A seeded sample across the whole folder (not the first files in sorted order, which on an
    # ImageNet-style tree would be the first few classes); the next images are held out.
    order = np.random.default_rng(seed).permutation(len(files))
    skipped: list[tuple[str, str]] = []
    rows: list[NDArray[Any]] = []
    extra: list[NDArray[Any]] = []
    want = min(count, len(files))
    for k in order:
        if len(rows) >= count and len(extra) >= HELD_OUT:
            break
        try:
            x = pre(load_image(files[k]))
        except DataError as e:
            if len(rows) < count:
                skipped.append((str(files[k]), str(e)))
            continue
        if len(rows) < count:
            rows.append(x)
            step("reading calibration images", len(rows), want)
        else:
            extra.append(x)
    if not rows:
        raise DataError(f"none of the {len(files)} image files in {text} could be read ({skipped[0][1]})")
    held = np.stack(extra) if extra else None
    return CalibrationSet(np.stack(rows), str(Path(text).resolve()), skipped, held)


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "resnet-deploy"
    )
    return Path(root) / "calibration"


def strip_branch_qdq(model: onnx.ModelProto) -> int:
    """TensorRT's placement for residual blocks: keep Q/DQ on the *residual* input of each Add and
    remove it from the input that a Conv produces, so TensorRT fuses that Conv + Add (+ ReLU) into
    one INT8 kernel (NVIDIA's Q/DQ placement guide; ModelOpt does the same). A Q/DQ pair on the
    conv branch would force the conv and the add apart. Where both inputs come from convolutions
    (a projection shortcut), the main branch is the one computed later. Returns the pairs removed."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    index = {id(n): i for i, n in enumerate(graph.node)}
    consumers: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            consumers[name] = consumers.get(name, 0) + 1
    removed = 0
    for add in [n for n in graph.node if n.op_type == "Add"]:
        branches: list[tuple[int, int, onnx.NodeProto, onnx.NodeProto, onnx.NodeProto]] = []
        for k, name in enumerate(add.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            conv = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if dq is not None and q is not None and conv is not None and conv.op_type == "Conv":
                act = producer.get(conv.input[0])
                branches.append((index[id(act)] if act is not None else -1, k, dq, q, conv))
        if not branches:
            continue
        _, k, dq, q, conv = max(branches, key=lambda b: b[0])  # the main branch: computed last
        add.input[k] = conv.output[0]
        consumers[dq.output[0]] -= 1
        if consumers[dq.output[0]] == 0:
            graph.node.remove(dq)
            consumers[q.output[0]] -= 1
            if consumers[q.output[0]] == 0:
                graph.node.remove(q)
        removed += 1
    used = {name for n in graph.node for name in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    return removed


def _prepare_cache(enabled: bool, key: str) -> tuple[Path | None, str, str | None]:
    """(path or None, "hit" | "miss" | "off", a warning). An unusable cache never stops a run: a
    corrupt entry is deleted and recomputed, an unwritable folder turns caching off."""
    if not enabled:
        return None, "off", None
    folder = _cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, "off", f"calibration cache disabled: cannot use {folder} ({e.strerror}); set {CACHE_ENV}"
    path = folder / f"{key}.json"
    if not path.is_file():
        return path, "miss", None
    try:
        import json

        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        path.unlink(missing_ok=True)
        return path, "miss", f"calibration cache entry {path} was unreadable ({e}); recomputed"
    return path, "hit", None


def _ort_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise MissingDependencyError("onnxruntime", purpose="INT8 quantization") from None
    return quantization


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | NDArray[Any] | CalibrationSet = "random",
    *,
    recipe: str = "tensorrt",
    method: str = "entropy",
    percentile: float = 99.999,
    count: int = DEFAULT_CALIB_COUNT,
    batch_size: int = 8,
    cache: bool = True,
    tolerance: Tolerance = INT8_TOLERANCE,
    allow_mismatch: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    steps: Steps | None = None,
) -> PrecisionReport:
    """FP32 ONNX -> INT8 ONNX with explicit QuantizeLinear/DequantizeLinear pairs.

    ``recipe="tensorrt"``: signed int8 activations and weights, all zero points 0 (symmetric),
    per-channel weight scales on the output-channel axis, Q/DQ on both inputs of every residual Add
    (what TensorRT 10/11 needs to build and fuse conv+add+relu in INT8). ``recipe="cpu"``: uint8
    activations x int8 per-channel weights, ONNX Runtime's fast x86 path. Calibration ranges are
    cached by model hash, inputs and method, so the same run twice calibrates once.
    """
    say = progress or (lambda _stage: None)
    t0 = time.perf_counter()
    if recipe not in INT8_RECIPES:
        raise ConfigError(f"unknown int8 recipe {recipe!r}: choose one of {', '.join(INT8_RECIPES)}")
    if method not in CALIB_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIB_METHODS)}")
    if method == "percentile" and not 90.0 <= percentile < 100.0:
        raise ConfigError(f"percentile {percentile} must be in [90, 100)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"calibration batch size must be a positive integer, got {batch_size}")
    src_path = Path(src)
    model, out, meta = _open_fp32_source(src_path, dst, "int8", load_weights=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ConfigError(
            f"{src_path.name} has opset {opset}: per-channel Q/DQ needs opset >= 13 (re-export with --opset 13 or newer)"
        )
    input_name = model.graph.input[0].name
    del model

    step = steps or (lambda _stage, _done, _total: None)
    calib = (
        calibration
        if isinstance(calibration, CalibrationSet)
        else load_calibration(calibration, meta, count=count, seed=seed, steps=step)
    )
    source_sha = sha256_file(src_path)
    q = _ort_quantization()
    method_enum = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[method]
    # The recipe is part of the key: it decides which tensors get calibrated.
    key_parts = [source_sha, recipe, method, f"{percentile:g}" if method == "percentile" else "", calib.digest]
    import hashlib

    cache_key = hashlib.sha256("|".join(key_parts).encode()).hexdigest()[:32]
    cache_path, cache_state, cache_note = _prepare_cache(cache, cache_key)

    symmetric = recipe == "tensorrt"
    extra: dict[str, Any] = {
        "ActivationSymmetric": symmetric,
        "WeightSymmetric": True,
        "CalibStridedMinMax": 1,  # one batch per collection step (see _Reader)
        "CalibPercentile": percentile,
        # The logits stay float: quantizing the classifier's output would round them to 256
        # levels and create top-k ties.
        "OpTypesToExcludeOutputQuantization": ["Gemm"],
    }
    if recipe == "tensorrt":
        # TensorRT's placement: Q/DQ on the inputs of weighted layers (activation and weight) and
        # on both inputs of each residual Add, none on a Conv's output before its ReLU: TensorRT
        # fuses Conv + (Add) + ReLU and quantizes the fused output for the next layer's Q/DQ.
        extra["OpTypesToExcludeOutputQuantization"] = ["Conv", "Gemm", "Add"]
        # Biases stay float: TensorRT adds them in float after the int8 GEMM and has no INT32
        # DequantizeLinear (ONNX Runtime's default would emit int32 bias + DQ).
        extra["QuantizeBias"] = False
    inputs = calib.inputs
    pinned = fixed_batch(src_path)
    if pinned is not None:  # a fixed-batch model only runs whole batches of its size
        batch_size = pinned
        if len(inputs) < pinned:
            inputs = np.concatenate([inputs, np.resize(inputs, (pinned - len(inputs), *inputs.shape[1:]))])
        else:
            inputs = inputs[: len(inputs) - len(inputs) % pinned]
    reader = _Reader(inputs, input_name, batch_size, step)
    say(f"quantizing ({recipe} recipe, {method} calibration on {len(inputs)} inputs)")
    import logging

    qlog = logging.getLogger()
    old_level = qlog.level
    with atomic_path(out) as tmp:
        try:
            qlog.setLevel(logging.ERROR)  # ORT's quantizer logs pre-processing advice as warnings
            sink = io.StringIO()  # and prints histogram progress on stdout, which --json must keep clean
            with contextlib.redirect_stdout(sink):
                q.quantize_static(
                    str(src_path),
                    str(tmp),
                    reader,
                    quant_format=q.QuantFormat.QDQ,
                    op_types_to_quantize=["Conv", "Gemm", "Add", "MaxPool"] if recipe == "tensorrt" else None,
                    per_channel=True,
                    reduce_range=False,
                    activation_type=q.QuantType.QInt8 if symmetric else q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    calibrate_method=method_enum,
                    extra_options=extra,
                    calibration_cache_path=str(cache_path) if cache_path is not None else None,
                )
        except (ValueError, RuntimeError, KeyError) as e:
            raise ExportError(f"onnxruntime quantization failed: {str(e).splitlines()[0]}") from e
        finally:
            qlog.setLevel(old_level)
        qmodel = onnx.load(str(tmp))
        stripped = strip_branch_qdq(qmodel) if recipe == "tensorrt" else 0
        _set_metadata(
            qmodel,
            {
                "precision": "int8",
                "int8_recipe": recipe,
                "calibration_method": method,
                "calibration_count": str(len(inputs)),
                "calibration_source": calib.source,
                "source_precision": "fp32",
                "source_sha256": source_sha,
                "toolkit_version": __version__,
            },
        )
        qmodel.producer_name, qmodel.producer_version = "resnet-deploy", __version__
        nodes = Counter(n.op_type for n in qmodel.graph.node)
        save_checked(qmodel, tmp, "int8")
        del qmodel
        report = PrecisionReport(
            path=str(out.resolve()),
            source=str(src_path.resolve()),
            precision="int8",
            io_dtype="float32",
            source_sha256=source_sha,
            nodes_by_op=dict(sorted(nodes.items(), key=lambda kv: (-kv[1], kv[0]))),
            tolerance=tolerance.describe(),
        )
        report.extra["recipe"] = recipe
        report.extra["residual_branch_qdq_removed"] = stripped
        report.extra["calibration"] = {
            "source": calib.source,
            "count": len(inputs),
            "method": method,
            "percentile": percentile if method == "percentile" else None,
            "skipped": len(calib.skipped),
            "skipped_files": [{"path": p, "reason": r} for p, r in calib.skipped[:20]],
            "cache": cache_state,
            "cache_path": str(cache_path) if cache_path else None,
        }
        if cache_note:
            report.warnings.append(cache_note)
        if calib.source == "random":
            report.warnings.append(
                "calibrated on random noise (--calib random): the int8 ranges, and so its accuracy, are meaningless"
            )
        if calib.skipped:
            report.warnings.append(
                f"skipped {len(calib.skipped)} unreadable calibration file(s), e.g. {calib.skipped[0][0]}"
            )
        say("comparing int8 with fp32 in ONNX Runtime")
        held_out = calib.held_out
        held = held_out is not None and len(held_out) > 0
        x = held_out if held_out is not None and held else calib.inputs[: min(len(calib.inputs), HELD_OUT)]
        report.extra["parity_inputs"] = (
            f"{len(x)} held-out images" if held else f"{len(x)} calibration inputs (no images left to hold out)"
        )
        if meta.get("weights_trained") == "true" and tolerance.min_top1_agreement is None:
            # Trained weights make confident predictions: int8 must keep (almost all of) them.
            tolerance = Tolerance(tolerance.scale_rtol, tolerance.min_cosine, 0.9)
            report.tolerance = tolerance.describe()
        report.parity.append(compare_outputs(run_onnx(src_path, x), run_onnx(tmp, x), tolerance))
        keep = "--allow-mismatch" if allow_mismatch else ("random calibration" if calib.source == "random" else None)
        _judge(report, tmp, tolerance, keep=keep)
    report.seconds = {"total": round(time.perf_counter() - t0, 3)}
    _write_record(report, meta)
    return report
