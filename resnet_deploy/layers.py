"""Where a conversion broke: every reported layer of a candidate compared with a reference.

``compare_layers`` runs a toolkit ONNX candidate (any precision) and its reference (the PyTorch
model rebuilt from the candidate's metadata with BatchNorm folded, or another toolkit ONNX) on the
same inputs and compares each module's output, named as torchvision names the module
(``layer3.0.conv2``; ``layer_names``). The first layer, in depth order, whose SQNR falls under the
candidate precision's ``layer_sqnr_db`` is where the conversion broke: every layer after it
inherits the error.

How the tensors are read is ``layer_taps``' concern (extra graph outputs on an ONNX Runtime CPU
session, as Polygraphy marks them; forward hooks on the PyTorch model). fp16 tensors are compared
in float64.

Memory stays bounded whatever the number of inputs: batches stream through both models and each
layer keeps running sums only (Chan's parallel mean/sum-of-squares for the reference's spread
across samples, the squared and absolute error, per-sample cosines): one float64 vector of a
sample's activations per layer, never every sample. SQNR is exact: ``10 log10(spread / error)``
as ``metrics.sqnr_db`` computes it on the whole set.

Verdicts: ``passed`` is the logits' verdict under the precision's ``check`` gate (what ``check``
judges); ``first_divergent`` is independent of it, a diagnosis (a layer can diverge while the
logits still pass, as a fault in a late layer can show only in the logits). The command fails
(``check_layers``) when either does.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .check import _image_set, _random_sets
from .data import Preprocess
from .errors import ConfigError, DataError, ParityError
from .layer_taps import OnnxTaps, TorchTaps
from .metrics import (
    MAX_SQNR_DB,
    MIN_JUDGED_SAMPLES,
    ParityResult,
    Tolerance,
    check_batch_sizes,
    check_seed,
    compare_outputs,
)
from .onnx_io import ArtifactMeta
from .precisions import PRECISIONS, Precision, PrecisionSpec, precision_spec
from .reports import Progress, Reporter, StepProgress
from .runtime.base import check_threads
from .system import cpu_count

CHUNK = 8  # samples per run: all of a batch's layers are held at once, so kept small


# ------------------------------------------------------------------------------------ the report


@dataclass(frozen=True)
class LayerResult:
    """One module's output compared over every sample."""

    module: str  # torchvision's name: layer3.0.conv2 (a BN-folded conv by its conv's name), fc
    index: int  # depth order
    shape: list[int]  # one sample's shape, as the candidate computes it
    sqnr_db: float | None  # error against the reference's spread across samples (None: no spread)
    max_abs_diff: float
    mean_abs_diff: float
    cosine_min: float  # worst per-sample cosine similarity
    cosine_mean: float
    threshold_db: float
    diverged: bool  # sqnr_db < threshold_db (or a non-finite value)
    drop_db: float | None  # SQNR lost since the previous reported layer (None for the first)
    finite: bool = True  # False when either side computed inf/NaN (sqnr_db is then -MAX_SQNR_DB)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LayerReport:
    candidate: dict[str, Any]
    reference: dict[str, Any]
    precision: str
    inputs: str  # "random, 9 samples (seed 0)" | "images (64 from DIR)"
    samples: int
    threshold_db: float
    layers: list[LayerResult]
    output: ParityResult  # the logits, judged by the precision's check gate
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """The logits' verdict (what ``check`` judges); ``first_divergent`` is reported beside it."""
        return self.output.passed

    @property
    def first_divergent(self) -> LayerResult | None:
        return next((r for r in self.layers if r.diverged), None)

    @property
    def largest_drop(self) -> LayerResult | None:
        drops = [r for r in self.layers if r.drop_db is not None]
        return max(drops, key=lambda r: r.drop_db or 0.0) if drops else None

    @property
    def ok(self) -> bool:
        """The logits pass and no layer diverged: what the command exits 0 on."""
        return self.passed and self.first_divergent is None

    def to_dict(self) -> dict[str, Any]:
        first, drop = self.first_divergent, self.largest_drop
        return {
            "candidate": self.candidate,
            "reference": self.reference,
            "precision": self.precision,
            "inputs": self.inputs,
            "samples": self.samples,
            "threshold_db": self.threshold_db,
            "passed": self.passed,
            "first_divergent": first.to_dict() if first else None,
            "largest_drop": drop.to_dict() if drop else None,
            "output": self.output.to_dict(),
            "layers": [r.to_dict() for r in self.layers],
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------- streaming numbers


class _Accumulator:
    """Running sums for one layer: exact SQNR-vs-spread, error and cosine without keeping samples."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: NDArray[np.float64] | None = None  # the reference's mean sample so far
        self.m2 = 0.0  # sum over samples of |ref - mean|^2 (Chan et al.'s parallel update)
        self.sq_err = 0.0
        self.abs_err = 0.0
        self.max_abs = 0.0
        self.elements = 0
        self.cos_min = math.inf
        self.cos_sum = 0.0
        self.finite = True

    def add(self, reference: NDArray[Any], candidate: NDArray[Any]) -> None:
        r = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        c = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
        if not (np.isfinite(r).all() and np.isfinite(c).all()):
            self.finite = False  # reported as such; the sums go on over the finite values
            r, c = np.where(np.isfinite(r), r, 0.0), np.where(np.isfinite(c), c, 0.0)
        nb = len(r)
        mean_b = r.mean(axis=0)
        m2_b = float(((r - mean_b) ** 2).sum())
        if self.mean is None:
            self.mean, self.m2 = mean_b, m2_b
        else:
            delta = mean_b - self.mean
            total = self.n + nb
            self.m2 += m2_b + float(delta @ delta) * self.n * nb / total
            self.mean += delta * (nb / total)
        self.n += nb
        diff = c - r
        self.sq_err += float((diff * diff).sum())
        absd = np.abs(diff)
        self.abs_err += float(absd.sum())
        self.max_abs = max(self.max_abs, float(absd.max()) if absd.size else 0.0)
        self.elements += diff.size
        norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
        dots = (r * c).sum(axis=1)
        same = absd.max(axis=1) == 0 if absd.size else np.ones(nb, bool)
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(same, 1.0, 0.0))
        self.cos_min = min(self.cos_min, float(cos.min()))
        self.cos_sum += float(cos.sum())

    def sqnr_db(self) -> float | None:
        """As ``metrics.sqnr_db`` on every sample at once (rounded the same way)."""
        if not self.finite:
            return -MAX_SQNR_DB
        if self.m2 <= 0:
            return MAX_SQNR_DB if self.sq_err == 0 else None
        if self.sq_err <= self.m2 * 10 ** (-MAX_SQNR_DB / 10):
            return MAX_SQNR_DB
        return round(10 * math.log10(self.m2 / self.sq_err), 3)


def _results(
    modules: Sequence[str], accs: dict[str, _Accumulator], shapes: dict[str, list[int]], threshold: float
) -> list[LayerResult]:
    rows: list[LayerResult] = []
    previous: float | None = None
    for i, module in enumerate(modules):
        a = accs[module]
        sqnr = a.sqnr_db()
        rows.append(
            LayerResult(
                module=module,
                index=i,
                shape=shapes[module],
                sqnr_db=sqnr,
                max_abs_diff=a.max_abs if a.finite else math.inf,
                mean_abs_diff=a.abs_err / max(a.elements, 1) if a.finite else math.inf,
                cosine_min=a.cos_min,
                cosine_mean=a.cos_sum / max(a.n, 1),
                threshold_db=threshold,
                diverged=not a.finite or (sqnr is not None and sqnr < threshold),
                drop_db=round(previous - sqnr, 3) if previous is not None and sqnr is not None else None,
                finite=a.finite,
            )
        )
        previous = sqnr if sqnr is not None else previous
    return rows


def _open_sides(
    candidate: str | os.PathLike[str], reference: Any, weights: str | None
) -> tuple[OnnxTaps, OnnxTaps | TorchTaps]:
    """Both sides, checked to be the same architecture at the same input size."""
    cand = OnnxTaps(candidate, "candidate")
    if str(reference) == "torch":
        ref: OnnxTaps | TorchTaps = TorchTaps(cand.metadata, weights, cand.preprocess, cand.layers)
        absent = [m for m in cand.layers if m not in ref.layers]
        if absent:
            raise ConfigError(
                f"{cand.path.name} lists layers the rebuilt PyTorch model has no module for ({', '.join(absent[:3])})"
            )
        return cand, ref
    ref_path = Path(os.fspath(reference))
    if ref_path.exists() and cand.path.exists() and os.path.samefile(ref_path, cand.path):
        raise ConfigError(f"the reference {ref_path.name} is the candidate itself: nothing would be compared")
    ref = OnnxTaps(ref_path, "reference")
    models = (cand.metadata.model, ref.metadata.model)
    if models[0] != models[1] or cand.layers != ref.layers:
        what = f"{models[1]} vs {models[0]}" if models[0] != models[1] else "their recorded layers differ"
        raise ConfigError(
            f"the reference {ref_path.name} is another architecture than {cand.path.name} ({what}): "
            "compare with an export of the same model"
        )
    if tuple(ref.preprocess.crop) != tuple(cand.preprocess.crop):
        raise ConfigError(
            f"reference input {ref.preprocess.crop} and candidate input {cand.preprocess.crop} differ: "
            "compare exports at the same --image-size"
        )
    return cand, ref


# ------------------------------------------------------------------------------------ comparing


def _inputs(
    pre: Preprocess,
    images: str | os.PathLike[str] | None,
    max_images: int,
    batch_sizes: Sequence[int] | int,
    seed: int,
    notes: list[str],
) -> tuple[str, NDArray[Any]]:
    """check's inputs: the seeded random batches (all of them, one set), or the real images."""
    if images is not None:
        what, x = _image_set(images, pre, max_images, CHUNK, notes)
        if len(x) < MIN_JUDGED_SAMPLES:
            raise DataError(
                f"--layers compares across at least {MIN_JUDGED_SAMPLES} samples: {len(x)} image(s) read from {images}"
            )
        return what, x
    x = np.concatenate([b for _, b in _random_sets(pre, _random_sizes(batch_sizes), seed)])
    return f"random, {len(x)} samples (seed {seed})", x


def _random_sizes(batch_sizes: Sequence[int] | int) -> list[int]:
    """The random batches, checked to add up to enough samples to judge SQNR across them."""
    sizes = [batch_sizes] if isinstance(batch_sizes, int) else list(batch_sizes)
    check_batch_sizes(sizes, "--batch-sizes")
    if sum(sizes) < MIN_JUDGED_SAMPLES:
        raise ConfigError(
            f"--layers compares across at least {MIN_JUDGED_SAMPLES} samples: give --batch-sizes adding up to "
            f"{MIN_JUDGED_SAMPLES} or more, or --images DIR"
        )
    return sizes


def _gate(spec: PrecisionSpec, meta: ArtifactMeta, images: object, tolerance: Tolerance | None) -> Tolerance:
    """check's default gate for the logits (or the given one). A precision calibrated on images
    (int8) is compared on images only: on noise, which its ranges never saw, its late layers
    diverge by design (measured: a good resnet20 int8 scores 2.6 dB at avgpool on noise, 20 on
    images), so the diagnosis would point at a layer that is not broken."""
    calibrated = meta.get("calibration_source", "random") != "random"
    if images is None and not spec.noise_judged and calibrated:
        raise ConfigError(
            f"{meta.precision} calibrated on images is compared layer by layer on images: give --images DIR "
            "(on noise inputs, which its ranges never saw, its late layers diverge by design)"
        )
    if tolerance is not None:
        return tolerance
    return spec.gate("images" if images is not None else "random", meta.weights_trained)


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def compare_layers(
    candidate: str | os.PathLike[str],
    reference: Any = "torch",
    *,
    images: str | os.PathLike[str] | None = None,
    max_images: int = 64,
    batch_sizes: Sequence[int] | int = (CHUNK,),
    seed: int = 0,
    weights: str | None = None,
    threads: int | None = None,
    tolerance: Tolerance | None = None,
    progress: Progress | StepProgress | None = None,
) -> LayerReport:
    """Compare every reported layer of the ONNX ``candidate`` with ``reference`` and find the
    first divergent one.

    ``reference``: ``"torch"`` (the PyTorch model rebuilt from the candidate's metadata, weights
    hash checked, BatchNorm folded; ``weights`` as ``check``) or a toolkit ONNX of the same model
    and input size. Inputs: ``images`` (up to ``max_images`` real images), else the seeded random
    batches ``check`` uses at ``batch_sizes`` (a list, or a sample count), as one set of at least
    ``MIN_JUDGED_SAMPLES`` samples. ``tolerance`` replaces the logits' default gate;
    ``threads``: ONNX Runtime's and torch's CPU threads (default: every core).
    """
    t0 = time.perf_counter()
    check_seed(seed)
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ConfigError(f"--max-images {max_images}: must be at least 1")
    threads = check_threads(threads) or cpu_count()
    if images is None:
        _random_sizes(batch_sizes)  # refused before any model is loaded
    say = Reporter(progress)
    say("opening the models")
    cand, ref = _open_sides(candidate, reference, weights)
    meta = cand.metadata
    spec = precision_spec(meta.precision if meta.precision in {p.value for p in PRECISIONS} else Precision.fp32)
    notes: list[str] = []
    gate = _gate(spec, meta, images, tolerance)
    what, x = _inputs(cand.preprocess, images, max_images, batch_sizes, seed, notes)
    cand.open(threads)
    ref.open(threads)
    # A pixel-input side gets the pixels; a float side the same pixels normalised in numpy.
    ref_x = cand.preprocess.normalize(x) if cand.preprocess.pixels and not ref.preprocess.pixels else x
    if ref.preprocess.pixels and not cand.preprocess.pixels:
        raise ConfigError("the reference takes uint8 pixels and the candidate floats: swap them")
    accs = {m: _Accumulator() for m in cand.layers}
    shapes: dict[str, list[int]] = {}
    logits: list[tuple[NDArray[Any], NDArray[Any]]] = []
    step = cand.fixed or CHUNK
    for start in range(0, len(x), step):
        ref_layers, ref_logits = ref.run(ref_x[start : start + step])
        cand_layers, cand_logits = cand.run(x[start : start + step])
        for m in cand.layers:
            r, c = ref_layers.pop(m), cand_layers.pop(m)
            if _squeezed(r.shape[1:]) != _squeezed(c.shape[1:]):
                raise ConfigError(
                    f"layer {m} computes {list(c.shape[1:])} in the candidate and {list(r.shape[1:])} in the "
                    "reference: they are not the same model (widths, classes?)"
                )
            shapes.setdefault(m, [int(d) for d in c.shape[1:]])
            accs[m].add(r, c)
        logits.append((ref_logits, cand_logits))
        say.step("comparing layers", min(start + step, len(x)), len(x))
    ref_all, cand_all = (np.concatenate([p[k] for p in logits]) for k in (0, 1))
    if ref_all.shape != cand_all.shape:
        raise ConfigError(
            f"the logits differ in shape: candidate {list(cand_all.shape)}, reference {list(ref_all.shape)}"
        )
    output = compare_outputs(ref_all, cand_all, gate)
    return LayerReport(
        candidate=cand.describe(),
        reference=ref.describe(),
        precision=meta.precision,
        inputs=what,
        samples=len(x),
        threshold_db=spec.layer_sqnr_db,
        layers=_results(cand.layers, accs, shapes, spec.layer_sqnr_db),
        output=output,
        notes=notes,
        seconds=time.perf_counter() - t0,
    )


def check_layers(candidate: str | os.PathLike[str], reference: Any = "torch", **options: Any) -> LayerReport:
    """``compare_layers``, raising ``ParityError`` (with the report) when a layer diverged or the
    logits fail their gate. Writes nothing: a diagnosis, not a parity record."""
    report = compare_layers(candidate, reference, **options)
    first = report.first_divergent
    if first is not None:
        sqnr = "inf/NaN" if not first.finite else f"SQNR {first.sqnr_db:.1f} dB"
        raise ParityError(
            f"{Path(os.fspath(candidate)).name} diverges from the reference at {first.module} "
            f"({sqnr} < {first.threshold_db:g} dB)",
            report,
        )
    if not report.passed:
        raise ParityError(
            f"{Path(os.fspath(candidate)).name}: no layer diverged but the logits fail their gate", report
        )
    return report


# -------------------------------------------------------------------------------------- the plot


def write_layer_plot(report: LayerReport, path: str | os.PathLike[str]) -> Path:
    """SQNR by depth, the divergence threshold as a line, the first divergent layer marked."""
    from .bench import require_matplotlib
    from .reports import save_png

    plt = require_matplotlib()
    rows = report.layers
    fig, ax = plt.subplots(figsize=(max(8.0, 0.22 * len(rows)), 4.6))
    depth = [r.index for r in rows]
    sqnr = [r.sqnr_db if r.sqnr_db is not None else np.nan for r in rows]
    ax.plot(depth, sqnr, marker="o", markersize=3, linewidth=1.2, label="layer SQNR")
    ax.axhline(
        report.threshold_db, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {report.threshold_db:g} dB"
    )
    first = report.first_divergent
    if first is not None:
        y = first.sqnr_db if first.sqnr_db is not None else report.threshold_db
        ax.scatter([first.index], [y], s=80, color="tab:red", zorder=3, label=f"first divergent: {first.module}")
        ax.annotate(first.module, (first.index, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xticks(depth, [r.module for r in rows], rotation=90, fontsize=6)
    ax.set_xlabel("layer (depth order)")
    ax.set_ylabel("SQNR vs spread across samples (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    name = Path(str(report.candidate.get("path", "candidate"))).name
    ref = report.reference.get("path")
    against = Path(str(ref)).name if ref else f"PyTorch {report.reference.get('model')} (BatchNorm folded)"
    ax.set_title(f"{name} ({report.precision}) vs {against}: {report.inputs}", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)
