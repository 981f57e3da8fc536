"""TensorRT engines: build from a toolkit ONNX, a JSON sidecar beside the plan, verified loading.

The sidecar and its rules live in ``sidecar.py`` (no TensorRT there). Every build also saves
TensorRT's own layer information beside the plan (``resnet50.int8.plan.layers.json``, the engine
inspector's JSON from a build with detailed profiling verbosity) and reports each layer's precision
by module; in an int8 engine a convolution TensorRT does not run in int8 is a warning, or with
``strict_precision`` a refusal before anything is written (``engine_layers.py``, no TensorRT
there either). ``load_engine`` verifies the plan against its sidecar and the sidecar against the
running TensorRT and GPU (a mismatch is refused with what differs and how to rebuild), then
deserializes.

TensorRT >= 10.12 and 11.x build strongly typed networks: the precision comes from the ONNX
(fp32, fp16 tensors, or int8 Q/DQ). Older TensorRT 10 builds weakly typed with the FP16/INT8
builder flags derived from the ONNX's precision. Everything TensorRT-free here is plain logic
tested on CPU; the calls into TensorRT run on a GPU machine (tests marked ``tensorrt``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine_layers import (
    Int8Check,
    LayerReport,
    check_int8,
    int8_convolutions,
    layers_path,
    onnx_ops,
    parse_layer_information,
)
from .errors import ConfigError, EngineError, MissingDependencyError
from .onnx_io import ArtifactMeta, check_external_data, graph_precision, load_onnx
from .reports import Progress, atomic_path, atomic_write_text, check_output_path, sha256_file, shown_path
from .safeio import TIMING_CACHE_MAX_BYTES, read_bytes_capped
from .sidecar import (
    HARDWARE_COMPAT,
    SIDECAR_SCHEMA,
    STRONGLY_TYPED_SINCE,
    HardwareCompat,
    Profile,
    RuntimeEnv,
    Sidecar,
    build_mode,
    compatibility_problems,
    parse_version,
    sidecar_path,
    verify_plan,
)

# ---------------------------------------------------------------------------- TensorRT (GPU side)

__all__ = [  # the engine API, with the sidecar names it has always exported
    "HARDWARE_COMPAT",
    "SIDECAR_SCHEMA",
    "STRONGLY_TYPED_SINCE",
    "BuildReport",
    "HardwareCompat",
    "Profile",
    "RuntimeEnv",
    "Sidecar",
    "build_engine",
    "build_mode",
    "compatibility_problems",
    "layers_path",
    "load_engine",
    "onnx_profile",
    "parse_version",
    "runtime_env",
    "sidecar_path",
    "verify_plan",
]


def _tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("tensorrt", extra="tensorrt", purpose="building and running engines") from None
    return trt


def runtime_env() -> RuntimeEnv:
    """TensorRT version and the current GPU (via torch's CUDA), or a clear error naming what is missing."""
    trt = _tensorrt()
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", purpose="finding the GPU") from None
    if not torch.cuda.is_available():
        raise EngineError("no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT needs an NVIDIA GPU")
    major, minor = torch.cuda.get_device_capability()
    return RuntimeEnv(trt.__version__, torch.cuda.get_device_name(), f"{major}.{minor}")


@dataclass
class BuildReport:
    path: str
    sidecar: Sidecar
    timing_cache: str | None
    warnings: list[str] = field(default_factory=list)
    layers: LayerReport | None = None  # TensorRT's layer information, parsed (None: unavailable)
    int8_check: Int8Check | None = None  # an int8 engine's convolutions that do not run in int8
    layers_path: str | None = None  # where TensorRT's layer information was saved
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        check = self.int8_check
        return {
            "path": self.path,
            "sidecar_path": str(sidecar_path(self.path)),
            **self.sidecar.to_dict(),
            "timing_cache": self.timing_cache,
            "layers_path": self.layers_path,
            "layers": [layer.to_dict() for layer in self.layers.layers] if self.layers else [],
            "precision_counts": self.layers.precision_counts() if self.layers else {},
            "non_int8_convolutions": [c.to_dict() for c in check.non_int8] if check else None,
            "unchecked_convolutions": check.unchecked if check else None,
            "warnings": self.warnings,
            "notes": self.notes,
        }


def onnx_profile(
    onnx_path: Path, min_batch: int, opt_batch: int, max_batch: int
) -> tuple[Profile, dict[str, str], str]:
    """The profile for an ONNX's dynamic batch axis, its metadata and precision (clear errors for a
    fixed batch axis or a non-toolkit graph)."""
    model = load_onnx(onnx_path, load_weights=False)
    check_external_data(model, onnx_path)  # TensorRT's parser reads them itself: regular files, right sizes
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ConfigError(f"{onnx_path.name}: expected a 4-D NCHW input, got {len(dims)} dimensions")
    if dims[0].HasField("dim_value"):
        raise ConfigError(
            f"{onnx_path.name} has a fixed batch of {dims[0].dim_value}: engines need a dynamic batch axis "
            "(re-export with --batch dynamic)"
        )
    chw = tuple(int(d.dim_value) for d in dims[1:])
    meta = ArtifactMeta.from_model(model).to_dict()
    return Profile(min_batch, opt_batch, max_batch, chw), meta, graph_precision(model)  # type: ignore[arg-type]


def build_engine(
    onnx_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 64,
    workspace_gib: float | None = None,
    timing_cache: str | os.PathLike[str] | None = None,
    hardware_compat: str = "none",
    version_compatible: bool = False,
    opt_level: int | None = None,
    strict_precision: bool = False,
    progress: Progress | None = None,
) -> BuildReport:
    """ONNX -> TensorRT plan + sidecar + TensorRT's layer information (``PLAN.layers.json``, from an
    engine built with detailed profiling verbosity), written atomically beside each other.

    In an int8 engine, a convolution TensorRT does not run in int8 is a warning in the report;
    ``strict_precision=True`` refuses such an engine with ``EngineError`` before anything is written.
    """
    say = progress or (lambda _stage: None)
    src = Path(onnx_path)
    profile, meta, precision = onnx_profile(src, min_batch, opt_batch, max_batch)
    if hardware_compat not in HARDWARE_COMPAT:
        raise ConfigError(f"unknown hardware compat {hardware_compat!r}: choose one of {', '.join(HARDWARE_COMPAT)}")
    if opt_level is not None and not 0 <= opt_level <= 5:
        raise ConfigError(f"--opt-level {opt_level}: choose 0-5")
    if workspace_gib is not None and workspace_gib <= 0:
        raise ConfigError(f"--workspace {workspace_gib}: must be positive (GiB)")
    default = src.with_suffix(".plan")
    out = check_output_path(output if output is not None else default, default.name)
    if layers_path(out).is_dir():
        raise ConfigError(f"{layers_path(out)} is a folder: the plan's layer information is written there")
    env = runtime_env()
    trt = _tensorrt()
    mode = build_mode(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(1 << int(flag) if (mode == "strongly-typed" and flag is not None) else 0)
    parser = trt.OnnxParser(network, logger)
    say("parsing ONNX")
    if not parser.parse_from_file(str(src)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {src.name}: {errors[:500]}")
    config = _builder_config(trt, builder, precision, mode, workspace_gib, opt_level, hardware_compat)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    input_name = network.get_input(0).name
    trt_profile = builder.create_optimization_profile()
    shapes = profile.shapes()
    trt_profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(trt_profile)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_blob = read_timing_cache(cache_path)
    cache = config.create_timing_cache(cache_blob)
    warnings: list[str] = []
    if not config.set_timing_cache(cache, False):  # (cache, ignore_mismatch): refuse a foreign cache
        warnings.append(f"timing cache {cache_path} is from another TensorRT or GPU: starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), False)
    say(f"building {precision} engine ({mode}, batch {min_batch}-{max_batch}); this takes minutes")
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        raise EngineError(f"TensorRT could not build an engine from {src.name} (see the TensorRT log above)")
    data = bytes(plan)
    say("reading the engine's layers")
    info, reason = _engine_information(trt, logger, data, input_name, shapes["opt"], version_compatible)
    layers, check, layer_warnings = _layer_report(info, reason, src, precision, strict_precision)  # before writing
    sidecar = Sidecar(
        tensorrt_version=trt.__version__,
        cuda_version=_tensorrt_cuda(),
        gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
        hardware_compat=hardware_compat,
        version_compatible=version_compatible,
        build_mode=mode,
        precision=precision,
        profile=shapes,
        input_name=input_name,
        output_name=network.get_output(0).name,
        source_onnx=str(src.resolve()),
        source_onnx_sha256=sha256_file(src),
        plan_sha256=hashlib.sha256(data).hexdigest(),
        plan_size_bytes=len(data),
        build_seconds=round(seconds, 2),
        metadata=meta,
    )
    _write_plan(out, sidecar, data, info)
    if cache_path is not None:
        with atomic_path(cache_path) as tmp_cache:
            tmp_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return BuildReport(
        shown_path(out),
        sidecar,
        str(cache_path) if cache_path else None,
        warnings + layer_warnings,
        layers=layers,
        int8_check=check,
        layers_path=shown_path(layers_path(out)) if info is not None else None,
        notes=check.notes if check is not None else [],
    )


def _builder_config(
    trt: Any,
    builder: Any,
    precision: str,
    mode: str,
    workspace_gib: float | None,
    opt_level: int | None,
    hardware_compat: str,
) -> Any:
    """The builder config: memory, optimization level, hardware compatibility, precision flags, and
    detailed profiling verbosity (so the engine inspector shows each layer's precision and tactic)."""
    config = builder.create_builder_config()
    if workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if opt_level is not None:
        config.builder_optimization_level = opt_level
    if hardware_compat != "none":
        level = {"ampere-plus": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}[hardware_compat]
        if not hasattr(trt.HardwareCompatibilityLevel, level):
            raise EngineError(f"--hardware-compat {hardware_compat} is not available in TensorRT {trt.__version__}")
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TensorRT enables TF32 by default: ~1e-3 relative error on ResNets, far outside fp32 parity.
        config.clear_flag(trt.BuilderFlag.TF32)
    if mode == "weakly-typed":  # TensorRT < 10.12: precision through builder flags
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return config


def _engine_information(
    trt: Any, logger: Any, data: bytes, input_name: str, opt_shape: list[int], host_code: bool
) -> tuple[str | None, str]:
    """TensorRT's layer information for the plan just built, as JSON (what ``trtexec
    --exportLayerInfo`` writes), read through an execution context at the profile's opt shape (a
    dynamic-shape engine shows its formats only for set shapes); or None and why not."""
    runtime = trt.Runtime(logger)
    if host_code:  # a version-compatible plan we built ourselves: its lean runtime is ours
        runtime.engine_host_code_allowed = True
    engine = context = inspector = None
    try:
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            return None, "TensorRT could not deserialize the plan it built, to read its layer information"
        inspector = engine.create_engine_inspector()
        context = engine.create_execution_context()
        if context is not None and context.set_input_shape(input_name, opt_shape):
            try:
                inspector.execution_context = context  # TensorRT 10/11 (8.x called it 'context')
            except AttributeError:
                inspector.context = context
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    except (AttributeError, RuntimeError, TypeError, ValueError) as e:  # the plan is fine; its report is extra
        return None, f"TensorRT's layer information is unavailable ({type(e).__name__}: {e})"
    finally:
        del inspector, context, engine  # before the runtime: TensorRT objects outlive nothing they need
    return str(text), ""


def _layer_report(
    info: str | None, reason: str, src: Path, precision: str, strict: bool
) -> tuple[LayerReport | None, Int8Check | None, list[str]]:
    """The parsed layer information, for an int8 engine its convolutions not in int8, and the
    warnings; with ``strict``, an ``EngineError`` when a conv is not int8 or the precisions cannot be read."""
    layers = None
    if info is not None:
        model = load_onnx(src, load_weights=False)
        try:
            layers = parse_layer_information(info, onnx_nodes=onnx_ops(model), source="TensorRT's layer information")
        except EngineError as e:
            reason = str(e)
    if layers is None:
        if strict and precision == "int8":
            raise EngineError(
                f"int8 engine refused (--strict-precision): its layer precisions cannot be read: {reason}"
            )
        return None, None, [reason]
    check = check_int8(layers, intended=int8_convolutions(model), strict=strict) if precision == "int8" else None
    return layers, check, layers.notes + (check.warnings if check is not None else [])


def _write_plan(out: Path, sidecar: Sidecar, data: bytes, info: str | None) -> None:
    """Sidecar first, then the layer information, plan last: a plan on disk always has the sidecar
    (and the layer report) that describe it."""
    atomic_write_text(sidecar_path(out), json.dumps(sidecar.to_dict(), indent=2) + "\n")
    layers_file = layers_path(out)
    if info is not None:
        atomic_write_text(layers_file, info if info.endswith("\n") else info + "\n")
    elif layers_file.is_symlink() or layers_file.is_file():  # an earlier plan's: it would lie about this one
        layers_file.unlink()
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)


def read_timing_cache(path: Path | None) -> bytes:
    """A timing cache's bytes (empty when there is none yet): a regular file under
    ``TIMING_CACHE_MAX_BYTES``, never a device or FIFO read without end."""
    if path is None or (not path.exists() and not path.is_symlink()):
        return b""
    return read_bytes_capped(path, "timing cache", TIMING_CACHE_MAX_BYTES, error=EngineError)


def _tensorrt_cuda() -> str:
    """The CUDA major TensorRT was built for, from its wheel (tensorrt-cu12 / -cu13), else unknown."""
    from .system import dist_version

    for major in ("13", "12", "11"):
        for dist in (f"tensorrt-cu{major}-libs", f"tensorrt-cu{major}", f"tensorrt_cu{major}_libs"):
            if dist_version(dist) is not None:
                return f"cu{major}"
    return "unknown"


# Whether a version-compatible plan's embedded host code (its lean runtime) may run when the caller
# does not say: off. The CLI's ``--allow-host-code`` turns it on for one command.
_HOST_CODE_DEFAULT = [False]


def set_host_code_default(allow: bool) -> None:
    """The process default for ``allow_host_code`` (the CLI's ``--allow-host-code``)."""
    _HOST_CODE_DEFAULT[0] = bool(allow)


def host_code_allowed(allow_host_code: bool | None) -> bool:
    return _HOST_CODE_DEFAULT[0] if allow_host_code is None else bool(allow_host_code)


def check_host_code(plan: str | os.PathLike[str], sidecar: Sidecar, allow_host_code: bool | None) -> bool:
    """A version-compatible plan carries host code that TensorRT runs in this process when it is
    deserialized, and the sidecar that says so is written by whoever made the plan (self-attested,
    not signed): it loads only when the caller opted in. Returns whether host code is allowed."""
    allowed = host_code_allowed(allow_host_code)
    if sidecar.version_compatible and not allowed:
        raise EngineError(
            f"{Path(plan).name} is a version-compatible plan: it carries host code TensorRT would run in this "
            "process; load it only if you trust where it came from, with --allow-host-code (allow_host_code=True)"
        )
    return allowed


def load_engine(plan: str | os.PathLike[str], *, allow_host_code: bool | None = None) -> tuple[Any, Sidecar]:
    """Verify (hash, sidecar vs this TensorRT and GPU), then deserialize: (ICudaEngine, Sidecar).
    ``allow_host_code``: a version-compatible plan's embedded host code may run (default: no, unless
    ``set_host_code_default(True)``); refused before anything is deserialized."""
    check_host_code(plan, Sidecar.from_file(sidecar_path(plan)), allow_host_code)
    env = runtime_env()
    data, sidecar = verify_plan(plan, env)
    trt = _tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if sidecar.version_compatible:  # (allowed: checked above)
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineError(f"TensorRT could not deserialize {Path(plan).name} although its checks passed")
    return engine, sidecar
