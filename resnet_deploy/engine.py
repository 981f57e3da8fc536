"""TensorRT engines: build from a toolkit ONNX, a JSON sidecar beside the plan, verified loading.

A plan is only as portable as the TensorRT version and GPU it was built for, so every plan gets a
sidecar (``resnet50.int8.plan.json``) recording both, its profile, its precision and the sha256 of
the plan and of the ONNX it came from. ``load_engine`` checks the plan's hash (a truncated or
altered file is refused before TensorRT sees it) and the sidecar against the running TensorRT and
GPU (a mismatch is refused with what differs and how to rebuild), then deserializes.

TensorRT >= 10.12 and 11.x build strongly typed networks: the precision comes from the ONNX
(fp32, fp16 tensors, or int8 Q/DQ). Older TensorRT 10 builds weakly typed with the FP16/INT8
builder flags derived from the ONNX's precision. Everything TensorRT-free here is plain logic
tested on CPU; the calls into TensorRT run on a GPU machine (tests marked ``tensorrt``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import ConfigError, EngineError, MissingDependencyError
from .reports import atomic_path, atomic_write_text, check_output_path
from .weights import sha256_file

SIDECAR_SCHEMA = 1
HARDWARE_COMPAT = ("none", "ampere-plus", "same-cc")
STRONGLY_TYPED_SINCE = (10, 12)
Progress = Callable[[str], None]


def sidecar_path(plan: str | os.PathLike[str]) -> Path:
    """``resnet50.int8.plan`` -> ``resnet50.int8.plan.json``."""
    p = Path(plan)
    return p.with_name(p.name + ".json")


def parse_version(text: str) -> tuple[int, ...]:
    """'10.12.0.36' -> (10, 12, 0, 36); non-numeric parts end the version."""
    parts = []
    for piece in str(text).split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    if not parts:
        raise ConfigError(f"not a version: {text!r}")
    return tuple(parts)


def build_mode(trt_version: str) -> str:
    """'strongly-typed' for TensorRT >= 10.12 (and 11: only mode), else 'weakly-typed'."""
    return "strongly-typed" if parse_version(trt_version)[:2] >= STRONGLY_TYPED_SINCE else "weakly-typed"


@dataclass(frozen=True)
class Profile:
    """One optimization profile over the batch axis (the other dims are fixed by the ONNX)."""

    min_batch: int
    opt_batch: int
    max_batch: int
    input_shape: tuple[int, int, int]  # C, H, W

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(
                f"batch profile must satisfy 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )

    def shapes(self) -> dict[str, list[int]]:
        c, h, w = self.input_shape
        return {"min": [self.min_batch, c, h, w], "opt": [self.opt_batch, c, h, w], "max": [self.max_batch, c, h, w]}

    def contains(self, batch: int) -> bool:
        return self.min_batch <= batch <= self.max_batch


@dataclass
class Sidecar:
    """Everything needed to decide, before deserializing, whether a plan can run here."""

    tensorrt_version: str
    cuda_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    hardware_compat: str  # none | ampere-plus | same-cc
    version_compatible: bool
    build_mode: str  # strongly-typed | weakly-typed
    precision: str
    profile: dict[str, list[int]]
    input_name: str
    output_name: str
    source_onnx: str
    source_onnx_sha256: str
    plan_sha256: str
    plan_size_bytes: int
    build_seconds: float
    toolkit_version: str = __version__
    schema: int = SIDECAR_SCHEMA
    metadata: dict[str, str] = field(default_factory=dict)  # the ONNX's metadata_props, carried over

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_file(cls, path: Path) -> Sidecar:
        if not path.is_file():
            raise EngineError(
                f"no sidecar {path.name} beside the plan: rebuild it with 'resnet-deploy build' "
                "(a plan without its sidecar cannot be checked before loading)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") != SIDECAR_SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r}, expected {SIDECAR_SCHEMA}")
            return cls(**data)
        except (OSError, ValueError, TypeError) as e:
            raise EngineError(f"sidecar {path} is unreadable ({e}): rebuild the engine") from None


@dataclass(frozen=True)
class RuntimeEnv:
    """What is running here: TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def compatibility_problems(sidecar: Sidecar, env: RuntimeEnv) -> list[str]:
    """Why this plan cannot run here ([] if it can), by TensorRT's portability rules:

    - a plan runs only on the exact TensorRT version that built it (major, minor, patch and build),
      unless built version-compatible: then on that version, a newer one of the same major, or the
      next major NVIDIA supports (8 -> 10, 10 -> 11);
    - ``hardware_compat="none"``: only on the kind of GPU that built it; ``"same-cc"``: any GPU of
      the same compute capability; ``"ampere-plus"``: any GPU of compute capability >= 8.0.
    """
    problems = []
    built, here = parse_version(sidecar.tensorrt_version), parse_version(env.tensorrt_version)
    if sidecar.version_compatible:
        # NVIDIA documents: the same major at an equal or newer version, and across majors only the
        # next supported one (8 -> 10, 10 -> 11); nothing else.
        next_major = {8: 10}.get(built[0], built[0] + 1)
        if here < built:
            problems.append(
                f"TensorRT {env.tensorrt_version} here is older than {sidecar.tensorrt_version}, "
                "which built this version-compatible plan"
            )
        elif here[0] not in (built[0], next_major):
            problems.append(
                f"TensorRT {env.tensorrt_version} here: a version-compatible plan from {sidecar.tensorrt_version} "
                f"runs on TensorRT {built[0]}.x and {next_major}.x only"
            )
    elif here != built:
        problems.append(f"TensorRT {env.tensorrt_version} here, built with {sidecar.tensorrt_version}")
    cc_built, cc_here = parse_version(sidecar.compute_capability), parse_version(env.compute_capability)
    gpu_here = f"GPU {env.gpu_name} (compute capability {env.compute_capability})"
    if sidecar.hardware_compat == "ampere-plus":
        if cc_here[:2] < (8, 0):
            problems.append(f"{gpu_here} is older than Ampere; the plan was built ampere-plus")
    elif cc_here[:2] != cc_built[:2]:
        problems.append(f"{gpu_here} here, built for {sidecar.gpu_name} ({sidecar.compute_capability})")
    elif sidecar.hardware_compat == "none" and env.gpu_name != sidecar.gpu_name:
        problems.append(
            f"{gpu_here} here, built for {sidecar.gpu_name}: without hardware compatibility a plan "
            "is only for the GPU model that built it (--hardware-compat same-cc allows the same compute capability)"
        )
    return problems


def verify_plan(plan: str | os.PathLike[str], env: RuntimeEnv | None) -> tuple[bytes, Sidecar]:
    """The plan's bytes and sidecar, after the integrity and compatibility checks (``env=None``
    skips compatibility, for inspecting a plan on a machine without TensorRT)."""
    p = Path(plan)
    if not p.is_file():
        raise EngineError(f"engine not found: {p}")
    sidecar = Sidecar.from_file(sidecar_path(p))
    data = p.read_bytes()
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if len(data) != sidecar.plan_size_bytes or digest != sidecar.plan_sha256:
        raise EngineError(
            f"{p.name} does not match its sidecar (size {len(data)} vs {sidecar.plan_size_bytes}, sha256 "
            f"{digest[:12]}... vs {sidecar.plan_sha256[:12]}...): the plan is truncated or altered; rebuild it"
        )
    if env is not None:
        problems = compatibility_problems(sidecar, env)
        if problems:
            raise EngineError(
                f"{p.name} cannot run here: {'; '.join(problems)}. Rebuild it on this machine with "
                f"'resnet-deploy build {sidecar.source_onnx}', or build it with --hardware-compat ampere-plus / "
                "--version-compatible to make it portable"
            )
    return data, sidecar


# ---------------------------------------------------------------------------- TensorRT (GPU side)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sidecar_path": str(sidecar_path(self.path)),
            **self.sidecar.to_dict(),
            "timing_cache": self.timing_cache,
            "warnings": self.warnings,
        }


def onnx_profile(
    onnx_path: Path, min_batch: int, opt_batch: int, max_batch: int
) -> tuple[Profile, dict[str, str], str]:
    """The profile for an ONNX's dynamic batch axis, its metadata and precision (clear errors for a
    fixed batch axis or a non-toolkit graph)."""
    from .artifacts import load_onnx
    from .precision import graph_precision

    model = load_onnx(onnx_path, load_weights=False)
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
    meta = {p.key: p.value for p in model.metadata_props}
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
    progress: Progress | None = None,
) -> BuildReport:
    """ONNX -> TensorRT plan + sidecar, written atomically beside each other."""
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
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TensorRT enables TF32 by default: ~1e-3 relative error on ResNets, far outside fp32 parity.
        config.clear_flag(trt.BuilderFlag.TF32)
    if mode == "weakly-typed":  # TensorRT < 10.12: precision through builder flags
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    input_name = network.get_input(0).name
    trt_profile = builder.create_optimization_profile()
    shapes = profile.shapes()
    trt_profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(trt_profile)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_blob = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
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
    import hashlib

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
    # Sidecar first, plan last: a plan on disk always has the sidecar that describes it.
    atomic_write_text(sidecar_path(out), json.dumps(sidecar.to_dict(), indent=2) + "\n")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    if cache_path is not None:
        with atomic_path(cache_path) as tmp_cache:
            tmp_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return BuildReport(str(out.resolve()), sidecar, str(cache_path) if cache_path else None, warnings)


def _tensorrt_cuda() -> str:
    """The CUDA major TensorRT was built for, from its wheel (tensorrt-cu12 / -cu13), else unknown."""
    from .system import dist_version

    for major in ("13", "12", "11"):
        for dist in (f"tensorrt-cu{major}-libs", f"tensorrt-cu{major}", f"tensorrt_cu{major}_libs"):
            if dist_version(dist) is not None:
                return f"cu{major}"
    return "unknown"


def load_engine(plan: str | os.PathLike[str]) -> tuple[Any, Sidecar]:
    """Verify (hash, sidecar vs this TensorRT and GPU), then deserialize: (ICudaEngine, Sidecar)."""
    env = runtime_env()
    data, sidecar = verify_plan(plan, env)
    trt = _tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if sidecar.version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineError(f"TensorRT could not deserialize {Path(plan).name} although its checks passed")
    return engine, sidecar
