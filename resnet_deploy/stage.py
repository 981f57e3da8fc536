"""``write_verified``: the one way an ONNX artifact is written.

Every writer (``export_onnx``, ``to_fp16``, ``quantize_int8``, ``add_pixel_input``) goes through
the same steps: write a temp file beside the target and run the ONNX checker on it, compare it
with its reference on the same inputs (``check.compare``), keep it or refuse it (a failure raises
``ParityError`` with the report and leaves nothing at the target, unless the caller names why it
is kept), write its parity record (what ``ship`` requires), and rename it into place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .check import InputSet, compare
from .metrics import ParityResult, Tolerance, refuse_or_keep
from .records import record_report
from .reports import atomic_path, sha256_file
from .runtime.base import Runner
from .runtime.onnxrt import OnnxRuntimeRunner


class VerifiedReport(Protocol):
    """What a writer's report holds of its verification (Export/Precision/PixelInput reports)."""

    parity: list[ParityResult]
    parity_passed: bool
    file_size_bytes: int
    sha256: str
    tolerance: str
    written: bool
    warnings: list[str]


@dataclass(frozen=True)
class Verification:
    """How the written file is judged and what its parity record says."""

    reference: Runner  # what the file must compute (PyTorch, or the source ONNX in ONNX Runtime)
    tolerance: Tolerance
    step: str  # the record's step: export | convert | pixel-input
    described_as: str  # the record's reference, in words
    weights_trained: bool
    failure: Callable[[list[ParityResult]], str]  # the error message for a failed comparison
    keep: str | None = None  # why a failed file is kept anyway (--allow-mismatch...), else None
    seed: int = 0
    batch_sizes: Sequence[int] = (1, 3)
    inputs: Sequence[InputSet] | None = None  # instead of seeded random inputs at batch_sizes


def write_verified(out: Path, report: VerifiedReport, write: Callable[[Path], Any], verification: Verification) -> None:
    """``write(tmp)`` writes and checks the file; then compare, keep or refuse, rename, record."""
    v = verification
    with atomic_path(out) as tmp:
        write(tmp)
        checked = compare(
            OnnxRuntimeRunner(tmp),
            v.reference,
            batch_sizes=v.batch_sizes,
            seed=v.seed,
            tolerance=v.tolerance,
            inputs=v.inputs,
        )
        report.parity = [row.result for row in checked.rows]
        report.parity_passed = checked.passed
        report.file_size_bytes = tmp.stat().st_size
        report.sha256 = sha256_file(tmp)
        if not report.parity_passed:
            refuse_or_keep(report, v.failure(report.parity), v.keep)
        # The record first, the artifact's rename last: a record that cannot be written (disk
        # full) leaves the old artifact and record as they were, never a new file without one.
        record_report(out, report, step=v.step, reference=v.described_as, weights_trained=v.weights_trained)
