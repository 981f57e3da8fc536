"""The engine's own layer report: what each layer of a built TensorRT engine runs in, by module.

``build`` asks TensorRT's engine inspector for the engine's layer information
(``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` on an engine built with
``ProfilingVerbosity.DETAILED``; the same JSON as ``trtexec --exportLayerInfo
--profilingVerbosity=detailed``, which NVIDIA's engine explorer ``trex`` reads) and saves it beside
the plan (``resnet50.int8.plan.layers.json``). Its shape::

    {"Layers": [{"Name": "layer1.0.conv2 + layer1.0/Add_0 + layer1.0",
                 "LayerType": "CaskConvolution",
                 "Inputs": [{"Name": "...", "Dimensions": [8, 16, 32, 32],
                             "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}, ...],
                 "Outputs": [...], "TacticName": "sm90_xmma_fprop_..._i8i8_...", "TacticValue": "0x...",
                 "Metadata": "[ONNX Layer: layer1.0.conv2]\\x1e[ONNX Layer: layer1.0/Add_0]\\x1e..."}, ...],
     "Bindings": ["input", "logits"]}

With TensorRT's default verbosity (``LAYER_NAMES_ONLY``) ``Layers`` is a list of names only: the
layers are listed but no precision is known. A layer's name joins the ONNX nodes TensorRT fused
into it with `` + `` (and TensorRT 8.6+ lists them again in ``Metadata``, ``[ONNX Layer: NAME]``
entries separated by ``\\x1e``/``\\x1f``); since export names nodes by their torchvision module
(``layer_names``), ``layer_names.module_of`` turns them into modules. Q/DQ nodes, weights and
TensorRT's own reformat copies are helpers, not modules. A layer runs in its first input's
datatype, as ``trex`` reads it (an int8 convolution reads int8 and may write int8, fp16 or fp32).

``check_int8`` lists the convolutions of an int8 engine that do not run in int8: a warning, or with
``strict=True`` an ``EngineError`` (``build --strict-precision``). A convolution the ONNX itself
keeps out of int8 (no DequantizeLinear feeds it: ``--exclude``) is reported, not refused. Pure
logic: no TensorRT import, tested on the CPU.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EngineError
from .layer_names import module_of

LAYERS_SUFFIX = ".layers.json"
DETAILED_NOTE = (
    "TensorRT gave layer names only (the engine was not built with ProfilingVerbosity.DETAILED): "
    "no layer precision is known; rebuild it with 'resnet-deploy build' to see them"
)
# Precision plumbing, not module work: Q/DQ pairs, and the casts of an fp16 graph's input and output.
_PLUMBING_OPS = ("QuantizeLinear", "DequantizeLinear", "Cast")
# TensorRT's own layers: reformat copies between formats, no-ops; they compute no module's work.
_HELPER_TYPES = ("Reformat", "NoOp", "Constant", "MyelinReformat", "Shuffle")
_HELPER_NAME = re.compile(r"^(Reformatting CopyNode|Reformatted |\(Unnamed Layer\*)")
# Names TensorRT makes up for nodes it inserts, and parameters named in a fused layer's name.
_MADE_UP = re.compile(
    r"^(\(Unnamed Layer\*.*|copied_.*|(un)?squeeze_(node_)?after_.*|reshape_(after|before)_.*)$"
    r"|(QuantizeLinear|DequantizeLinear)(_\d+)?$|_to_fp(16|32)$|\.(weight|bias)$"
)
_ONNX_LAYER = re.compile(r"\[ONNX Layer: (.*?)\](?=[\x1e\x1f]|\[ONNX Layer: |$)")
_PROFILE = re.compile(r" \[profile \d+\]$")
_TORCHVISION_CONV = re.compile(r"(^|\.)(conv\d*|downsample\.0)$")
# Format/Datatype words -> this toolkit's precision names (the tables of trex's activations.py and
# Polygraphy's inspect: "Row major linear FP32", "Channel major FP16 format where channel % 8 == 0",
# "Thirty-two wide channel vectorized row major Int8 format", and Myelin's plain "Half", "Float").
_DATATYPES = {
    "int8": "int8",
    "fp16": "fp16",
    "half": "fp16",
    "fp32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "bf16": "bf16",
    "fp8": "fp8",
    "fp4": "fp4",
    "fp4e2m1": "fp4",
    "int4": "int4",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "bool": "bool",
    "double": "fp64",
}


def layers_path(plan: str | os.PathLike[str]) -> Path:
    """``resnet50.int8.plan`` -> ``resnet50.int8.plan.layers.json`` (TensorRT's layer information)."""
    p = Path(plan)
    return p.with_name(p.name + LAYERS_SUFFIX)


def datatype(fmt: str) -> str:
    """A ``Format/Datatype`` string's precision (``int8``, ``fp16``, ``fp32``, ``bf16``, ``fp8``...),
    ``unknown`` where TensorRT did not show one (``N/A``, or a shape-dependent format)."""
    for word in re.findall(r"[A-Za-z0-9]+", fmt):
        if word.lower() in _DATATYPES:
            return _DATATYPES[word.lower()]
    return "unknown"


@dataclass(frozen=True)
class LayerInfo:
    """One layer of the engine: TensorRT's name and type, the modules it computes, its precision."""

    name: str
    type: str  # TensorRT's LayerType: CaskConvolution, Reformat, kgen... ("" without DETAILED)
    modules: tuple[str, ...]  # () for TensorRT's helpers: reformat copies, standalone Q/DQ
    precision: str  # its first input's datatype (what it computes on), or "unknown"
    output_precision: str
    tactic: str
    convolutions: tuple[str, ...]  # the conv modules among ``modules``

    @property
    def helper(self) -> bool:
        """A layer that computes no module's work (a reformat copy, a standalone Q/DQ)."""
        return not self.modules

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "modules": list(self.modules),
            "precision": self.precision,
            "output_precision": self.output_precision,
            "tactic": self.tactic,
            "convolutions": list(self.convolutions),
        }


@dataclass
class LayerReport:
    """The parsed layer information of one engine."""

    detailed: bool
    layers: list[LayerInfo]
    notes: list[str] = field(default_factory=list)

    def precision_counts(self) -> dict[str, int]:
        """How many layers that compute modules run in each precision (helpers not counted)."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            if not layer.helper:
                counts[layer.precision] = counts.get(layer.precision, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def module_precisions(self) -> dict[str, str]:
        """Module -> the precision of the (first) layer that computes it, in engine order."""
        out: dict[str, str] = {}
        for layer in self.layers:
            for module in layer.modules:
                out.setdefault(module, layer.precision)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "detailed": self.detailed,
            "layers": [layer.to_dict() for layer in self.layers],
            "precision_counts": self.precision_counts(),
            "notes": self.notes,
        }


def onnx_ops(model: Any) -> dict[str, str]:
    """An ONNX model's node names -> op types (what ``parse_layer_information`` matches names to)."""
    return {str(n.name): str(n.op_type) for n in model.graph.node if n.name}


def int8_convolutions(model: Any) -> set[str]:
    """The conv modules the ONNX runs in int8: those a DequantizeLinear feeds. A conv without one
    was kept out of int8 in the ONNX (``--exclude``, or an fp16/fp32 model)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    out = set()
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input:
            feeder = producer.get(node.input[0])
            if feeder is not None and feeder.op_type == "DequantizeLinear":
                out.add(module_of(node.name))
    return out


def _name_parts(name: str) -> list[str]:
    """The node names in a TensorRT layer name: ``a + b``, ``PWN(PWN(a), b)``, ``{ForeignNode[a...b]}``."""
    name = _PROFILE.sub("", name)
    parts: list[str] = []
    for piece in re.split(r" \+ |[\x1e\x1f]", name):
        piece = piece.strip()
        if piece.startswith("{ForeignNode[") and piece.endswith("]}"):
            parts += [p for p in piece[len("{ForeignNode[") : -2].split("...") if p]
        elif piece.startswith("PWN("):
            inner = piece.replace("PWN(", "").replace(")", "")
            parts += [p.strip() for p in inner.split(",") if p.strip()]
        elif piece:
            parts.append(piece)
    return parts


def _modules(parts: Iterable[str], ops: Mapping[str, str] | None) -> tuple[str, ...]:
    """The modules of the ONNX nodes named in ``parts``, in order, Q/DQ, casts and made-up names dropped.
    With the ONNX's nodes (``ops``) only its node names count; without, names are judged by form."""
    out: dict[str, None] = {}
    for part in parts:
        if ops is not None:
            if part not in ops or ops[part] in _PLUMBING_OPS:
                continue
        elif _MADE_UP.search(part):
            continue
        module = module_of(part)
        if module and module != "graph":  # 'graph/Op_k': a node outside every module
            out.setdefault(module, None)
    return tuple(out)


def _datatypes(tensors: Any) -> list[str]:
    if not isinstance(tensors, list):
        return []
    return [datatype(str(t.get("Format/Datatype", ""))) for t in tensors if isinstance(t, dict)]


def _layer(raw: Any, ops: Mapping[str, str] | None, conv_modules: set[str] | None) -> LayerInfo:
    if isinstance(raw, str):  # LAYER_NAMES_ONLY: a name and nothing else
        name, kind, param, inputs, outputs, tactic, onnx_layers = raw, "", "", [], [], "", []
    else:
        name, kind, param = str(raw.get("Name", "")), str(raw.get("LayerType", "")), str(raw.get("ParameterType", ""))
        inputs, outputs = _datatypes(raw.get("Inputs")), _datatypes(raw.get("Outputs"))
        tactic = str(raw.get("TacticName") or raw.get("TacticValue") or "")
        onnx_layers = _ONNX_LAYER.findall(str(raw.get("Metadata") or ""))
    helper = kind in _HELPER_TYPES or param == "Reformat" or bool(_HELPER_NAME.match(name))
    modules = () if helper else _modules(_name_parts(name) + onnx_layers, ops)
    if not inputs and isinstance(raw, dict) and isinstance(raw.get("Weights"), dict):
        inputs = [datatype(str(raw["Weights"].get("Type", "")))]
    if conv_modules is not None:
        convolutions = tuple(m for m in modules if m in conv_modules)
    else:  # no ONNX at hand: torchvision's conv names, else TensorRT's layer type (a Gemm may run as a conv)
        convolutions = tuple(m for m in modules if _TORCHVISION_CONV.search(m))
        if not convolutions and ("Conv" in kind or param == "Convolution"):
            convolutions = modules
    return LayerInfo(
        name=name,
        type=kind,
        modules=modules,
        precision=inputs[0] if inputs else (outputs[0] if outputs else "unknown"),
        output_precision=outputs[0] if outputs else "unknown",
        tactic=tactic,
        convolutions=convolutions,
    )


def parse_layer_information(
    text: str | bytes, *, onnx_nodes: Mapping[str, str] | None = None, source: str = "layer information"
) -> LayerReport:
    """TensorRT's engine-information JSON -> a ``LayerReport``.

    ``onnx_nodes``: the ONNX's node names -> op types (``onnx_ops``), to keep only real nodes and to
    know which layers compute a convolution; without it, names are judged by their form and a layer
    is a convolution by TensorRT's layer type. Malformed input is one ``EngineError`` line naming
    ``source``.
    """
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise EngineError(f"{source} is not JSON ({e}): not TensorRT layer information") from None
    raw_layers = data.get("Layers") if isinstance(data, dict) else None
    if not isinstance(raw_layers, list):
        raise EngineError(
            f"{source} has no 'Layers' list: not TensorRT layer information "
            "(IEngineInspector.get_engine_information(LayerInformationFormat.JSON))"
        )
    bad = next((i for i, r in enumerate(raw_layers) if not isinstance(r, (str, dict))), None)
    if bad is not None:
        raise EngineError(f"{source}: layer {bad} is a JSON {type(raw_layers[bad]).__name__}, expected an object")
    detailed = bool(raw_layers) and all(isinstance(r, dict) for r in raw_layers)
    convs = None if onnx_nodes is None else {module_of(n) for n, op in onnx_nodes.items() if op == "Conv"}
    layers = [_layer(r, onnx_nodes, convs) for r in raw_layers]
    notes = [] if detailed or not raw_layers else [DETAILED_NOTE]
    if not raw_layers:
        notes.append(f"{source} lists no layers (the engine was built with ProfilingVerbosity.NONE)")
    unknown = [x.name for x in layers if detailed and not x.helper and x.precision == "unknown"]
    if unknown:
        notes.append(
            f"TensorRT showed no datatype for {len(unknown)} layer(s), e.g. {unknown[0]!r} "
            "(inspected without an execution context whose shapes are set)"
        )
    return LayerReport(detailed, layers, notes)


@dataclass(frozen=True)
class NonInt8Conv:
    """A convolution of an int8 engine that TensorRT runs in another precision."""

    module: str
    precision: str
    layer: str
    excluded: bool  # the ONNX itself keeps it out of int8 (no Q/DQ feeds it): on purpose

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "precision": self.precision, "layer": self.layer, "excluded": self.excluded}


@dataclass
class Int8Check:
    """Which convolutions of an int8 engine do not run in int8, and what could not be checked."""

    non_int8: list[NonInt8Conv]
    unchecked: list[str]  # conv modules no layer names, or an engine without DETAILED information
    warnings: list[str]
    notes: list[str]

    @property
    def unexpected(self) -> list[NonInt8Conv]:
        return [c for c in self.non_int8 if not c.excluded]

    def to_dict(self) -> dict[str, Any]:
        return {
            "non_int8_convolutions": [c.to_dict() for c in self.non_int8],
            "unchecked_convolutions": self.unchecked,
        }


def _listed(convs: Iterable[NonInt8Conv]) -> str:
    return ", ".join(f"{c.module} ({c.precision})" for c in convs)


def check_int8(report: LayerReport, *, intended: Collection[str] | None = None, strict: bool = False) -> Int8Check:
    """The convolutions of an int8 engine that do not run in int8.

    ``intended``: the conv modules the ONNX quantizes (``int8_convolutions``); a non-int8 conv not in
    it was kept out of int8 in the ONNX and is only noted. Without it every non-int8 conv counts.
    Unexpected ones are warnings; ``strict=True`` raises ``EngineError`` instead, and also when a
    precision cannot be checked (no DETAILED information, no datatype shown, or a quantized conv
    that no layer names).
    """
    non_int8: list[NonInt8Conv] = []
    seen: dict[str, None] = {}
    unchecked: list[str] = []
    for layer in report.layers:
        for module in layer.convolutions:
            if module in seen:  # judged by the first layer that computes it
                continue
            seen[module] = None
            if not report.detailed or layer.precision == "unknown":
                unchecked.append(module)
            elif layer.precision != "int8":
                excluded = intended is not None and module not in intended
                non_int8.append(NonInt8Conv(module, layer.precision, layer.name, excluded))
    unchecked += [m for m in sorted(intended or ()) if m not in seen]
    check = Int8Check(non_int8, unchecked, [], [])
    if check.unexpected:
        why = "; the ONNX quantizes them: TensorRT did not fuse their Q/DQ" if intended is not None else ""
        check.warnings.append(
            f"{len(check.unexpected)} convolution(s) of this int8 engine do not run in int8: "
            f"{_listed(check.unexpected)}{why}"
        )
    kept = [c for c in non_int8 if c.excluded]
    if kept:
        check.notes.append(f"kept out of int8 in the ONNX: {_listed(kept)}")
    if not report.detailed:
        check.warnings.append("the int8 precision of the convolutions is unchecked: " + DETAILED_NOTE)
    elif unchecked:
        check.warnings.append(
            f"the precision of {len(unchecked)} convolution(s) is unchecked (TensorRT's report shows no "
            f"datatype for them, or no layer names them): {_first(unchecked, 8)}"
        )
    if strict and (check.unexpected or unchecked or not report.detailed):
        if check.unexpected:
            what = f"{len(check.unexpected)} convolution(s) do not run in int8: {_listed(check.unexpected)}"
        elif not report.detailed:
            what = "TensorRT's report has layer names only (no ProfilingVerbosity.DETAILED): no precision to check"
        else:
            what = f"the precision of {len(unchecked)} convolution(s) cannot be checked: {_first(unchecked, 4)}"
        raise EngineError(
            f"int8 engine refused (--strict-precision): {what}; keep such layers out of int8 in the ONNX "
            "on purpose, or build without --strict-precision"
        )
    return check


def _first(names: list[str], n: int) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
