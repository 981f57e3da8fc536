"""Parity records: the evidence, kept beside an artifact, that it computes what its reference does.

Every step that verifies an artifact (``export`` against PyTorch, ``convert`` against the fp32
ONNX, ``check`` against any reference, the pixel-input wrapper against its float model) writes
``<artifact>.parity.json`` beside it: the artifact's sha256, the verdict, the reference and the
numbers. ``ship`` reads it back and refuses an artifact whose record is missing, failed, or belongs
to other bytes (the file changed since it was checked).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import ResnetDeployError
from .reports import atomic_write_text, sha256_file, to_jsonable
from .safeio import RECORD_MAX_BYTES, read_text_capped

RECORD_SCHEMA = 1
RECORD_SUFFIX = ".parity.json"


def record_path(artifact: str | os.PathLike[str]) -> Path:
    """``resnet50.int8.onnx`` -> ``resnet50.int8.onnx.parity.json``."""
    p = Path(artifact)
    return p.with_name(p.name + RECORD_SUFFIX)


@dataclass
class ParityRecord:
    artifact: str  # the file name it describes
    sha256: str
    passed: bool
    step: str  # export | convert | check | pixel-input
    reference: str  # what it was compared with
    tolerance: str
    results: list[dict[str, Any]] = field(default_factory=list)
    weights_trained: bool | None = None
    created: str = ""
    toolkit_version: str = __version__
    schema: int = RECORD_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "passed": self.passed,
            "step": self.step,
            "reference": self.reference,
            "tolerance": self.tolerance,
            "weights_trained": self.weights_trained,
            "results": self.results,
            "created": self.created,
            "toolkit_version": self.toolkit_version,
        }


def write_record(
    artifact: str | os.PathLike[str],
    *,
    sha256: str,
    passed: bool,
    step: str,
    reference: str,
    tolerance: str,
    results: list[Any],
    weights_trained: bool | None = None,
) -> Path:
    """Write (atomically, replacing any older one) the parity record of ``artifact``."""
    record = ParityRecord(
        artifact=Path(artifact).name,
        sha256=sha256,
        passed=passed,
        step=step,
        reference=reference,
        tolerance=tolerance,
        results=to_jsonable(results),
        weights_trained=weights_trained,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    return atomic_write_text(record_path(artifact), json.dumps(to_jsonable(record), indent=2) + "\n")


def record_report(
    artifact: str | os.PathLike[str], report: Any, *, step: str, reference: str, weights_trained: bool
) -> Path:
    """The record of a report that verified the file it wrote (``sha256``, ``parity_passed``,
    ``tolerance`` and ``parity`` results: export, convert and the pixel-input wrapper)."""
    return write_record(
        artifact,
        sha256=report.sha256,
        passed=report.parity_passed,
        step=step,
        reference=reference,
        tolerance=report.tolerance,
        results=report.parity,
        weights_trained=weights_trained,
    )


def read_record(artifact: str | os.PathLike[str]) -> ParityRecord | None:
    """The record beside ``artifact``, or None when there is none or it is unreadable (not a
    regular file, over ``RECORD_MAX_BYTES``, not JSON...)."""
    path = record_path(artifact)
    if not path.is_file():
        return None
    try:
        data = json.loads(read_text_capped(path, "parity record", RECORD_MAX_BYTES, error=ResnetDeployError))
        if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
            return None
        return ParityRecord(
            artifact=str(data["artifact"]),
            sha256=str(data["sha256"]),
            passed=data["passed"] is True,
            step=str(data.get("step", "")),
            reference=str(data.get("reference", "")),
            tolerance=str(data.get("tolerance", "")),
            results=list(data.get("results") or []),
            weights_trained=data.get("weights_trained"),
            created=str(data.get("created", "")),
            toolkit_version=str(data.get("toolkit_version", "")),
        )
    except (ResnetDeployError, OSError, ValueError, KeyError, TypeError):
        return None


def record_problem(artifact: str | os.PathLike[str], sha256: str) -> str | None:
    """Why ``artifact`` (whose bytes hash to ``sha256``) has no passing parity record, or None."""
    name = Path(artifact).name
    if not record_path(artifact).is_file():
        return f"{name} has no parity record ({record_path(artifact).name})"
    record = read_record(artifact)
    if record is None:
        return f"the parity record {record_path(artifact).name} is unreadable"
    if record.sha256 != sha256:
        return f"the parity record of {name} is for other bytes (the file changed after its {record.step})"
    if not record.passed:
        return f"{name} failed its last parity check ({record.step} vs {record.reference})"
    return None


def record_check(artifact: str | os.PathLike[str], report: Any) -> Path | None:
    """Record a ``check`` (a ``metrics.CheckReport``) of the artifact file ``artifact``."""
    path = Path(artifact)
    if not path.is_file():
        return None  # a model id or a runner: nothing on disk to vouch for
    ref = report.reference
    digest = report.candidate.get("sha256") or sha256_file(path)  # compare hashed what it ran
    ref_sha = ref.get("sha256")
    if ref_sha is not None:
        if ref_sha == digest:
            return None  # the file against itself (on another provider): no evidence about the file
        reference = f"{Path(str(ref['path'])).resolve()} (sha256 {ref_sha[:16]}, {ref.get('runner', '?')})"
    else:
        reference = f"{ref.get('model') or ref.get('label') or 'reference'} ({ref.get('runner', '?')})"
    return write_record(
        path,
        sha256=digest,
        passed=report.passed,
        step="check",
        reference=reference,
        tolerance="; ".join(sorted({row.result.tolerance for row in report.rows})),
        results=[row.to_dict() for row in report.rows],
        weights_trained=bool(getattr(report, "weights_trained", True)),
    )
