"""Precision lives in the ONNX graph (what TensorRT 10/11 strongly-typed builds need).

``to_fp16`` rewrites an FP32 ONNX from ``export_onnx`` so that weights and activations are FP16:
every float initializer, Constant and internal Cast, every float tensor type. Weights outside
FP16's range are clamped (and counted), tiny ones that underflow to zero are counted too. By
default the graph keeps FP32 ``input``/``logits`` with a Cast at each end, so clients do not change;
``keep_io_types=False`` makes the interface FP16 as well.

``quantize_int8`` inserts explicit QuantizeLinear/DequantizeLinear pairs (ONNX Runtime's
quantizer, calibrated by ``calibration.py``), placed as TensorRT needs them.

Both write through ``stage.write_verified``: checked, compared in ONNX Runtime with the FP32
source on the same inputs, kept or refused, recorded. ``CONVERTERS`` maps each precision of the
registry (``precisions.py``) to its transform; ``convert`` dispatches.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from ._version import __version__
from .calibration import (  # noqa: F401  (re-exported: the precision API's names)
    CACHE_ENV,
    CALIB_METHODS,
    DEFAULT_CALIB_COUNT,
    HELD_OUT,
    CalibMethod,
    CalibrationSet,
    Steps,
    _Reader,
    load_calibration,
    prepare_cache,
)
from .choices import Int8Recipe as Int8Recipe
from .errors import ConfigError, ExportError, MissingDependencyError, ParityError
from .fp16 import FP16_MAX, FP16_TINY, convert_graph_to_fp16  # noqa: F401  (re-exported)
from .metrics import MIN_JUDGED_SAMPLES, ParityResult, Tolerance, describe_parity, judged_batch_sizes
from .onnx_io import (
    FLOAT_NCHW,
    ArtifactMeta,
    fixed_batch,
    graph_precision,
    load_onnx,
    ops_by_count,
    opset_of,
    save_checked,
)
from .precisions import Precision, precision_spec, precision_suffixes
from .qdq import Int8Layout, strip_branch_qdq
from .reports import Progress, Reporter, check_output_path, owned_scratch, sha256_file, shown_path
from .runtime.onnxrt import OnnxRuntimeRunner
from .sensitivity import DEFAULT_MAX_EXCLUDED, SENSITIVITY_METHODS, auto_exclude
from .stage import Verification, write_verified

FP16_TOLERANCE = precision_spec(Precision.fp16).convert_tolerance  # trained weights' gates
INT8_TOLERANCE = precision_spec(Precision.int8).convert_tolerance


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


def _verification(
    src: Path, meta: ArtifactMeta, precision: str, tolerance: Tolerance, keep: str | None, **inputs: Any
) -> Verification:
    """How a conversion is judged: against its fp32 source in ONNX Runtime, on the same inputs."""

    def failure(parity: list[ParityResult]) -> str:
        worst = next((r for r in parity if not r.passed), parity[-1])
        return (
            f"{precision} output differs from fp32 beyond tolerance ({tolerance.describe()}): {describe_parity(worst)}"
        )

    return Verification(
        reference=OnnxRuntimeRunner(src),
        tolerance=tolerance,
        step="convert",
        described_as=f"fp32 ONNX {src.name} (sha256 {sha256_file(src)[:12]}), onnxruntime CPU",
        weights_trained=meta.weights_trained,
        failure=failure,
        keep=keep,
        **inputs,
    )


def _open_fp32_source(
    src: Path, dst: str | os.PathLike[str] | None, precision: str, *, load_weights: bool
) -> tuple[onnx.ModelProto, Path, ArtifactMeta]:
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
    meta = ArtifactMeta.from_model(model)
    if not meta.is_toolkit:
        raise ConfigError(
            f"{src.name} was not exported by resnet-deploy (no model/preprocessing metadata): "
            "export it with 'resnet-deploy export' first"
        )
    if meta.input_format != FLOAT_NCHW:
        raise ConfigError(
            f"{src.name} takes {meta['input_format']} input: convert its float-input model, then add the pixel "
            "input (export --precision P --input-format uint8-nhwc does both)"
        )
    return model, out, meta


def default_output(src: Path, precision: str) -> Path:
    """``resnet50.onnx`` -> ``resnet50.fp16.onnx`` (STYLE's artifact names)."""
    stem = src.name.removesuffix(".onnx")
    for suffix in precision_suffixes():
        stem = stem.removesuffix(suffix)
    return src.with_name(f"{stem}{precision_spec(precision).suffix}.onnx")


def run_onnx(path: Path, x: NDArray[Any], threads: int | None = None) -> NDArray[Any]:
    """Logits of a toolkit ONNX file in ONNX Runtime on the CPU (fixed batches handled by the runner)."""
    with OnnxRuntimeRunner(path, threads=threads) as runner:
        return runner.infer_all(x)


def to_fp16(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None = None,
    *,
    keep_io_types: bool = True,
    tolerance: Tolerance | None = None,
    allow_mismatch: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> PrecisionReport:
    """FP32 ONNX (from ``export_onnx``) -> FP16 ONNX, checked and compared with the source."""
    say = Reporter(progress)
    t0 = time.perf_counter()
    src_path = Path(src)
    model, out, meta = _open_fp32_source(src_path, dst, "fp16", load_weights=True)
    tolerance = tolerance or precision_spec(Precision.fp16).gate("convert", meta.weights_trained)
    say("converting to fp16")
    clamped, under = convert_graph_to_fp16(model, keep_io_types=keep_io_types)
    io_dtype = "float32" if keep_io_types else "float16"
    source_sha = sha256_file(src_path)
    updates = {
        "precision": "fp16",
        "input_dtype": io_dtype,
        "output_dtype": io_dtype,
        "fp16_clamped_weights": str(clamped),
        "source_precision": "fp32",
        "source_sha256": source_sha,
        "toolkit_version": __version__,
    }
    (meta | updates).write_to(model)
    model.producer_name, model.producer_version = "resnet-deploy", __version__
    report = PrecisionReport(
        path=shown_path(out),
        source=str(src_path.resolve()),
        precision="fp16",
        io_dtype=io_dtype,
        source_sha256=source_sha,
        clamped_weights=clamped,
        underflowed_weights=under,
        nodes_by_op=ops_by_count(model),
        tolerance=tolerance.describe(),
    )
    if clamped:
        report.warnings.append(f"{clamped} weight value(s) outside the fp16 range were clamped to +-{FP16_MAX:g}")

    def write(tmp: Path) -> None:
        save_checked(model, tmp, "fp16")
        model.Clear()
        say("comparing fp16 with fp32 in ONNX Runtime")

    keep = "--allow-mismatch" if allow_mismatch else None
    sizes = judged_batch_sizes(meta.fixed_batch)
    write_verified(
        out, report, write, _verification(src_path, meta, "fp16", tolerance, keep, seed=seed, batch_sizes=sizes)
    )
    report.seconds = {"total": round(time.perf_counter() - t0, 3)}
    return report


# ------------------------------------------------------------------------------------------ INT8


INT8_RECIPES = tuple(r.value for r in Int8Recipe)


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
    tolerance: Tolerance | None = None,
    allow_mismatch: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    steps: Steps | None = None,
    exclude: Sequence[str] = (),
    quantize_classifier: bool = False,
    high_precision: str | None = None,
    fp16_io: bool = False,
    auto_exclude: bool = False,
    max_excluded: int = DEFAULT_MAX_EXCLUDED,
    sensitivity: str = "loo",
) -> PrecisionReport:
    """FP32 ONNX -> INT8 ONNX with explicit QuantizeLinear/DequantizeLinear pairs.

    ``recipe="tensorrt"``: signed int8 activations and weights, all zero points 0 (symmetric),
    per-channel weight scales on the output-channel axis, Q/DQ on the residual input of every Add
    (what TensorRT 10/11 needs to build and fuse conv+add+relu in INT8). ``recipe="cpu"``: uint8
    activations x int8 per-channel weights, ONNX Runtime's fast x86 path. Calibration ranges are
    cached by model hash, inputs and method, so the same run twice calibrates once.

    The graph around the pairs (``Int8Layout``): ``exclude`` (module names or globs such as
    ``layer4.*``) keeps those layers out of int8; the tensorrt recipe keeps the classifier in float
    unless ``quantize_classifier``, and runs everything between the pairs in ``high_precision``
    (fp16 by default, fp32 for the cpu recipe) with float32 I/O unless ``fp16_io``. ``auto_exclude``
    ranks the layers by int8 sensitivity on the held-out images and excludes the worst until the
    gate passes (at most ``max_excluded``; ``sensitivity`` loo | single).
    """
    say = Reporter(progress)
    t0 = time.perf_counter()
    recipe, method = _check_int8_options(recipe, method, percentile, batch_size)
    src_path = Path(src)
    model, out, meta = _open_fp32_source(src_path, dst, "int8", load_weights=False)
    layout = Int8Layout.resolve(model, recipe, exclude, quantize_classifier, high_precision, fp16_io)
    if auto_exclude:
        _check_repair_options(calibration, max_excluded, sensitivity)
    # Trained weights make confident predictions: int8 must keep (almost all of) them.
    tolerance = tolerance or precision_spec(Precision.int8).gate("convert", meta.weights_trained)
    opset = opset_of(model) or 0
    if opset < 13:
        raise ConfigError(
            f"{src_path.name} has opset {opset}: per-channel Q/DQ needs opset >= 13 (re-export with --opset 13 or newer)"
        )
    input_name = model.graph.input[0].name
    del model
    step = steps or say.step
    calib = (
        calibration
        if isinstance(calibration, CalibrationSet)
        else load_calibration(calibration, meta, count=count, seed=seed, steps=step)
    )
    source_sha = sha256_file(src_path)
    # The recipe is part of the key: it decides which tensors get calibrated.
    key = "|".join([source_sha, recipe, method, f"{percentile:g}" if method == "percentile" else "", calib.digest])
    cache_path, cache_state, cache_note = prepare_cache(cache, hashlib.sha256(key.encode()).hexdigest()[:32])
    inputs, batch_size = _whole_batches(calib.inputs, fixed_batch(src_path), batch_size)
    report = PrecisionReport(
        path=shown_path(out),
        source=str(src_path.resolve()),
        precision="int8",
        io_dtype="float16" if layout.fp16_io else "float32",
        source_sha256=source_sha,
        tolerance=tolerance.describe(),
    )
    report.extra.update(
        recipe=recipe,
        high_precision=layout.high_precision,
        classifier="float" if "fc" in layout.by_default else "int8",
        excluded=[],
        residual_branch_qdq_removed=0,
        calibration=_calibration_summary(calib, len(inputs), method, percentile, cache_state, cache_path),
    )
    report.warnings.extend(_calibration_warnings(calib, cache_note))
    x, what = _parity_inputs(calib, auto_exclude, report.warnings)
    report.extra["parity_inputs"] = what

    def write(tmp: Path) -> None:
        say(f"quantizing ({recipe} recipe, {method} calibration on {len(inputs)} inputs)")
        reader = _Reader(inputs, input_name, batch_size, step)
        _run_quantizer(src_path, tmp, reader, recipe, method, percentile, cache_path)
        qmodel = onnx.load(str(tmp))
        report.extra["residual_branch_qdq_removed"] = strip_branch_qdq(qmodel) if recipe == "tensorrt" else 0
        source = onnx.load(str(src_path))
        report.extra["excluded"] = layout.dequantize(qmodel, source)
        if auto_exclude:
            say("ranking layers by int8 sensitivity (--auto-exclude)")
            qmodel = _repair(
                qmodel, source, run_onnx(src_path, x), layout, x, tolerance, report, max_excluded, sensitivity
            )
        del source
        layout.finish(qmodel)
        updates = {
            **dict(precision="int8", int8_recipe=recipe, calibration_method=method, source_precision="fp32"),
            **dict(calibration_count=str(len(inputs)), calibration_source=calib.source, source_sha256=source_sha),
            **dict(toolkit_version=__version__, **layout.metadata(report.extra["excluded"])),
        }
        (ArtifactMeta.from_model(qmodel) | updates).write_to(qmodel)
        qmodel.producer_name, qmodel.producer_version = "resnet-deploy", __version__
        report.nodes_by_op = ops_by_count(qmodel)
        save_checked(qmodel, tmp, "int8")
        say("comparing int8 with fp32 in ONNX Runtime")

    keep = "--allow-mismatch" if allow_mismatch else ("random calibration" if calib.source == "random" else None)
    verification = _verification(src_path, meta, "int8", tolerance, keep, inputs=[(what, x)])
    write_verified(out, report, write, verification)
    report.seconds = {"total": round(time.perf_counter() - t0, 3)}
    return report


def _repair(
    qmodel: onnx.ModelProto,
    source: onnx.ModelProto,
    ref: NDArray[Any],
    layout: Int8Layout,
    x: NDArray[Any],
    tolerance: Tolerance,
    report: PrecisionReport,
    max_excluded: int,
    sensitivity: str,
) -> onnx.ModelProto:
    """``--auto-exclude``: the repaired graph, its ranking and steps in the report; a ParityError
    carrying the report (nothing written) when the bound is hit."""
    try:
        repaired, found = auto_exclude(
            qmodel, source, x, ref, tolerance, finish=layout.finish, method=sensitivity, max_excluded=max_excluded
        )
    except ParityError as e:
        report.extra["auto_exclude"] = e.report.to_dict() if e.report is not None else None
        report.extra["excluded"] = [*report.extra["excluded"], *(e.report.excluded if e.report else [])]
        report.written = False
        raise ParityError(str(e) + "; nothing was written", report) from None
    report.extra["auto_exclude"] = found.to_dict()
    report.extra["excluded"] = [*report.extra["excluded"], *found.excluded]
    return repaired


def _check_repair_options(calibration: Any, max_excluded: int, sensitivity: str) -> None:
    if (isinstance(calibration, str) and calibration == "random") or isinstance(calibration, np.ndarray):
        raise ConfigError(
            "--auto-exclude ranks layers on held-out calibration images: pass --calib DIR (a folder of images)"
        )
    if sensitivity not in SENSITIVITY_METHODS:
        raise ConfigError(f"unknown sensitivity method {sensitivity!r}: choose one of {', '.join(SENSITIVITY_METHODS)}")
    if isinstance(max_excluded, bool) or not isinstance(max_excluded, int) or not 1 <= max_excluded <= 1000:
        raise ConfigError(f"--max-excluded {max_excluded}: must be an integer in 1-1000")


def _check_int8_options(recipe: str, method: str, percentile: float, batch_size: int) -> tuple[str, str]:
    if recipe not in INT8_RECIPES:
        raise ConfigError(f"unknown int8 recipe {recipe!r}: choose one of {', '.join(INT8_RECIPES)}")
    if method not in CALIB_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}: choose one of {', '.join(CALIB_METHODS)}")
    if method == "percentile" and not 90.0 <= percentile < 100.0:
        raise ConfigError(f"percentile {percentile} must be in [90, 100)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"calibration batch size must be a positive integer, got {batch_size}")
    return Int8Recipe(recipe).value, CalibMethod(method).value


def _whole_batches(inputs: NDArray[Any], pinned: int | None, batch_size: int) -> tuple[NDArray[Any], int]:
    """A fixed-batch model only runs whole batches of its size: pad or trim the inputs to fit."""
    if pinned is None:
        return inputs, batch_size
    if len(inputs) < pinned:
        return np.concatenate([inputs, np.resize(inputs, (pinned - len(inputs), *inputs.shape[1:]))]), pinned
    return inputs[: len(inputs) - len(inputs) % pinned], pinned


def _parity_inputs(calib: CalibrationSet, auto_exclude: bool, warnings: list[str]) -> tuple[NDArray[Any], str]:
    """What int8 is compared with fp32 on: the held-out images, else the first calibration inputs."""
    held = calib.held_out is not None and len(calib.held_out) > 0
    x = calib.held_out if calib.held_out is not None and held else calib.inputs[: min(len(calib.inputs), HELD_OUT)]
    what = f"{len(x)} held-out images" if held else f"{len(x)} calibration inputs (no images left to hold out)"
    if len(x) < MIN_JUDGED_SAMPLES:
        warnings.append(
            f"int8 is compared with fp32 on {len(x)} inputs: SQNR and retrieval need {MIN_JUDGED_SAMPLES}, so only "
            "cosine and top-1 judge it (give more calibration images)"
        )
    if auto_exclude and (not held or len(x) < MIN_JUDGED_SAMPLES):
        raise ConfigError(
            f"--auto-exclude judges each exclusion on held-out images: {calib.source} left {len(x) if held else 0} "
            f"(it needs {MIN_JUDGED_SAMPLES}; give more images than --calib-count)"
        )
    return x, what


def _calibration_summary(
    calib: CalibrationSet, count: int, method: str, percentile: float, cache_state: str, cache_path: Path | None
) -> dict[str, Any]:
    return {
        "source": calib.source,
        "count": count,
        "method": method,
        "percentile": percentile if method == "percentile" else None,
        "skipped": len(calib.skipped),
        "skipped_files": [{"path": p, "reason": r} for p, r in calib.skipped[:20]],
        "cache": cache_state,
        "cache_path": str(cache_path) if cache_path else None,
    }


def _calibration_warnings(calib: CalibrationSet, cache_note: str | None) -> list[str]:
    warnings = [cache_note] if cache_note else []
    if calib.source == "random":
        warnings.append(
            "calibrated on random noise (--calib random): the int8 ranges, and so its accuracy, are meaningless"
        )
    if calib.skipped:
        warnings.append(f"skipped {len(calib.skipped)} unreadable calibration file(s), e.g. {calib.skipped[0][0]}")
    return warnings


def _run_quantizer(
    src: Path, tmp: Path, reader: _Reader, recipe: str, method: str, percentile: float, cache_path: Path | None
) -> None:
    """ONNX Runtime's static QDQ quantizer with the recipe's options, quietly (its logging and
    histogram progress would break ``--json``)."""
    q = _ort_quantization()
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
    methods = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
    qlog = logging.getLogger()
    old_level = qlog.level
    try:
        qlog.setLevel(logging.ERROR)  # ORT's quantizer logs pre-processing advice as warnings
        # and prints histogram progress on stdout; its scratch goes in a folder of ours (swept if killed)
        with contextlib.redirect_stdout(io.StringIO()), owned_scratch():
            q.quantize_static(
                str(src),
                str(tmp),
                reader,
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "Gemm", "Add", "MaxPool"] if recipe == "tensorrt" else None,
                per_channel=True,
                # 7-bit weights for the cpu recipe: ORT's fused uint8 x int8 kernels saturate on x86
                # without VNNI (measured: -1.7 to -3.9 points on digits; 0 to 0.3 with it).
                reduce_range=recipe == "cpu",
                activation_type=q.QuantType.QInt8 if symmetric else q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                calibrate_method=getattr(q.CalibrationMethod, methods[method]),
                extra_options=extra,
                calibration_cache_path=str(cache_path) if cache_path is not None else None,
            )
    except (ValueError, RuntimeError, KeyError) as e:
        raise ExportError(f"onnxruntime quantization failed: {str(e).splitlines()[0]}") from e
    finally:
        qlog.setLevel(old_level)


# ------------------------------------------------------------------------------- the registry's transforms

Converter = Callable[..., PrecisionReport]
# Each precision of ``precisions.PRECISIONS`` but fp32 (the source) -> the transform that makes it.
CONVERTERS: dict[Precision, Converter] = {Precision.fp16: to_fp16, Precision.int8: quantize_int8}


def convert(
    src: str | os.PathLike[str], dst: str | os.PathLike[str] | None, precision: str | Precision, **options: Any
) -> PrecisionReport:
    """fp32 ONNX -> ``precision`` with that precision's transform (options as the transform's)."""
    spec = precision_spec(precision)
    converter = CONVERTERS.get(spec.precision)
    if converter is None:
        raise ConfigError(f"{spec.name} is the export's own precision: there is nothing to convert to")
    return converter(src, dst, **options)
