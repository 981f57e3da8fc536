"""Edits of an int8 Q/DQ graph: TensorRT's residual placement, layers kept out of int8, and the
high-precision type of everything between the Q/DQ pairs.

All work on the node names export gives (``layer_names``): a conv node is named ``layer3.0.conv2``,
the classifier ``fc``. ONNX Runtime's quantizer keeps those names and adds Q/DQ nodes beside them.

* ``strip_branch_qdq``: TensorRT's Q/DQ placement for residual Adds (NVIDIA's guide, ModelOpt).
* ``dequantize_nodes``: the named nodes get their float inputs back (activation and weight), so
  they run in the high-precision type; the Q/DQ pairs nothing reads any more are removed.
* ``to_fp16_remainder``: every float tensor outside the int8 pairs becomes fp16 (ModelOpt's
  ``high_precision_dtype="fp16"``), which is what a strongly typed TensorRT engine then runs.
  Q/DQ in fp16 need opset 19, so the graph is converted to opset 19 first where it is older.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import onnx
from onnx import TensorProto, version_converter

from .choices import HighPrecision
from .errors import ConfigError, ExportError
from .fp16 import convert_graph_to_fp16
from .layer_names import match_modules, module_of, owners, recorded_layers

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FP16_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 scales and data from opset 19


def strip_branch_qdq(model: onnx.ModelProto) -> int:
    """TensorRT's placement for residual blocks: keep Q/DQ on the *residual* input of each Add and
    remove it from the input that a Conv produces, so TensorRT fuses that Conv + Add (+ ReLU) into
    one INT8 kernel (NVIDIA's Q/DQ placement guide; ModelOpt does the same). A Q/DQ pair on the
    conv branch would force the conv and the add apart. Where both inputs come from convolutions
    (a projection shortcut), the main branch is the one computed later. Returns the pairs removed."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    index = {id(n): i for i, n in enumerate(graph.node)}
    removed = 0
    for add in [n for n in graph.node if n.op_type == "Add"]:
        branches: list[tuple[int, int, onnx.NodeProto]] = []
        for k, name in enumerate(add.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            conv = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if conv is not None and conv.op_type == "Conv":
                act = producer.get(conv.input[0])
                branches.append((index[id(act)] if act is not None else -1, k, conv))
        if not branches:
            continue
        _, k, conv = max(branches, key=lambda b: b[0])  # the main branch: computed last
        add.input[k] = conv.output[0]
        removed += 1
    prune_unused(model)
    return removed


def prune_unused(model: onnx.ModelProto) -> int:
    """Remove Q/DQ nodes whose outputs nothing reads, then initializers nothing reads."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    removed = 0
    while True:
        used = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
        removed += len(dead)
    used = {name for n in graph.node for name in n.input} | outputs
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    return removed


def quantized_modules(model: onnx.ModelProto) -> list[str]:
    """The reported modules (conv, classifier, pooling) whose node reads a dequantized input, in
    graph order: the layers that run in int8 and that ``--exclude`` can keep out of it."""
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = set(recorded_layers(model))
    names = []
    for n in model.graph.node:
        if n.name in layers and any(
            producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input
        ):
            names.append(n.name)
    return names


def excludable(model: onnx.ModelProto) -> list[str]:
    """Every name ``--exclude`` accepts: the reported modules and their parents (``layer4``)."""
    names: dict[str, None] = {}
    for module in recorded_layers(model):
        for owner in reversed(owners(module)):
            names.setdefault(owner, None)
    return list(names)


def resolve_exclusions(patterns: Sequence[str], model: onnx.ModelProto) -> list[str]:
    """Check ``--exclude`` patterns against the model's module names; returns the patterns. An
    unknown name (or a glob that selects nothing) is a ConfigError that lists close matches."""
    names = excludable(model)
    if not names:
        raise ConfigError(
            "the ONNX records no module names (exported by another tool or an older resnet-deploy): "
            "re-export it with 'resnet-deploy export' to use --exclude"
        )
    for pattern, selected in match_modules(patterns, names).items():
        if not selected:
            close = difflib.get_close_matches(pattern, names, n=4, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else f"; modules look like {names[1]!r}"
            raise ConfigError(f"--exclude {pattern!r} names no module of this model{hint}")
    return list(patterns)


def selected_nodes(model: onnx.ModelProto, patterns: Iterable[str]) -> list[onnx.NodeProto]:
    """The non-Q/DQ nodes whose module (or a parent of it) matches one of ``patterns``."""
    pats = list(patterns)
    if not pats:
        return []
    nodes = [n for n in model.graph.node if n.op_type not in QDQ_OPS]
    picked = match_modules(pats, [module_of(n.name) for n in nodes])
    chosen = {name for names in picked.values() for name in names}
    return [n for n in nodes if module_of(n.name) in chosen]


def dequantize_nodes(model: onnx.ModelProto, source: onnx.ModelProto, patterns: Iterable[str]) -> list[str]:
    """In place: the nodes matching ``patterns`` read the float tensors they read in ``source`` (the
    fp32 ONNX the int8 one was quantized from), so no Q/DQ pair feeds them; float weights are copied
    back from ``source``. Returns the node names that changed."""
    by_name = {n.name: n for n in source.graph.node}
    src_inits = {t.name: t for t in source.graph.initializer}
    have = {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    changed = []
    for node in selected_nodes(model, patterns):
        original = by_name.get(node.name)
        if original is None or original.op_type != node.op_type or len(original.input) != len(node.input):
            raise ExportError(f"cannot map node {node.name!r} of the int8 graph back to the fp32 source")
        fed = [i for i in node.input if producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"]
        if not fed:
            continue
        for k, name in enumerate(original.input):
            node.input[k] = name
            if name in src_inits and name not in have:
                model.graph.initializer.append(src_inits[name])
                have.add(name)
        changed.append(node.name)
    prune_unused(model)
    return changed


def to_fp16_remainder(model: onnx.ModelProto, *, keep_io_types: bool = True) -> tuple[int, int]:
    """In place: every float tensor (weights left in float, biases, scales, activations between the
    Q/DQ pairs) becomes fp16, on opset >= 19. Returns (clamped, underflowed) values, as ``to_fp16``."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < FP16_QDQ_OPSET:
        try:
            converted = version_converter.convert_version(model, FP16_QDQ_OPSET)
        except Exception as e:  # the converter raises RuntimeError/ValueError by op
            raise ExportError(
                f"fp16 between the int8 pairs needs opset {FP16_QDQ_OPSET} and this graph's opset {opset} could not "
                f"be converted ({str(e).splitlines()[0][:200]}): re-export with --opset {FP16_QDQ_OPSET} "
                "or use --high-precision fp32"
            ) from None
        model.CopyFrom(converted)
    clamped, under = convert_graph_to_fp16(model, keep_io_types=keep_io_types)
    # A scale that underflowed to 0 would divide by zero in QuantizeLinear: keep it at fp16's tiniest.
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT16 and init.name.endswith("_scale"):
            arr = onnx.numpy_helper.to_array(init)
            if (arr == 0).any():
                arr = arr.copy()
                arr[arr == 0] = 2**-24
                init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    return clamped, under


HIGH_PRECISIONS = tuple(h.value for h in HighPrecision)


@dataclass(frozen=True)
class Int8Layout:
    """How the int8 graph is shaped around its Q/DQ pairs (``quantize_int8``'s layout options)."""

    recipe: str
    exclude: tuple[str, ...]  # the user's module names / globs
    by_default: tuple[str, ...]  # excluded unless asked otherwise: the classifier (tensorrt recipe)
    high_precision: str  # the type between the pairs: fp16 | fp32
    fp16_io: bool

    @classmethod
    def resolve(
        cls,
        model: onnx.ModelProto,
        recipe: str,
        exclude: Sequence[str],
        quantize_classifier: bool,
        high_precision: str | None,
        fp16_io: bool,
    ) -> Int8Layout:
        """Check the options against the fp32 source before anything is calibrated."""
        if isinstance(exclude, str):
            exclude = [exclude]
        patterns = tuple(resolve_exclusions(list(exclude), model)) if exclude else ()
        default_hp = "fp16" if recipe == "tensorrt" else "fp32"
        hp = high_precision or default_hp
        if hp not in HIGH_PRECISIONS:
            raise ConfigError(f"--high-precision {hp!r}: choose one of {', '.join(HIGH_PRECISIONS)}")
        if recipe == "cpu" and hp != "fp32":
            raise ConfigError(
                "--high-precision fp16 is for the tensorrt recipe: the cpu recipe runs ONNX Runtime's int8 CPU "
                "kernels, which take fp32"
            )
        if fp16_io and hp != "fp16":
            raise ConfigError("--fp16-io needs --high-precision fp16 (the graph between the pairs in fp16)")
        by_default = (
            ("fc",) if recipe == "tensorrt" and not quantize_classifier and "fc" in recorded_layers(model) else ()
        )
        return cls(recipe, patterns, by_default, hp, fp16_io)

    @property
    def patterns(self) -> tuple[str, ...]:
        return self.exclude + tuple(p for p in self.by_default if p not in self.exclude)

    def dequantize(self, model: onnx.ModelProto, source: onnx.ModelProto) -> list[str]:
        """Keep the excluded layers out of int8; returns the modules that changed."""
        changed = dequantize_nodes(model, source, self.patterns)
        return list(dict.fromkeys(module_of(n) for n in changed))

    def finish(self, model: onnx.ModelProto) -> None:
        """The remainder's type: fp16 tensors between the pairs (in place), or left in fp32."""
        if self.high_precision == "fp16":
            to_fp16_remainder(model, keep_io_types=not self.fp16_io)

    def metadata(self, excluded: Sequence[str]) -> dict[str, str]:
        io = "float16" if self.fp16_io else "float32"
        meta = {"int8_high_precision": self.high_precision, "input_dtype": io, "output_dtype": io}
        meta["int8_excluded"] = ",".join(excluded) if excluded else "none"
        return meta
