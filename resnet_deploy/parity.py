"""Compare a candidate's outputs with a reference's, with pluggable tolerances.

Running the runners and comparing their results are separate steps (as in Polygraphy): this module
only looks at arrays, so the same comparison serves export verification, ``check`` and tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria. ``scale_rtol``: max |ref - cand| <= scale_rtol * max |ref| (the logits' scale)."""

    scale_rtol: float | None = 1e-4
    min_cosine: float | None = None
    min_top1_agreement: float | None = None

    def describe(self) -> str:
        parts = []
        if self.scale_rtol is not None:
            parts.append(f"max|diff| <= {self.scale_rtol:g} x max|ref|")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        if self.min_top1_agreement is not None:
            parts.append(f"top-1 agreement >= {self.min_top1_agreement:g}")
        return " and ".join(parts) or "none"


FP32_TOLERANCE = Tolerance(scale_rtol=1e-4)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def refuse_or_keep(report: Any, message: str, keep: str | None) -> None:
    """The verdict on a failed comparison: raise ParityError with the report (the caller writes
    nothing) unless ``keep`` names why the file is kept anyway, which the report's warnings say."""
    from .errors import ParityError

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
    )


# ------------------------------------------------------------------------------ runners compared

# Defaults per candidate precision. fp32 must match to float rounding; fp16 and int8 are judged
# by direction (cosine) and, on real images with trained weights, by keeping the top-1 answer.
DEFAULT_TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "fp32": {"random": Tolerance(scale_rtol=1e-4), "images": Tolerance(scale_rtol=1e-4)},
    "fp16": {
        "random": Tolerance(scale_rtol=None, min_cosine=0.999),
        "images": Tolerance(scale_rtol=None, min_cosine=0.999, min_top1_agreement=0.98),
    },
    "int8": {
        "random": Tolerance(scale_rtol=None, min_cosine=0.95),
        "images": Tolerance(scale_rtol=None, min_cosine=0.95, min_top1_agreement=0.9),
    },
}


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


def random_inputs(crop: tuple[int, int], batch_sizes: Sequence[int], seed: int) -> list[NDArray[Any]]:
    """Seeded standard-normal inputs (the space normalised images live in), one array per batch size."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, 3, *crop)).astype(np.float32) for b in batch_sizes]


def _file_sha256(artifact: Any) -> str | None:
    """The sha256 of an artifact given as a file path (None for runners, "torch" and model ids)."""
    if not isinstance(artifact, (str, os.PathLike)) or not os.path.isfile(artifact):
        return None
    from .weights import sha256_file

    return sha256_file(artifact)


def compare(
    candidate: Any,
    reference: Any = "torch",
    *,
    batch_sizes: Sequence[int] = (1, 8),
    images: str | os.PathLike[str] | None = None,
    max_images: int = 64,
    seed: int = 0,
    tolerance: Tolerance | None = None,
    weights: str | None = None,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> CheckReport:
    """Run ``candidate`` and ``reference`` on the same inputs and judge the difference.

    ``candidate``: an artifact path or a Runner. ``reference``: ``"torch"`` (the PyTorch model
    rebuilt from the candidate's metadata and checked against its weights hash), another artifact
    path, or a Runner. Inputs: seeded random tensors at each batch size, plus up to ``max_images``
    real images from ``images`` preprocessed as the candidate's metadata says. ``tolerance``
    overrides the per-precision defaults (``DEFAULT_TOLERANCES``) for every input set.
    """
    import time

    from .errors import ConfigError
    from .runtime.base import Runner, open_runner

    t0 = time.perf_counter()
    if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    # The bytes compared, hashed once before they run (what a parity record vouches for).
    cand_sha, ref_sha = _file_sha256(candidate), _file_sha256(reference)
    if cand_sha is not None and cand_sha == ref_sha and tuple(providers) == ("CPUExecutionProvider",):
        # (the same file on a GPU provider against the CPU is a real check; on the CPU twice it is not)
        raise ConfigError(
            f"the reference {os.path.basename(reference)} is the candidate itself (same bytes): nothing would be checked"
        )
    cand = candidate if isinstance(candidate, Runner) else open_runner(candidate, providers=providers)
    meta = cand.metadata
    precision = meta.get("precision", "fp32")
    if isinstance(reference, Runner):
        ref = reference
    elif str(reference) == "torch":
        from .runtime.pyt import TorchRunner

        ref = TorchRunner.from_metadata(meta, weights=weights, preprocess=cand.preprocess)
    else:
        ref = open_runner(reference)
    if tuple(ref.preprocess.crop) != tuple(cand.preprocess.crop):
        raise ConfigError(f"reference input {ref.preprocess.crop} and candidate input {cand.preprocess.crop} differ")
    if ref.preprocess.pixels and not cand.preprocess.pixels:
        raise ConfigError("the reference takes uint8 pixels and the candidate floats: swap them")

    def ref_input(x: NDArray[Any]) -> NDArray[Any]:
        # A pixel-input candidate against a float reference: the reference gets the same pixels,
        # normalised in numpy exactly as the candidate's graph does it.
        return cand.preprocess.normalize(x) if cand.preprocess.pixels and not ref.preprocess.pixels else x

    notes: list[str] = []
    sizes = list(batch_sizes)
    if cand.fixed_batch is not None and sizes != [cand.fixed_batch]:
        notes.append(f"the candidate has a fixed batch of {cand.fixed_batch}: inputs run in batches of that size")
    trained = meta.get("weights_trained", "true") == "true"
    defaults = DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["fp32"])
    rows: list[ParityRow] = []
    with cand, ref:
        if cand.preprocess.pixels:
            rng = np.random.default_rng(seed)
            xs = [cand.preprocess.random(b, rng) for b in sizes]
        else:
            xs = random_inputs(cand.preprocess.crop, sizes, seed)
        for x in xs:
            tol = tolerance or defaults["random"]
            what = f"random{' pixels' if cand.preprocess.pixels else ''}, batch {len(x)}"
            rows.append(ParityRow(what, compare_outputs(ref.infer_all(ref_input(x)), cand.infer_all(x), tol)))
        if images is not None:
            from .data import iter_batches, list_images

            files = list_images(images)
            if not files:
                from .errors import DataError

                raise DataError(f"no images in {images}")
            picks = np.linspace(0, len(files) - 1, min(max_images, len(files))).round().astype(int)
            skipped: list[tuple[Any, str]] = []
            batches = [b.inputs for b in iter_batches([files[i] for i in picks], cand.preprocess, max(sizes), skipped)]
            if not batches:
                from .errors import DataError

                raise DataError(f"none of the images in {images} could be read")
            x = np.concatenate(batches)
            tol = tolerance or defaults["images"]
            if not trained and tolerance is None and tol.min_top1_agreement is not None:
                tol = Tolerance(tol.scale_rtol, tol.min_cosine, None)
                notes.append("untrained weights: top-1 agreement is reported, not required")
            if skipped:
                notes.append(f"skipped {len(skipped)} unreadable image(s)")
            rows.append(
                ParityRow(
                    f"images ({len(x)} from {images})",
                    compare_outputs(ref.infer_all(ref_input(x)), cand.infer_all(x), tol),
                )
            )
        cand_desc, ref_desc = cand.describe(), ref.describe()
    for desc, sha in ((cand_desc, cand_sha), (ref_desc, ref_sha)):
        if sha is not None:
            desc["sha256"] = sha
    return CheckReport(
        cand_desc, ref_desc, precision, rows, all(r.result.passed for r in rows), time.perf_counter() - t0, notes
    )
