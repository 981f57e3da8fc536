"""Every fixed choice of the toolkit, one Enum each, in a leaf module.

The library's modules take these (and re-export them where they belong: ``precisions.Precision``,
``runtime.registry.Backend``...); the CLI imports the same Enums for its options, so a choice is
defined once and the command line starts without importing torch or ONNX.
"""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    """Where the precision lives: in the ONNX graph (see ``precisions.PRECISIONS``)."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


# The precisions ``convert`` makes: every precision but fp32, the source of each conversion.
ConvertPrecision = Enum(  # type: ignore[misc]
    "ConvertPrecision", {p.name: p.value for p in Precision if p is not Precision.fp32}, type=str
)


class InputFormat(str, Enum):
    """What an artifact's input tensor holds."""

    float32_nchw = "float32-nchw"  # normalised float32 [n, 3, H, W]: what the exported graph takes
    uint8_nhwc = "uint8-nhwc"  # resized + cropped RGB pixels [n, H, W, 3]: normalised inside the graph


class OutputFormat(str, Enum):
    """What ``export`` leaves at the end of the chain."""

    onnx = "onnx"
    engine = "engine"  # the ONNX and a TensorRT plan built from it, checked against it


class CalibMethod(str, Enum):
    """How activation ranges are estimated from the calibration inputs."""

    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class Int8Recipe(str, Enum):
    """Where the int8 model will run: TensorRT's symmetric Q/DQ, or ONNX Runtime's x86 path."""

    tensorrt = "tensorrt"
    cpu = "cpu"


class HighPrecision(str, Enum):
    """The type an int8 graph computes in between its Q/DQ pairs (and in its excluded layers)."""

    fp16 = "fp16"
    fp32 = "fp32"


class Exporter(str, Enum):
    """torch's ONNX exporter (auto: dynamo for opset >= 18)."""

    auto = "auto"
    dynamo = "dynamo"
    torchscript = "torchscript"


class Variant(str, Enum):
    """Where a bottleneck block strides: v1.5 (torchvision, on the 3x3) or v1 (the paper, the 1x1)."""

    v1_5 = "v1.5"
    v1 = "v1"


class Shortcut(str, Enum):
    """The paper's shortcut options: A zero-pad, B project where shapes change, C project always."""

    A = "A"
    B = "B"
    C = "C"


class HardwareCompat(str, Enum):
    """TensorRT's hardware compatibility levels, as the CLI spells them."""

    none = "none"
    ampere_plus = "ampere-plus"
    same_cc = "same-cc"


class Backend(str, Enum):
    """Every way the toolkit can run an artifact (``auto``: by the artifact's kind)."""

    auto = "auto"
    onnxruntime = "onnxruntime"
    onnxruntime_cuda = "onnxruntime-cuda"
    onnxruntime_tensorrt = "onnxruntime-tensorrt"
    tensorrt = "tensorrt"
    torch = "torch"
    openvino = "openvino"


class PerformanceHint(str, Enum):
    """OpenVINO's performance hints: few parallel requests for low latency, or many for throughput."""

    latency = "latency"
    throughput = "throughput"


class Protocol(str, Enum):
    """How a client talks to a Triton server."""

    grpc = "grpc"
    http = "http"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class TorchDtype(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


class Kind(str, Enum):
    """Triton's instance_group kinds: KIND_GPU, KIND_CPU."""

    gpu = "gpu"
    cpu = "cpu"
