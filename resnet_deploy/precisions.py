"""The precision registry: every fact about a precision in one entry.

A precision lives in the ONNX graph (fp16 tensors; int8 as symmetric Q/DQ pairs), which is what
TensorRT 10.12+/11 strongly typed builds need. Its entry says how its artifacts are named, how
closely it must match fp32 (when converted, and when checked), and which builder flags an older,
weakly typed TensorRT needs. The graph transform that makes it is registered beside the transforms
(``precision.CONVERTERS``). Adding a precision: one entry here, one converter there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .choices import Precision as Precision
from .errors import ConfigError
from .metrics import Tolerance


@dataclass(frozen=True)
class PrecisionSpec:
    precision: Precision
    suffix: str  # the artifact name part: resnet50{suffix}.onnx
    convert_tolerance: Tolerance  # the conversion's own gate, against the fp32 ONNX
    check_random: Tolerance  # ``check``'s default on seeded random inputs
    check_images: Tolerance  # ``check``'s default on real images (top-1 waived for random weights)
    trt_weak_flags: tuple[str, ...] = ()  # BuilderFlags for TensorRT < 10.12 (weakly typed builds)

    @property
    def name(self) -> str:
        return self.precision.value


_FP32 = Tolerance(scale_rtol=1e-4)
PRECISIONS: dict[Precision, PrecisionSpec] = {
    # fp32 must match PyTorch to float rounding.
    Precision.fp32: PrecisionSpec(Precision.fp32, "", _FP32, _FP32, _FP32),
    # fp16 keeps ~3 significant digits: judged by direction and ranking, not a tight abs tolerance.
    Precision.fp16: PrecisionSpec(
        Precision.fp16,
        ".fp16",
        convert_tolerance=Tolerance(scale_rtol=2e-2, min_cosine=0.999),
        check_random=Tolerance(scale_rtol=None, min_cosine=0.999),
        check_images=Tolerance(scale_rtol=None, min_cosine=0.999, min_top1_agreement=0.98),
        trt_weak_flags=("FP16",),
    ),
    # int8 must still point the same way as fp32 and, with trained weights, keep its answers.
    Precision.int8: PrecisionSpec(
        Precision.int8,
        ".int8",
        convert_tolerance=Tolerance(scale_rtol=None, min_cosine=0.95),
        check_random=Tolerance(scale_rtol=None, min_cosine=0.95),
        check_images=Tolerance(scale_rtol=None, min_cosine=0.95, min_top1_agreement=0.9),
        trt_weak_flags=("FP16", "INT8"),
    ),
}

# check's defaults per candidate precision, by input kind (kept under its old name).
DEFAULT_TOLERANCES: dict[str, dict[str, Tolerance]] = {
    spec.name: {"random": spec.check_random, "images": spec.check_images} for spec in PRECISIONS.values()
}


def precision_spec(precision: str | Precision) -> PrecisionSpec:
    """The registry entry of ``precision`` (a ConfigError naming the choices for an unknown one)."""
    try:
        return PRECISIONS[Precision(precision)]
    except ValueError:
        choices = ", ".join(p.value for p in PRECISIONS)
        raise ConfigError(f"unknown precision {precision!r}: choose one of {choices}") from None


def precision_suffixes() -> tuple[str, ...]:
    """Every precision's name part, longest first (``.fp16``, ``.int8``, and ``.fp32`` for fp32)."""
    return tuple(f".{p.value}" for p in PRECISIONS)
