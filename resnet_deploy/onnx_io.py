"""Reading and writing ONNX files, and the typed metadata every toolkit artifact carries.

The lowest ONNX layer: it knows files, graphs and ``metadata_props``, nothing about runners,
records or engines. ``ArtifactMeta`` is the one reader of the metadata: every module asks it for
``precision``, ``num_classes``, ``weights_trained``... instead of looking up strings with their
own defaults. It is a read-only ``Mapping[str, str]`` of the raw values too (the on-disk format,
unchanged), so it can be rendered, copied into a plan's sidecar or compared with a dict.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

from .choices import InputFormat as InputFormat
from .errors import ConfigError, ExportError
from .metadata_rules import check_graph, check_values
from .safeio import EXTERNAL_DATA_MAX_BYTES, ONNX_MAX_BYTES, check_readable, open_checked, read_bytes_capped

FLOAT_NCHW = InputFormat.float32_nchw.value
UINT8_NHWC = InputFormat.uint8_nhwc.value


class ArtifactMeta(Mapping[str, str]):
    """The ``metadata_props`` of a toolkit artifact, with typed accessors and one default each.

    Never trusted: every value is checked when read (``metadata_rules.check_values``: finite, in
    range, no larger than export could write), and ``from_model`` also refuses metadata that
    disagrees with the graph's own shapes. Either raises a one-line ``ConfigError``."""

    __slots__ = ("_props",)

    def __init__(self, props: Mapping[str, str] | None = None) -> None:
        self._props: dict[str, str] = {str(k): str(v) for k, v in (props or {}).items()}
        check_values(self._props)

    # -- Mapping of the raw strings (the on-disk format) ----------------------------------------
    def __getitem__(self, key: str) -> str:
        return self._props[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._props)

    def __len__(self) -> int:
        return len(self._props)

    def __repr__(self) -> str:
        return f"ArtifactMeta({self._props!r})"

    def __or__(self, updates: Mapping[str, str]) -> ArtifactMeta:
        return ArtifactMeta({**self._props, **updates})

    def to_dict(self) -> dict[str, str]:
        return dict(self._props)

    # -- reading and writing ONNX ---------------------------------------------------------------
    @classmethod
    def from_model(cls, model: onnx.ModelProto) -> ArtifactMeta:
        """The metadata of ``model``, checked against its graph (the graph's shapes win: metadata
        that disagrees with them is refused)."""
        meta = cls({p.key: p.value for p in model.metadata_props})
        check_graph(meta, model)
        return meta

    def write_to(self, model: onnx.ModelProto) -> None:
        """Replace ``model``'s ``metadata_props`` with these (in this order)."""
        del model.metadata_props[:]
        for key, value in self._props.items():
            model.metadata_props.add(key=key, value=value)

    # -- typed accessors ------------------------------------------------------------------------
    @property
    def is_toolkit(self) -> bool:
        """Exported by resnet-deploy: names its model and its preprocessing."""
        return "model" in self and "image_size" in self

    @property
    def model(self) -> str | None:
        return self.get("model")

    @property
    def precision(self) -> str:
        """fp32 | fp16 | int8 (fp32 when unstated)."""
        return self.get("precision", "fp32")

    @property
    def input_format(self) -> str:
        return self.get("input_format", FLOAT_NCHW)

    @property
    def weights_trained(self) -> bool:
        """The one rule: trained unless the artifact says ``weights_trained=false`` (random
        initialisation). Gates are then strict (top-1 agreement required) and ``ship`` refuses only
        weights known to be random."""
        return self.get("weights_trained") != "false"

    @property
    def num_classes(self) -> int | None:
        return _int_or_none(self.get("num_classes"))

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the network's input, from ``image_size`` = ``HxW``."""
        try:
            h, w = (int(v) for v in self["image_size"].split("x"))
        except (KeyError, ValueError):
            return None
        return h, w

    @property
    def fixed_batch(self) -> int | None:
        """The batch the graph is pinned to (None: a dynamic batch axis)."""
        value = self.get("batch", "dynamic")
        return int(value) if value.isdigit() else None

    @property
    def widths(self) -> tuple[int, ...] | None:
        """Stage widths of a non-default (e.g. half-width) model; None for the paper's widths."""
        text = self.get("widths")
        if not text:
            return None
        try:
            return tuple(int(v) for v in text.split(","))
        except ValueError:
            return None

    @property
    def input_dtype(self) -> str:
        """float32 | float16 | uint8: what the graph's input tensor holds."""
        return self.get("input_dtype", "float32")

    @property
    def output_dtype(self) -> str:
        return self.get("output_dtype", "float32")

    @property
    def input_name(self) -> str:
        return self.get("input_name", "input")

    @property
    def output_name(self) -> str:
        return self.get("output_name", "logits")

    @property
    def weights(self) -> str:
        """The weights' label, e.g. ``imagenet:v2`` or ``random(seed=0)``."""
        return self.get("weights", "?")

    @property
    def variant(self) -> str:
        return self.get("variant", "v1.5")

    @property
    def shortcut(self) -> str | None:
        return self.get("shortcut")


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def load_onnx(path: str | os.PathLike[str], *, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file, with a one-line error for a missing, unreadable or non-ONNX file, for a
    device, FIFO or file over protobuf's 2 GiB (refused before reading), for a graph without inputs
    or outputs, and for external data that cannot be read (naming the file and why)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"file not found: {p}")
    if p.is_dir():
        raise ConfigError(f"expected an ONNX file, got a folder: {p}")
    data = read_bytes_capped(
        p, "ONNX model", ONNX_MAX_BYTES, error=ConfigError, missing=f"file not found: {p}", why=_OVER_2GB
    )
    if not data:
        raise ConfigError(f"{p} is empty (0 bytes), not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf DecodeError, ...
        raise ConfigError(f"{p} is not a readable ONNX model ({type(e).__name__})") from None
    del data
    _check_graph(model, p)
    if load_weights:
        _load_external_data(model, p)
    return model


_OVER_2GB = " (protobuf's maximum: larger models keep their weights in external data)"
_ITEMSIZE: dict[int, int] = {
    TensorProto.FLOAT: 4, TensorProto.UINT8: 1, TensorProto.INT8: 1, TensorProto.UINT16: 2, TensorProto.INT16: 2,
    TensorProto.INT32: 4, TensorProto.INT64: 8, TensorProto.BOOL: 1, TensorProto.FLOAT16: 2, TensorProto.DOUBLE: 8,
    TensorProto.UINT32: 4, TensorProto.UINT64: 8, TensorProto.COMPLEX64: 8, TensorProto.COMPLEX128: 16,
    TensorProto.BFLOAT16: 2,
}  # fmt: skip


def _check_graph(model: onnx.ModelProto, p: Path) -> None:
    """A model with a graph, inputs and outputs (protobuf parses an empty file as an empty model)."""
    graph = model.graph
    if not model.HasField("graph") or not (graph.node or graph.input or graph.output):
        raise ConfigError(f"{p} is not an ONNX model: it has no graph")
    if not graph_inputs(model):
        raise ConfigError(f"{p} is not a usable ONNX model: its graph has no inputs")
    if not graph.output:
        raise ConfigError(f"{p} is not a usable ONNX model: its graph has no outputs")


def _external_tensors(model: onnx.ModelProto) -> list[TensorProto]:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data  # initializers and attributes

    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def check_external_data(
    model: onnx.ModelProto, path: str | os.PathLike[str]
) -> list[tuple[TensorProto, Path, int, int]]:
    """``(tensor, file, offset, nbytes)`` for each of ``model``'s external tensors, after checking
    (reading nothing) that each file is a regular file in the model's folder, not a link, holding
    exactly the bytes the tensor's shape needs; all of them under ``EXTERNAL_DATA_MAX_BYTES``. For
    whoever reads them: ``load_onnx``, or onnxruntime and TensorRT, which open them themselves."""
    p = Path(path)
    reads: list[tuple[TensorProto, Path, int, int]] = []
    total = 0
    try:
        for tensor in _external_tensors(model):
            info = {e.key: e.value for e in tensor.external_data}
            location = info.get("location", "")
            if not location or os.path.isabs(location) or ".." in Path(location).parts:
                raise ConfigError(
                    f"tensor {tensor.name!r} has its external data at {location!r}, outside the model's folder"
                )
            file = p.parent / location
            check_readable(
                file, "external data file", EXTERNAL_DATA_MAX_BYTES, error=ConfigError,
                missing=f"external data file {file} not found (tensor {tensor.name!r})",
            )  # fmt: skip
            if file.is_symlink():
                raise ConfigError(
                    f"external data file {file} is a symbolic link (ONNX refuses links for external data)"
                )
            try:
                offset, length = int(info.get("offset", "0")), (int(info["length"]) if "length" in info else None)
            except ValueError:
                raise ConfigError(f"tensor {tensor.name!r} has a malformed external data offset or length") from None
            size = file.stat().st_size
            count = length if length is not None else size - offset
            need = math.prod(tensor.dims) * _ITEMSIZE[tensor.data_type] if tensor.data_type in _ITEMSIZE else count
            if offset < 0 or count < 0 or offset + count > size or count < need:
                raise ConfigError(
                    f"external data file {file} is too short: tensor {tensor.name!r} needs {max(need, count)} bytes "
                    f"from offset {offset}, the file has {size}"
                )
            if count > need:
                raise ConfigError(
                    f"external data file {file} holds more than tensor {tensor.name!r} needs "
                    f"({count} bytes from offset {offset} for a {need}-byte tensor)"
                )
            total += count
            if total > EXTERNAL_DATA_MAX_BYTES:
                raise ConfigError(f"its external data is over the {EXTERNAL_DATA_MAX_BYTES >> 30} GiB limit")
            reads.append((tensor, file, offset, count))
    except ConfigError as e:
        raise ConfigError(f"cannot load the weights of ONNX model {p}: {e}") from None
    return reads


def _load_external_data(model: onnx.ModelProto, p: Path) -> None:
    """Read the checked external tensors into ``model`` (what ``onnx.load`` does, with the checks)."""
    reads = check_external_data(model, p)
    for file in sorted({f for _, f, _, _ in reads}):
        with open_checked(file, "external data file", EXTERNAL_DATA_MAX_BYTES, error=ConfigError) as f:
            for tensor, _, offset, count in (r for r in reads if r[1] == file):
                f.seek(offset)
                data = f.read(count)
                if len(data) != count:
                    raise ConfigError(f"cannot load the weights of ONNX model {p}: {file} changed while being read")
                tensor.raw_data = data
                tensor.data_location = TensorProto.DEFAULT
                del tensor.external_data[:]


def read_metadata(path: str | os.PathLike[str]) -> ArtifactMeta:
    """The ``metadata_props`` of an ONNX file (without reading its weights)."""
    return ArtifactMeta.from_model(load_onnx(path, load_weights=False))


def save_checked(model: onnx.ModelProto, path: Path, what: str) -> None:
    """Save ``model`` to ``path`` (a temp file) and run the full ONNX checker on the file."""
    onnx.save_model(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the {what} ONNX fails onnx.checker: {str(e).splitlines()[0]}") from e


def graph_precision(model: onnx.ModelProto) -> str:
    """'int8' if the graph quantizes, else 'fp16' if its Conv weights are FP16, else 'fp32'."""
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops or "QLinearConv" in ops:
        return "int8"
    inits = {t.name: t.data_type for t in model.graph.initializer}
    conv_types = {inits.get(n.input[1]) for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1}
    return "fp16" if TensorProto.FLOAT16 in conv_types else "fp32"


def opset_of(model: onnx.ModelProto) -> int | None:
    """The default-domain opset a model imports."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph's real inputs (not initializers listed as inputs, as old exporters did)."""
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """A tensor's shape: sizes, or the names of symbolic axes."""
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def fixed_batch(path: str | os.PathLike[str]) -> int | None:
    """The batch size an ONNX file is pinned to, or None for a dynamic batch axis."""
    dim = load_onnx(path, load_weights=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def ops_by_count(model: onnx.ModelProto) -> dict[str, int]:
    """Node counts per op type, most frequent first."""
    ops = Counter(n.op_type for n in model.graph.node)
    return dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_signature(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Signature, opset, op counts and metadata of an ONNX file (no weights read)."""
    model = load_onnx(path, load_weights=False)
    nodes = ops_by_count(model)

    def io(values: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                "shape": dims(v),
            }
            for v in values
        ]

    return {
        "path": str(Path(path).resolve()),
        "file_size_bytes": Path(path).stat().st_size,
        "opset": opset_of(model),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": io(graph_inputs(model)),
        "outputs": io([v for v in model.graph.output if v.name not in {t.name for t in model.graph.initializer}]),
        "num_nodes": sum(nodes.values()),
        "nodes_by_op": nodes,
        "metadata": ArtifactMeta.from_model(model).to_dict(),
    }
