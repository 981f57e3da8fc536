"""Engine sidecars: what a TensorRT plan was built with, and whether it can run here.

A plan is only as portable as the TensorRT version and GPU it was built for, so every plan gets a
JSON sidecar (``resnet50.int8.plan.json``) recording both, its profile, its precision and the
sha256 of the plan and of the ONNX it came from. ``verify_plan`` checks the plan's bytes against
the sidecar (a truncated or altered file is refused before TensorRT sees it) and the sidecar
against the running TensorRT and GPU. Pure logic: no TensorRT import, tested on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ._version import __version__
from .choices import HardwareCompat as HardwareCompat
from .errors import ConfigError, EngineError
from .metrics import MAX_BATCH_SIZE
from .safeio import PLAN_MAX_BYTES, SIDECAR_MAX_BYTES, check_readable, read_bytes_capped, read_text_capped

SIDECAR_SCHEMA = 1
MAX_PROFILE_BATCH = MAX_BATCH_SIZE  # as the batch sizes a comparison or benchmark may ask for
HARDWARE_COMPAT = tuple(h.value for h in HardwareCompat)
STRONGLY_TYPED_SINCE = (10, 12)


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
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch <= MAX_PROFILE_BATCH:
            raise ConfigError(
                f"batch profile must satisfy 1 <= min <= opt <= max <= {MAX_PROFILE_BATCH}, "
                f"got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
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
        missing = (
            f"no sidecar {path.name} beside the plan: rebuild it with 'resnet-deploy build' "
            "(a plan without its sidecar cannot be checked before loading)"
        )
        text = read_text_capped(path, "engine sidecar", SIDECAR_MAX_BYTES, error=EngineError, missing=missing)
        try:
            data = json.loads(text)
            _check_fields(data)
            return cls(**data)
        except (OSError, ValueError, TypeError) as e:
            raise EngineError(f"sidecar {path} is unreadable ({e}): rebuild the engine") from None


def _check_fields(data: Any) -> None:
    """A sidecar's JSON has every field, of its type, and a usable profile (the sidecar is read
    before the plan, so a malformed one must be refused here, not fail later with a KeyError)."""
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, expected an object")
    if data.get("schema") != SIDECAR_SCHEMA:
        raise ValueError(f"schema {data.get('schema')!r}, expected {SIDECAR_SCHEMA}")
    kinds = {f.name: f.type for f in fields(Sidecar)}
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    python_types: dict[str, tuple[type, ...]] = {"str": (str,), "bool": (bool,), "int": (int,), "float": (int, float)}
    for name, kind in kinds.items():
        if name not in data:
            if name in ("toolkit_version", "metadata"):
                continue
            raise ValueError(f"no {name!r}")
        value, expected = data[name], python_types.get(str(kind))
        if expected and (not isinstance(value, expected) or (bool not in expected and isinstance(value, bool))):
            raise ValueError(f"{name!r} is {value!r}, expected a {kind}")
    if data["plan_size_bytes"] < 0:
        raise ValueError("'plan_size_bytes' is negative")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ValueError("'metadata' must map strings to strings")
    _check_profile(data["profile"])


def _check_profile(profile: Any) -> None:
    shapes = [profile.get(k) if isinstance(profile, dict) else None for k in ("min", "opt", "max")]
    for shape in shapes:
        if not (isinstance(shape, list) and len(shape) == 4 and all(type(d) is int and d > 0 for d in shape)):
            raise ValueError(f"'profile' needs min, opt and max shapes of 4 positive integers, got {profile!r}")
    lo, opt, hi = (shape[0] for shape in shapes)  # type: ignore[index]
    if not 1 <= lo <= opt <= hi <= MAX_PROFILE_BATCH:
        raise ValueError(
            f"'profile' batches must satisfy 1 <= min <= opt <= max <= {MAX_PROFILE_BATCH}, got {lo}/{opt}/{hi}"
        )
    if len({tuple(shape[1:]) for shape in shapes}) != 1 or any(d > 16384 for d in shapes[2][1:]):  # type: ignore[index]
        raise ValueError(f"'profile' image shape must be one C,H,W of at most 16384, got {profile!r}")


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
    p = check_readable(plan, "TensorRT plan", PLAN_MAX_BYTES, error=EngineError, missing=f"engine not found: {plan}")
    sidecar = Sidecar.from_file(sidecar_path(p))
    size = p.stat().st_size
    if size != sidecar.plan_size_bytes:  # refused unread: never more bytes than the sidecar describes
        raise EngineError(
            f"{p.name} does not match its sidecar (size {size} vs {sidecar.plan_size_bytes}): "
            "the plan is truncated or altered; rebuild it"
        )
    data = read_bytes_capped(p, "TensorRT plan", size, error=EngineError)
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
