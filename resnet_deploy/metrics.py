"""Parity metrics: compare a candidate's outputs with a reference's, with pluggable tolerances.

Pure: arrays in, numbers and a verdict out. Running the runners (``check.py``) and comparing
their results are separate steps, as in Polygraphy, so the same comparison serves export
verification, ``check`` and tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, ParityError


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria. ``scale_rtol``: max |ref - cand| <= scale_rtol * max |ref| (the logits' scale)."""

    scale_rtol: float | None = 1e-4
    min_cosine: float | None = None
    min_top1_agreement: float | None = None
    # The discriminative criteria, judged on batches of at least ``MIN_JUDGED_SAMPLES`` samples
    # (both are measured across samples; benchmarks/results/parity_metric.md):
    min_sqnr_db: float | None = None  # SQNR of the error against the reference's spread across samples
    min_retrieval: float | None = None  # fraction of samples whose nearest reference row is their own

    def __post_init__(self) -> None:
        """A tolerance that cannot mean anything is a usage error, before anything runs (and so
        before a parity record could be replaced by its verdict)."""
        bounds = (
            ("rtol", self.scale_rtol, 0.0, 1.0, "[0, 1): a difference as large as the largest logit says nothing"),
            ("min-cosine", self.min_cosine, -1.0, 1.0, "[-1, 1]"),
            ("min-top1", self.min_top1_agreement, 0.0, 1.0, "[0, 1] (a fraction of the samples)"),
            ("min-sqnr-db", self.min_sqnr_db, -MAX_SQNR_DB, MAX_SQNR_DB, f"[-{MAX_SQNR_DB:g}, {MAX_SQNR_DB:g}] dB"),
            ("min-retrieval", self.min_retrieval, 0.0, 1.0, "[0, 1] (a fraction of the samples)"),
        )
        for name, value, low, high, where in bounds:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"--{name} {value!r}: must be a finite number in {where}")
            if not low <= value <= high or (name == "rtol" and value >= high):
                raise ConfigError(f"--{name} {value:g}: must be in {where}")

    def describe(self) -> str:
        parts = []
        if self.scale_rtol is not None:
            parts.append(f"max|diff| <= {self.scale_rtol:g} x max|ref|")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        if self.min_top1_agreement is not None:
            parts.append(f"top-1 agreement >= {self.min_top1_agreement:g}")
        if self.min_sqnr_db is not None:
            parts.append(f"SQNR >= {self.min_sqnr_db:g} dB")
        if self.min_retrieval is not None:
            parts.append(f"retrieval >= {self.min_retrieval:g}")
        return " and ".join(parts) or "none"

    @property
    def across_samples(self) -> bool:
        """Judged across a batch's samples (SQNR against the spread, retrieval)."""
        return self.min_sqnr_db is not None or self.min_retrieval is not None


MAX_SQNR_DB = 200.0  # an exact match reports this, not infinity (JSON has no infinity)
# The fewest samples a batch needs for SQNR and retrieval to be judged: with fewer, a wrong
# candidate's rows are too few to miss their own reference by chance (1 in 8 at random).
MIN_JUDGED_SAMPLES = 8


FP32_TOLERANCE = Tolerance(scale_rtol=1e-4, min_retrieval=1.0)


def judged_batch_sizes(fixed: int | None) -> tuple[int, ...]:
    """The batches a conversion is verified on: one sample, and enough for SQNR and retrieval to be
    judged (a fixed-batch model runs them in whole batches of its size, the last one padded)."""
    if fixed is None:
        return (1, MIN_JUDGED_SAMPLES)
    return (fixed,) if fixed >= MIN_JUDGED_SAMPLES else (fixed, MIN_JUDGED_SAMPLES)


@dataclass(frozen=True)
class ParityResult:
    """How closely one output batch matches its reference."""

    batch_size: int
    max_abs_diff: float
    max_rel_diff: float  # max |ref - cand| / |ref| (elementwise; large where ref is near 0)
    mean_abs_diff: float
    ref_scale: float  # max |ref|
    diff_to_scale: float  # max_abs_diff / ref_scale: what scale_rtol bounds
    cosine_min: float  # worst per-sample cosine similarity
    cosine_mean: float
    top1_agreement: float  # fraction of samples with the same argmax
    top5_agreement: float  # fraction with the same top-5 set (when there are >= 5 classes)
    passed: bool
    tolerance: str
    # Discriminative numbers (benchmarks/results/parity_metric.md), None for a single sample: logits
    # of *different* inputs are nearly parallel on random weights, so cosine alone cannot tell a
    # candidate that computes on the wrong input; these are gated on batches of >= 8 samples.
    retrieval: float | None = None  # fraction of samples whose nearest reference row is their own
    sqnr_db: float | None = None  # 10 log10(spread of the reference across samples / squared error)
    judged_across_samples: bool = False  # SQNR and retrieval were part of the verdict (>= 8 samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_parity(result: ParityResult) -> str:
    """One result's numbers in a line: what a failure message quotes."""
    parts = []
    if result.sqnr_db is not None:
        parts.append(f"SQNR {result.sqnr_db:.1f} dB")
    if result.retrieval is not None:
        parts.append(f"retrieval {result.retrieval:.0%}")
    parts.append(f"cosine {result.cosine_min:.6f}")
    parts.append(f"top-1 agreement {result.top1_agreement:.0%}")
    parts.append(f"max|diff| {result.diff_to_scale:.3g} x max|logit|")
    return ", ".join(parts) + f" over {result.batch_size} sample(s)"


def refuse_or_keep(report: Any, message: str, keep: str | None) -> None:
    """The verdict on a failed comparison: raise ParityError with the report (the caller writes
    nothing) unless ``keep`` names why the file is kept anyway, which the report's warnings say."""
    if keep is None:
        report.written = False
        raise ParityError(message + "; nothing was written (--allow-mismatch keeps the file)", report)
    report.warnings.append(f"{message}; kept because of {keep}")


def _topk(x: NDArray[Any], k: int) -> NDArray[Any]:
    k = min(k, x.shape[1])
    return np.sort(np.argsort(-x, axis=1, kind="stable")[:, :k], axis=1)


def compare_outputs(
    reference: NDArray[Any], candidate: NDArray[Any], tolerance: Tolerance = FP32_TOLERANCE
) -> ParityResult:
    """Compare two ``[batch, classes]`` output arrays (computed in float64)."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"output shapes differ: reference {ref.shape} vs candidate {cand.shape}")
    if ref.ndim != 2 or ref.shape[0] == 0:
        raise ValueError(f"expected [batch, classes] outputs, got shape {ref.shape}")
    finite = bool(np.isfinite(cand).all() and np.isfinite(ref).all())
    diff = np.abs(ref - cand)
    scale = float(np.abs(ref).max())
    max_abs = float(diff.max()) if finite else float("inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / np.abs(ref)
    rel = np.where(diff == 0, 0.0, rel)
    max_rel = float(np.nanmax(rel)) if finite else float("inf")
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    dots = (ref * cand).sum(axis=1)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(diff.max(axis=1) == 0, 1.0, 0.0))
    top1 = float((ref.argmax(1) == cand.argmax(1)).mean())
    top5 = float((_topk(ref, 5) == _topk(cand, 5)).all(axis=1).mean())
    to_scale = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))

    passed = finite
    if tolerance.scale_rtol is not None:
        passed = passed and to_scale <= tolerance.scale_rtol
    if tolerance.min_cosine is not None:
        passed = passed and float(cos.min()) >= tolerance.min_cosine
    if tolerance.min_top1_agreement is not None:
        passed = passed and top1 >= tolerance.min_top1_agreement
    spread = _discriminative(ref, cand) if finite and ref.shape[0] > 1 else {}
    judged = tolerance.across_samples and finite and ref.shape[0] >= MIN_JUDGED_SAMPLES
    if judged:
        sqnr, retrieval = spread.get("sqnr_db"), spread.get("retrieval")
        if tolerance.min_sqnr_db is not None:  # no spread at all (identical rows): judged by the rest
            passed = passed and (sqnr is None or sqnr >= tolerance.min_sqnr_db)
        if tolerance.min_retrieval is not None and retrieval is not None:
            passed = passed and retrieval >= tolerance.min_retrieval
    return ParityResult(
        batch_size=int(ref.shape[0]),
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        mean_abs_diff=float(diff.mean()) if finite else float("inf"),
        ref_scale=scale,
        diff_to_scale=to_scale if finite else float("inf"),
        cosine_min=float(cos.min()) if finite else float("nan"),
        cosine_mean=float(cos.mean()) if finite else float("nan"),
        top1_agreement=top1,
        top5_agreement=top5,
        passed=bool(passed),
        tolerance=tolerance.describe(),
        judged_across_samples=bool(judged),
        **spread,
    )


def sqnr_db(reference: NDArray[Any], candidate: NDArray[Any]) -> float | None:
    """10 log10(spread of ``reference`` across its samples (axis 0) / squared error), for tensors
    of any shape (a layer's activations as well as logits); None without a spread."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    if ref.shape != cand.shape or ref.shape[0] < 2:
        return None
    return _discriminative(ref, cand, retrieval=False)["sqnr_db"]


def _discriminative(ref: NDArray[Any], cand: NDArray[Any], retrieval: bool = True) -> dict[str, float | None]:
    """Nearest-reference retrieval over the batch, and the error against the reference's spread
    across samples (the common mode that makes all random-weight logits alike is removed)."""
    spread = float(((ref - ref.mean(axis=0)) ** 2).sum())
    error = float(((cand - ref) ** 2).sum())
    found: float | None = None
    if retrieval:
        dist = (cand * cand).sum(1)[:, None] - 2 * cand @ ref.T + (ref * ref).sum(1)[None, :]
        own = np.diagonal(dist)
        found = float((own <= dist.min(axis=1) * (1 + 1e-9) + 1e-12).mean())  # ties (duplicate inputs) count
    if spread <= 0:
        return {"retrieval": found, "sqnr_db": None}
    sqnr = MAX_SQNR_DB if error <= spread * 10 ** (-MAX_SQNR_DB / 10) else 10 * math.log10(spread / error)
    return {"retrieval": found, "sqnr_db": round(sqnr, 3)}


@dataclass(frozen=True)
class ParityRow:
    inputs: str  # "random, batch 8" | "images (64 from DIR)"
    result: ParityResult

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, **self.result.to_dict()}


@dataclass
class CheckReport:
    candidate: dict[str, Any]
    reference: dict[str, Any]
    precision: str
    rows: list[ParityRow]
    passed: bool
    seconds: float = 0.0
    notes: list[str] | None = None
    # What the candidate's metadata says of its weights (for its parity record; not in to_dict).
    weights_trained: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "reference": self.reference,
            "precision": self.precision,
            "passed": self.passed,
            "results": [r.to_dict() for r in self.rows],
            "notes": self.notes or [],
            "seconds": round(self.seconds, 3),
        }


# Batch sizes a comparison or a benchmark may ask for (as ``export --batch``): enough for any
# server-side batch, small enough that a typo is refused instead of exhausting memory.
MAX_BATCH_SIZE = 4096  # the one batch bound: export --batch, check/bench, engine profiles, served batches
MAX_SEED = 2**32 - 1  # numpy's legacy seeds and torch's generators both take this range


def check_batch_sizes(batch_sizes: Sequence[int], what: str = "batch sizes") -> list[int]:
    """Positive integers up to ``MAX_BATCH_SIZE``, at least one; else a ConfigError."""
    sizes = list(batch_sizes)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in sizes):
        raise ConfigError(f"{what} must be positive integers, got {sizes}")
    too_big = [b for b in sizes if b > MAX_BATCH_SIZE]
    if too_big:
        raise ConfigError(f"{what}: {too_big[0]} is over the limit of {MAX_BATCH_SIZE}")
    return sizes


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed {seed}: must be an integer in 0-{MAX_SEED}")
    return seed


def random_inputs(crop: tuple[int, int], batch_sizes: Sequence[int], seed: int) -> list[NDArray[Any]]:
    """Seeded standard-normal inputs (the space normalised images live in), one array per batch size."""
    rng = np.random.default_rng(check_seed(seed))
    return [rng.standard_normal((b, 3, *crop)).astype(np.float32) for b in batch_sizes]
