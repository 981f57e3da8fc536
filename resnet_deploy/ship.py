"""``ship``: an artifact -> a model in an NVIDIA Triton Inference Server model repository.

Layout (Triton's): ``REPO/<name>/config.pbtxt``, ``REPO/<name>/labels.txt`` and
``REPO/<name>/<version>/model.onnx`` (platform ``onnxruntime_onnx``) or ``model.plan`` (platform
``tensorrt_plan``, with its sidecar ``model.plan.json`` beside it). The artifact's parity record
is copied beside the model file, so the repository carries its own evidence.

Only verified artifacts ship: the parity record must be present, passing, and for these exact
bytes (its sha256), a plan must match its sidecar, and random (untrained) weights are refused;
``force`` overrides the first and the last, and the refusal reasons are then kept in the report.
The version folder is assembled under a hidden temp name and renamed into place, so Triton (which
polls repositories) never sees a half-written version.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .artifacts import artifact_metadata, load_onnx
from .errors import ConfigError, ResnetDeployError
from .records import record_path, record_problem
from .reports import atomic_write_text
from .weights import sha256_file

KINDS = ("gpu", "cpu")
ACCELERATOR_PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_MAX_BATCH = 64
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}


def triton_max_batch(requested: int | None, profile: tuple[int, int] | None, preferred: Sequence[int]) -> int:
    """Triton's ``max_batch_size`` for a dynamic-batch artifact: ``requested``, else an engine's
    profile max, else 64. Triton sends every batch size from 1 up to it, so an engine's profile
    ``(min, max)`` must start at 1 and reach it, and the preferred sizes must fit under it."""
    if profile is not None and profile[0] > 1:
        raise ConfigError(
            f"the engine's profile starts at batch {profile[0]}: Triton sends batches from 1; rebuild with --min-batch 1"
        )
    size = requested if requested is not None else (profile[1] if profile is not None else DEFAULT_MAX_BATCH)
    if size <= 0:
        raise ConfigError(f"--max-batch {size}: must be a positive integer")
    if profile is not None and size > profile[1]:
        raise ConfigError(f"--max-batch {size} exceeds the engine's profile (batch {profile[0]}-{profile[1]})")
    too_big = [b for b in preferred if b > size]
    if too_big:
        raise ConfigError(f"--preferred-batch {too_big} exceeds max_batch_size {size}")
    return size


def check_model_name(name: str) -> None:
    """A Triton model name that is also a safe folder name."""
    if not _NAME.match(name):
        raise ConfigError(f"model name {name!r}: use letters, digits, '_', '-' and '.' (not first)")


class ShipRefused(ResnetDeployError):
    """The artifact is not fit to ship (no passing parity record, random weights...)."""


@dataclass
class ShipReport:
    repository: str
    model_dir: str
    version_dir: str
    name: str
    version: int
    platform: str
    max_batch_size: int
    input: dict[str, Any]
    output: dict[str, Any]
    files: list[str]
    config: str
    artifact: str
    artifact_sha256: str
    labels: str | None
    forced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    validated_with: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class _Io:
    input_name: str
    input_dtype: str
    input_dims: list[int]  # without the batch dim
    input_format: str  # FORMAT_NCHW | FORMAT_NHWC
    output_name: str
    output_dtype: str
    output_dims: list[int]
    fixed_batch: int | None  # an ONNX exported with a fixed batch
    profile: tuple[int, int] | None  # an engine's (min, max) batch


def _onnx_io(path: Path) -> _Io:
    model = load_onnx(path, load_weights=False)
    from onnx import helper

    def describe(v: Any) -> tuple[str, str, list[int | str]]:
        t = v.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name
        return v.name, dtype, [d.dim_param or d.dim_value for d in t.shape.dim]

    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ConfigError(f"{path.name}: expected one input and one output")
    iname, idtype, idims = describe(inputs[0])
    oname, odtype, odims = describe(model.graph.output[0])
    if len(idims) != 4 or len(odims) != 2:
        raise ConfigError(f"{path.name}: expected a 4-D image input and a 2-D [batch, classes] output")
    fixed = idims[0] if isinstance(idims[0], int) and idims[0] > 0 else None
    nhwc = idims[3] == 3 and idims[1] != 3
    return _Io(
        iname,
        idtype,
        [int(d) for d in idims[1:]],
        "FORMAT_NHWC" if nhwc else "FORMAT_NCHW",
        oname,
        odtype,
        [int(odims[1])],
        fixed,
        None,
    )


def _plan_io(path: Path) -> tuple[_Io, Any]:
    from .engine import verify_plan

    _, sidecar = verify_plan(path, None)  # integrity: the bytes are the ones the sidecar describes
    meta = sidecar.metadata
    shape = [int(d) for d in sidecar.profile["max"][1:]]
    nhwc = meta.get("input_format") == "uint8-nhwc"
    io = _Io(
        sidecar.input_name,
        meta.get("input_dtype", "float32"),
        shape,
        "FORMAT_NHWC" if nhwc else "FORMAT_NCHW",
        sidecar.output_name,
        meta.get("output_dtype", "float32"),
        [int(meta.get("num_classes", "0"))],
        None,
        (int(sidecar.profile["min"][0]), int(sidecar.profile["max"][0])),
    )
    if io.output_dims[0] <= 0:
        raise ConfigError(f"the sidecar of {path.name} does not say how many classes the model has")
    return io, sidecar


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _triton_type(dtype: str) -> str:
    if dtype not in _TRITON_TYPES:
        raise ConfigError(f"no Triton type for a {dtype} tensor")
    return _TRITON_TYPES[dtype]


def _signature(text: str) -> str:
    """What every version of a model must agree on: platform, batching limit, input and output."""
    body = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    keep, depth, in_io = [], 0, False
    for line in body:
        if line.startswith(("platform:", "max_batch_size:")):
            keep.append(line)
        if line in ("input [", "output ["):
            in_io, depth = True, 0
        if in_io:
            if not line.startswith("label_filename"):
                keep.append(line)
            depth += line.count("[") - line.count("]")
            if depth == 0:
                in_io = False
    return "\n".join(keep)


def _check_same_model(config_path: Path, text: str, model_dir: Path, version: int, names: list[str] | None) -> None:
    """Triton serves every version folder of a model with the one config.pbtxt: refuse a version
    that would change what the other versions are (platform, batch limit, input, output, labels)."""
    current = config_path.read_text(encoding="utf-8", errors="replace")
    others = sorted(
        int(d.name) for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit() and int(d.name) != version
    )
    if not others:
        return
    if "Written by resnet-deploy" not in current:
        raise ConfigError(f"{model_dir} holds a model resnet-deploy did not write: ship under another --name")
    labels_path = model_dir / "labels.txt"
    old_labels = labels_path.read_text(encoding="utf-8", errors="replace").split() if labels_path.is_file() else None
    new_labels = "\n".join(names).split() if names is not None else None
    if _signature(current) != _signature(text) or old_labels != new_labels:
        raise ConfigError(
            f"{model_dir} holds version(s) {', '.join(map(str, others))} with another platform, batch limit, "
            "input, output or labels, and one config.pbtxt serves them all: ship this under another --name"
        )


def _clean(text: str) -> str:
    """One line of printable text for a config comment."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    *,
    name: str,
    platform: str,
    io: _Io,
    max_batch_size: int,
    kind: str,
    instances: int,
    preferred_batch: Sequence[int],
    max_queue_delay_us: int | None,
    labels: bool,
    accelerator_precision: str | None,
    header: Sequence[str] = (),
) -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``)."""
    lines = [f"# {_clean(h)}" for h in header]
    lines += [f"name: {_quote(name)}", f"platform: {_quote(platform)}", f"max_batch_size: {max_batch_size}"]
    in_dims = io.input_dims if max_batch_size > 0 else [io.fixed_batch or 1, *io.input_dims]
    out_dims = io.output_dims if max_batch_size > 0 else [io.fixed_batch or 1, *io.output_dims]
    lines += ["input [", "  {", f"    name: {_quote(io.input_name)}", f"    data_type: {_triton_type(io.input_dtype)}"]
    if max_batch_size > 0:  # Triton's image formats describe the 3 non-batch dims
        lines.append(f"    format: {io.input_format}")
    lines += [f"    dims: {_dims(in_dims)}", "  }", "]"]
    lines += [
        "output [",
        "  {",
        f"    name: {_quote(io.output_name)}",
        f"    data_type: {_triton_type(io.output_dtype)}",
    ]
    lines.append(f"    dims: {_dims(out_dims)}")
    if labels:
        lines.append('    label_filename: "labels.txt"')
    lines += ["  }", "]"]
    lines += ["instance_group [", "  {", f"    count: {instances}", f"    kind: KIND_{kind.upper()}", "  }", "]"]
    if max_batch_size > 0 and max_queue_delay_us is not None:
        lines.append("dynamic_batching {")
        if preferred_batch:
            lines.append(f"  preferred_batch_size: {_dims(preferred_batch)}")
        lines += [f"  max_queue_delay_microseconds: {max_queue_delay_us}", "}"]
    if accelerator_precision is not None:
        lines += [
            "optimization {",
            "  execution_accelerators {",
            "    gpu_execution_accelerator: [",
            "      {",
            '        name: "tensorrt"',
            f'        parameters {{ key: "precision_mode" value: "{accelerator_precision.upper()}" }}',
            '        parameters { key: "max_workspace_size_bytes" value: "4294967296" }',
            '        parameters { key: "trt_engine_cache_enable" value: "1" }',
            f'        parameters {{ key: "trt_engine_cache_path" value: "/tmp/triton-trt-cache/{name}" }}',
            "      }",
            "    ]",
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def validate_config(text: str) -> str:
    """Parse ``text`` with Triton's own ``ModelConfig`` schema when tritonclient is installed.
    Returns what validated it ("" when the schema is not available here)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return ""
    try:
        text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:  # a bug here, not a user error
        raise ResnetDeployError(f"internal error: the generated config.pbtxt does not parse: {e}") from None
    return "tritonclient.grpc.model_config_pb2.ModelConfig"


def parse_batch_list(text: str | Sequence[int] | None) -> list[int]:
    if text is None:
        return []
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--preferred-batch {text!r}: expected sizes like 8,16") from None
    else:
        values = [int(v) for v in text]
    if any(v <= 0 for v in values):
        raise ConfigError(f"preferred batch sizes must be positive, got {values}")
    return sorted(set(values))


def ship(
    artifact: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: int = 1,
    max_batch: int | None = None,
    instances: int = 1,
    kind: str = "gpu",
    preferred_batch: str | Sequence[int] | None = None,
    max_queue_delay_us: int | None = 100,
    accelerator: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    force: bool = False,
    replace: bool = False,
) -> ShipReport:
    """Put ``artifact`` (a toolkit ONNX or TensorRT plan) into the Triton model repository ``repo``.

    ``accelerator``: for an ONNX on GPU instances, run it through ONNX Runtime's TensorRT
    execution provider at this precision (fp32 | fp16 | int8). ``max_queue_delay_us=None``
    turns dynamic batching off."""
    src = Path(artifact)
    if not src.exists():
        raise ConfigError(f"file not found: {src}")
    if src.is_dir():
        raise ConfigError(f"expected an artifact file, got a folder: {src}")
    suffix = src.suffix.lower()
    if suffix not in (".onnx", ".plan", ".engine"):
        raise ConfigError(f"{src.name}: ship takes an .onnx file or a TensorRT .plan/.engine")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: choose gpu or cpu")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 2**63:
        # Triton parses version folders with stoll: a larger number aborts the whole server
        raise ConfigError(f"--version {version}: must be an integer in 1-{2**63 - 1}")
    if instances <= 0:
        raise ConfigError(f"--instances {instances}: must be a positive integer")
    if max_queue_delay_us is not None and max_queue_delay_us < 0:
        raise ConfigError(f"--max-queue-delay-us {max_queue_delay_us}: must be >= 0")
    preferred = parse_batch_list(preferred_batch)
    if max_queue_delay_us is None and preferred:
        raise ConfigError("--preferred-batch configures the dynamic batcher: drop --no-dynamic-batching")
    repo_path = Path(repo).expanduser()
    if repo_path.exists() and not repo_path.is_dir():
        raise ConfigError(f"--repo {repo_path} is a file, not a folder")
    if not repo_path.parent.is_dir():
        raise ConfigError(f"the folder above --repo does not exist: {repo_path.parent}")
    probe_dir = repo_path if repo_path.is_dir() else repo_path.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"cannot write in {probe_dir} ({e.strerror})") from None

    meta = artifact_metadata(src)
    if "model" not in meta or "image_size" not in meta:
        raise ConfigError(f"{src.name} was not made by resnet-deploy (no model metadata): export it first")
    model_name = name or meta["model"]
    check_model_name(model_name)

    warnings: list[str] = []
    if suffix == ".onnx":
        platform, filename = "onnxruntime_onnx", "model.onnx"
        io = _onnx_io(src)
        sidecar = None
    else:
        if kind == "cpu":
            raise ConfigError("a TensorRT plan runs on GPU instances only: drop --kind cpu, or ship the ONNX")
        if accelerator is not None:
            raise ConfigError("--accelerator is for ONNX models (ONNX Runtime's TensorRT provider), not plans")
        platform, filename = "tensorrt_plan", "model.plan"
        io, sidecar = _plan_io(src)
    if accelerator is not None:
        accelerator = accelerator.strip().lower()
        if accelerator not in ACCELERATOR_PRECISIONS:
            raise ConfigError(f"--accelerator {accelerator!r}: choose one of {', '.join(ACCELERATOR_PRECISIONS)}")
        if kind != "gpu":
            raise ConfigError("--accelerator (ONNX Runtime's TensorRT provider) needs --kind gpu")
        precision = meta.get("precision", "fp32")
        if accelerator == "int8" and precision != "int8":
            raise ConfigError("--accelerator int8 runs Q/DQ models: ship the int8 ONNX (export --precision int8)")
        if precision == "int8" and accelerator != "int8":
            warnings.append(
                "an int8 (Q/DQ) model under --accelerator fp32/fp16 runs its Q/DQ pairs without int8 kernels"
            )

    # Batch limits
    if io.fixed_batch is not None:
        if max_batch not in (None, 0):
            raise ConfigError(f"{src.name} has a fixed batch of {io.fixed_batch}: it cannot batch (omit --max-batch)")
        if preferred:
            raise ConfigError(
                f"{src.name} has a fixed batch of {io.fixed_batch}: --preferred-batch needs a dynamic batch"
            )
        max_batch_size = 0
        warnings.append(
            f"fixed batch of {io.fixed_batch}: clients must send exactly {io.fixed_batch} images; no dynamic batching"
        )
    else:
        max_batch_size = triton_max_batch(max_batch, io.profile, preferred)

    # Evidence
    # (a plan's bytes were hashed against its sidecar a moment ago by verify_plan)
    digest = sidecar.plan_sha256 if sidecar is not None else sha256_file(src)
    problems = []
    problem = record_problem(src, digest)
    if problem:
        hint = f"run 'resnet-deploy check {src}'" + (" --reference ONNX" if sidecar is not None else "")
        problems.append(f"{problem}; {hint}")
    if meta.get("weights_trained", "true") != "true":
        problems.append(
            f"{src.name} was exported from random (untrained) weights ({meta.get('weights', 'random')}): "
            "its answers are meaningless"
        )
    if problems and not force:
        raise ShipRefused("refusing to ship: " + "; ".join(problems) + " (--force ships it anyway)")

    # Labels
    from .predictor import class_names

    names: list[str] | None = None
    num_classes = io.output_dims[0]
    if labels is not None:
        names = class_names({"num_classes": str(num_classes)}, labels)
    elif meta.get("labels") in ("imagenet", "cifar10"):
        names = class_names(meta)
        if len(names) != num_classes or names == [str(i) for i in range(num_classes)]:
            names = None
    if names is None:
        warnings.append(f"{num_classes} custom classes and no --labels file: no label_filename in the config")

    model_dir = repo_path / model_name
    version_dir = model_dir / str(version)
    config_path = model_dir / "config.pbtxt"
    if model_dir.exists() and not model_dir.is_dir():
        raise ConfigError(f"{model_dir} is a file, not a model folder")
    if config_path.exists() and not config_path.is_file():
        raise ConfigError(f"{config_path} is not a file")
    if version_dir.exists() and not replace:
        raise ConfigError(f"{version_dir} exists: choose another --version, or --replace it")

    header = [
        f"Written by resnet-deploy {__version__} from {src.name} (sha256 {digest[:16]}...)",
        f"model {meta.get('model')}, {meta.get('precision', 'fp32')}, weights {meta.get('weights', '?')}",
        f"input {meta.get('input_format', 'float32-nchw')}: {meta.get('image_size')} crop of a "
        f"{meta.get('resize_size')} resize, mean {meta.get('mean')}, std {meta.get('std')}",
    ]
    if sidecar is not None:
        header.append(
            f"engine: TensorRT {sidecar.tensorrt_version}, built on {sidecar.gpu_name} (sm {sidecar.compute_capability}); "
            "Triton must run the same TensorRT version"
        )
    if problems:
        header.append("SHIPPED WITH --force: " + "; ".join(problems))
    text = render_config(
        name=model_name,
        platform=platform,
        io=io,
        max_batch_size=max_batch_size,
        kind=kind,
        instances=instances,
        preferred_batch=preferred,
        max_queue_delay_us=max_queue_delay_us,
        labels=names is not None,
        accelerator_precision=accelerator,
        header=header,
    )
    validated = validate_config(text)
    if not validated:
        warnings.append("tritonclient is not installed: config.pbtxt was not parsed with Triton's schema")
    if config_path.is_file():
        _check_same_model(config_path, text, model_dir, version, names)

    repo_path.mkdir(exist_ok=True)
    new_model = not model_dir.exists()
    # A new model is assembled whole under a hidden name and renamed into place; an existing one
    # (same signature, checked above) gets its config and labels first, then the new version.
    root = Path(tempfile.mkdtemp(prefix=f".{model_name}.", suffix=".tmp", dir=repo_path if new_model else model_dir))
    try:
        staging = root / str(version)
        staging.mkdir()
        shutil.copyfile(src, staging / filename)
        files = [filename]
        if sidecar is not None:
            from .engine import sidecar_path

            shutil.copyfile(sidecar_path(src), staging / f"{filename}.json")
            files.append(f"{filename}.json")
        if record_path(src).is_file():
            shutil.copyfile(record_path(src), staging / f"{filename}.parity.json")
            files.append(f"{filename}.parity.json")
        if sha256_file(staging / filename) != digest:
            raise ResnetDeployError(f"{src.name} changed while it was being copied: ship it again")
        for d in (root, staging):
            os.chmod(d, 0o755)
        if new_model:
            if names is not None:
                (root / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
            (root / "config.pbtxt").write_text(text, encoding="utf-8")
            os.replace(root, model_dir)
        else:
            if names is not None:
                atomic_write_text(model_dir / "labels.txt", "\n".join(names) + "\n")
            atomic_write_text(config_path, text)
            if version_dir.exists():  # --replace: the old version is gone for the moment of two renames
                os.replace(version_dir, root / "old")
            os.replace(staging, version_dir)
    finally:
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
    return ShipReport(
        repository=str(repo_path.resolve()),
        model_dir=str(model_dir.resolve()),
        version_dir=str(version_dir.resolve()),
        name=model_name,
        version=version,
        platform=platform,
        max_batch_size=max_batch_size,
        input={"name": io.input_name, "dtype": io.input_dtype, "dims": io.input_dims, "format": io.input_format},
        output={"name": io.output_name, "dtype": io.output_dtype, "dims": io.output_dims},
        files=[f"{version}/{f}" for f in files] + (["labels.txt"] if names is not None else []) + ["config.pbtxt"],
        config=text,
        artifact=str(src.resolve()),
        artifact_sha256=digest,
        labels=str((model_dir / "labels.txt").resolve()) if names is not None else None,
        forced=problems,
        warnings=warnings,
        validated_with=validated,
    )
