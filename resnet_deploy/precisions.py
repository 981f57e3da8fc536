"""The precision registry: every fact about a precision in one entry.

A precision lives in the ONNX graph (fp16 tensors; int8 as symmetric Q/DQ pairs), which is what
TensorRT 10.12+/11 strongly typed builds need. Its entry says how its artifacts are named, how
closely it must match fp32 (when converted, and when checked), and which builder flags an older,
weakly typed TensorRT needs. The graph transform that makes it is registered beside the transforms
(``precision.CONVERTERS``). Adding a precision: one entry here, one converter there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .choices import Precision as Precision
from .errors import ConfigError
from .metrics import Tolerance


@dataclass(frozen=True)
class PrecisionSpec:
    precision: Precision
    suffix: str  # the artifact name part: resnet50{suffix}.onnx
    convert_tolerance: Tolerance  # the conversion's own gate, against the fp32 ONNX (trained weights)
    check_random: Tolerance  # ``check``'s default on seeded random inputs (trained weights)
    check_images: Tolerance  # ``check``'s default on real images (trained weights)
    # Whether seeded noise inputs are judged across samples. int8 ranges are calibrated on the data
    # the model serves; noise lies outside them, so a good int8 model calibrated on images scores
    # 3-4 dB on noise (measured) and is judged on images instead.
    noise_judged: bool = True
    # A layer of ``check --layers`` diverges when its SQNR (against its activations' spread across
    # samples) falls under this; the first such layer in depth order is where the conversion broke.
    layer_sqnr_db: float = 60.0
    trt_weak_flags: tuple[str, ...] = ()  # BuilderFlags for TensorRT < 10.12 (weakly typed builds)

    @property
    def name(self) -> str:
        return self.precision.value

    def gate(self, kind: str, trained: bool) -> Tolerance:
        """The default tolerance for ``kind`` (convert | random | images): with random weights,
        top-1 agreement is reported, not required (their predictions mean nothing)."""
        tol = {"convert": self.convert_tolerance, "random": self.check_random, "images": self.check_images}[kind]
        return tol if trained else replace(tol, min_top1_agreement=None)


# Thresholds from benchmarks/results/parity_metric.md: each good conversion passes with margin,
# and each wrong candidate (the mirrored or shifted image, samples out of order, other weights)
# fails on SQNR or retrieval. Cosine stays as a floor; it cannot tell a wrong input by itself.
_FP32 = Tolerance(scale_rtol=1e-4, min_retrieval=1.0)
_FP16 = Tolerance(scale_rtol=None, min_cosine=0.999, min_sqnr_db=25.0, min_retrieval=1.0)
# One SQNR floor per precision for every model: random-weight logits spread little across inputs,
# so a good int8 conversion scores 8-10 dB there and 30+ dB on a trained model; the floor is set
# under the random-weight one, and retrieval (with top-1 on trained images) tells wrong inputs.
_INT8 = Tolerance(scale_rtol=None, min_cosine=0.95, min_sqnr_db=5.0, min_retrieval=0.9)
PRECISIONS: dict[Precision, PrecisionSpec] = {
    # fp32 must match PyTorch to float rounding.
    Precision.fp32: PrecisionSpec(Precision.fp32, "", _FP32, _FP32, _FP32, layer_sqnr_db=60.0),
    # fp16 keeps ~3 significant digits: judged by its error against the logits' spread, not an abs tolerance.
    Precision.fp16: PrecisionSpec(
        Precision.fp16,
        ".fp16",
        convert_tolerance=_FP16,
        check_random=_FP16,
        check_images=replace(_FP16, min_top1_agreement=0.98),
        layer_sqnr_db=25.0,
        trt_weak_flags=("FP16",),
    ),
    # int8 must stay well inside the logits' spread and, with trained weights, keep its answers.
    Precision.int8: PrecisionSpec(
        Precision.int8,
        ".int8",
        convert_tolerance=replace(_INT8, min_top1_agreement=0.9),
        check_random=_INT8,
        check_images=replace(_INT8, min_top1_agreement=0.9),
        noise_judged=False,
        layer_sqnr_db=5.0,
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
