"""Reading artifacts back: what an ONNX file is, without trusting its name."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from .errors import ConfigError


def load_onnx(path: str | os.PathLike[str], *, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file, with a one-line error for a missing, unreadable or non-ONNX file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"file not found: {p}")
    if p.is_dir():
        raise ConfigError(f"expected an ONNX file, got a folder: {p}")
    try:
        return onnx.load(str(p), load_external_data=load_weights)
    except Exception as e:  # protobuf DecodeError, OSError, ...
        raise ConfigError(f"{p} is not a readable ONNX model ({type(e).__name__})") from None


def save_checked(model: onnx.ModelProto, path: Path, what: str) -> None:
    """Save ``model`` to ``path`` (a temp file) and run the full ONNX checker on the file."""
    from .errors import ExportError

    onnx.save_model(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the {what} ONNX fails onnx.checker: {str(e).splitlines()[0]}") from e


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def describe_onnx(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Signature, opset, op counts and metadata of an ONNX file."""
    model = load_onnx(path, load_weights=False)
    initializers = {t.name for t in model.graph.initializer}
    ops = Counter(n.op_type for n in model.graph.node)

    def io(values: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                "shape": _dims(v),
            }
            for v in values
            if v.name not in initializers
        ]

    return {
        "path": str(Path(path).resolve()),
        "file_size_bytes": Path(path).stat().st_size,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": io(model.graph.input),
        "outputs": io(model.graph.output),
        "num_nodes": sum(ops.values()),
        "nodes_by_op": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "parity_record": _record_status(Path(path)),
    }


def _record_status(path: Path) -> dict[str, Any]:
    """Whether ``path`` has a passing parity record for its current bytes (what ``ship`` requires)."""
    from .records import read_record, record_path, record_problem
    from .weights import sha256_file

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


def artifact_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The toolkit metadata of an ONNX file (``metadata_props``) or a TensorRT plan (its sidecar)."""
    p = Path(path)
    if p.suffix.lower() in (".plan", ".engine"):
        from .engine import Sidecar, sidecar_path

        if not p.is_file():
            raise ConfigError(f"file not found: {p}")
        sidecar = Sidecar.from_file(sidecar_path(p))
        return {**sidecar.metadata, "precision": sidecar.precision}
    return {m.key: m.value for m in load_onnx(p, load_weights=False).metadata_props}
