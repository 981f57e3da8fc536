"""Triton's rules, in one place for ``ship`` (a model repository) and ``serve`` (a live server).

What Triton itself decides, not how this toolkit ships or serves: which model names it takes, how
``max_batch_size`` relates to an engine's batch profile and to the preferred batch sizes, the
instance and dynamic-batcher limits, the tensor types and image formats of a ``config.pbtxt``, how
that file is written (protobuf text format of Triton's ``ModelConfig``), which part of it every
version of a model must agree on, and its validation with Triton's own schema (tritonclient,
imported only when asked for).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .choices import Kind
from .errors import ConfigError, ResnetDeployError
from .metrics import MAX_BATCH_SIZE

KINDS = tuple(k.value for k in Kind)
ACCELERATOR_PRECISIONS = ("fp32", "fp16", "int8")  # ONNX Runtime's TensorRT provider: precision_mode
DEFAULT_MAX_BATCH = 64
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # whole names only (fullmatch: no trailing newline)
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}


@dataclass(frozen=True)
class ModelIo:
    """A model's one input and one output, as its ``config.pbtxt`` describes them."""

    input_name: str
    input_dtype: str
    input_dims: list[int]  # without the batch dim
    input_format: str  # FORMAT_NCHW | FORMAT_NHWC
    output_name: str
    output_dtype: str
    output_dims: list[int]
    fixed_batch: int | None  # an ONNX exported with a fixed batch
    profile: tuple[int, int] | None  # an engine's (min, max) batch


def triton_format(nhwc: bool) -> str:
    """Triton's name for the layout of an image input's 3 non-batch dims."""
    return "FORMAT_NHWC" if nhwc else "FORMAT_NCHW"


MAX_NAME_LENGTH = 128  # a folder name with room to spare, and short enough for PyTriton's socket paths
MAX_INSTANCES = 256
MAX_QUEUE_DELAY_US = 60_000_000  # a minute: a batcher that waits longer serves no one
MAX_SERVED_BATCH = MAX_BATCH_SIZE  # as export --batch and the batch sizes check/bench take


def check_model_name(name: str) -> None:
    """A Triton model name that is also a safe folder name."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"model name {name!r}: use letters, digits, '_', '-' and '.' (not first)")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"model name of {len(name)} characters: at most {MAX_NAME_LENGTH}")


def check_instances(instances: int) -> None:
    """The instance count of an ``instance_group``."""
    if not 0 < instances <= MAX_INSTANCES:
        raise ConfigError(f"--instances {instances}: must be in 1-{MAX_INSTANCES}")


def check_queue_delay(max_queue_delay_us: int | None) -> None:
    """The dynamic batcher's ``max_queue_delay_microseconds`` (None: no dynamic batcher)."""
    if max_queue_delay_us is not None and not 0 <= max_queue_delay_us <= MAX_QUEUE_DELAY_US:
        raise ConfigError(f"--max-queue-delay-us {max_queue_delay_us}: must be in 0-{MAX_QUEUE_DELAY_US}")


def parse_batch_list(text: str | Sequence[int] | None) -> list[int]:
    """Preferred batch sizes from ``"8,16"`` or a sequence: positive, sorted, without repeats."""
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


def triton_max_batch(requested: int | None, profile: tuple[int, int] | None, preferred: Sequence[int]) -> int:
    """Triton's ``max_batch_size`` for a dynamic-batch artifact: ``requested``, else an engine's
    profile max, else 64. Triton sends every batch size from 1 up to it, so an engine's profile
    ``(min, max)`` must start at 1 and reach it, and the preferred sizes must fit under it."""
    if profile is not None and profile[0] > 1:
        raise ConfigError(
            f"the engine's profile starts at batch {profile[0]}: Triton sends batches from 1; rebuild with --min-batch 1"
        )
    size = requested if requested is not None else (profile[1] if profile is not None else DEFAULT_MAX_BATCH)
    if not 0 < size <= MAX_SERVED_BATCH:
        raise ConfigError(f"--max-batch {size}: must be in 1-{MAX_SERVED_BATCH}")
    if profile is not None and size > profile[1]:
        raise ConfigError(f"--max-batch {size} exceeds the engine's profile (batch {profile[0]}-{profile[1]})")
    too_big = [b for b in preferred if b > size]
    if too_big:
        raise ConfigError(f"--preferred-batch {too_big} exceeds max_batch_size {size}")
    return size


# ------------------------------------------------------------------------------------ config.pbtxt


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _triton_type(dtype: str) -> str:
    if dtype not in _TRITON_TYPES:
        raise ConfigError(f"no Triton type for a {dtype} tensor")
    return _TRITON_TYPES[dtype]


def _clean(text: str) -> str:
    """One line of printable text for a config comment."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    *,
    name: str,
    platform: str,
    io: ModelIo,
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


def config_signature(text: str) -> str:
    """What every version of a model must agree on, since Triton serves them all with the one
    ``config.pbtxt``: platform, batching limit, input and output (labels aside)."""
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
