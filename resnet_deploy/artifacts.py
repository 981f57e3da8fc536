"""Describing any artifact: what an ONNX file or a TensorRT plan is, without trusting its name.

A higher layer over ``onnx_io`` (signature, metadata), ``sidecar`` (a plan's build facts) and
``records`` (whether the artifact's parity evidence holds for its current bytes): what ``info``
shows and ``ship`` reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .onnx_io import ArtifactMeta, describe_signature, load_onnx, read_metadata, save_checked
from .records import read_record, record_path, record_problem
from .reports import sha256_file
from .sidecar import Sidecar, sidecar_path

__all__ = ["artifact_metadata", "describe_onnx", "load_onnx", "record_status", "save_checked"]

PLAN_SUFFIXES = (".plan", ".engine")


def describe_onnx(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Signature, opset, op counts, metadata and parity-record status of an ONNX file."""
    return {**describe_signature(path), "parity_record": record_status(Path(path))}


def record_status(path: Path) -> dict[str, Any]:
    """Whether ``path`` has a passing parity record for its current bytes (what ``ship`` requires)."""
    record = read_record(path)
    problem = record_problem(path, sha256_file(path))
    return {
        "path": str(record_path(path)),
        "ok": problem is None,
        "problem": problem,
        "step": record.step if record else None,
        "reference": record.reference if record else None,
        "created": record.created if record else None,
    }


def artifact_metadata(path: str | os.PathLike[str]) -> ArtifactMeta:
    """The toolkit metadata of an ONNX file (``metadata_props``) or a TensorRT plan (its sidecar)."""
    p = Path(path)
    if p.suffix.lower() in PLAN_SUFFIXES:
        if not p.is_file():
            raise ConfigError(f"file not found: {p}")
        sidecar = Sidecar.from_file(sidecar_path(p))
        return ArtifactMeta({**sidecar.metadata, "precision": sidecar.precision})
    return read_metadata(p)
