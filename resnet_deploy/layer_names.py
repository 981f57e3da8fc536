"""PyTorch module names on ONNX nodes, so every later stage speaks the user's language.

Users think in torchvision's module names (``layer3.0.conv2``, ``fc``); exporters name nodes
``node_Conv_78`` (dynamo) or ``/layer3/layer3.0/conv2/Conv`` (TorchScript). At export,
``name_nodes`` renames the node that produces each *reported* module's output to that module's
name (a BatchNorm-folded conv by its conv's name) and every other node ``MODULE/Op_k``, and records
the reported modules, in depth order, in the ``layers`` metadata entry. ONNX node names survive
fp16 conversion, ONNX Runtime's quantizer and TensorRT's parser (its layer names are the node
names), so the per-layer check, ``--exclude`` and the engine's layer report all read them back
with ``module_outputs`` / ``module_nodes``; none of them depends on which exporter ran.

The reported modules: every convolution, the classifier, the stem's max-pool, the global average
pool, each residual block (its output, after the block's last ReLU) and each parameter-free
shortcut. ReLU modules are not reported (torchvision calls one ReLU module several times).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterable, Sequence

import onnx
from torch import nn

LAYERS_KEY = "layers"  # metadata: the reported modules, comma-separated, in depth order
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def reported_modules(net: nn.Module) -> list[str]:
    """The module names of ``net`` a layer report shows, in registration (= depth) order."""
    from .models.resnet import BasicBlock, Bottleneck, PadShortcut

    kinds = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AdaptiveAvgPool2d, PadShortcut, BasicBlock, Bottleneck)
    return [name for name, m in net.named_modules() if name and isinstance(m, kinds)]


def _scope_of(node: onnx.NodeProto) -> str | None:
    """The innermost module scope the exporter recorded for ``node`` (None when it recorded none)."""
    for prop in node.metadata_props:  # the dynamo exporter: ['', 'layer2', 'layer2.0', 'layer2.0.conv2', 'conv2d_8']
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(scopes, list) and len(scopes) >= 2:
                return str(scopes[-2])
            return None
    if node.name.startswith("/"):  # TorchScript: /layer1/layer1.0/conv1/Conv
        path = ""
        for part in node.name.strip("/").split("/")[:-1]:
            path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
        return path
    return None


def _weight_module(node: onnx.NodeProto, initializers: set[str]) -> str | None:
    """A Conv or Gemm named by its weight initializer (``layer1.0.conv1.weight``): any exporter."""
    if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
        weight = str(node.input[1])
        if weight in initializers and weight.endswith(".weight"):
            return weight.removesuffix(".weight")
    return None


def name_nodes(model: onnx.ModelProto, modules: Sequence[str]) -> list[str]:
    """In place: name each reported module's output node by the module, the others ``SCOPE/Op_k``.

    Returns the modules found in the graph, in graph order, and records them in the metadata
    (``layers``). A module is found by the exporter's scopes, or for a conv/classifier by its weight.
    """
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    wanted = set(modules)
    scopes = [_weight_module(n, inits) or _scope_of(n) for n in graph.node]
    principal: dict[str, int] = {}  # module -> index of the last node inside it (its output)
    for i, scope in enumerate(scopes):
        if scope is None:
            continue
        parts = scope.split(".")
        for k in range(len(parts), 0, -1):
            prefix = ".".join(parts[:k])
            if prefix in wanted:
                principal[prefix] = i
    owner = {i: m for m, i in sorted(principal.items(), key=lambda kv: len(kv[0]))}  # inner wins a tie
    found = sorted(owner.items())
    counts: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        if i in owner:
            node.name = owner[i]
            continue
        base = scopes[i] if scopes[i] else "graph"
        key = f"{base}/{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
        node.name = f"{key}_{counts[key] - 1}"
    layers = [m for _, m in found]
    _set_meta(model, LAYERS_KEY, ",".join(layers))
    return layers


def _set_meta(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def recorded_layers(model: onnx.ModelProto) -> list[str]:
    """The reported modules recorded at export (empty for an ONNX from elsewhere or older)."""
    for prop in model.metadata_props:
        if prop.key == LAYERS_KEY:
            return [m for m in prop.value.split(",") if _MODULE_RE.fullmatch(m)]
    return []


def module_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Reported module -> the node that computes its output, in depth order."""
    by_name = {n.name: n for n in model.graph.node}
    return {m: by_name[m] for m in recorded_layers(model) if m in by_name}


def module_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """Reported module -> the tensor the rest of the graph reads as its output.

    Where a module's output is quantized (a QuantizeLinear -> DequantizeLinear pair is its only
    reader), the dequantized tensor is the module's output: that is what the next layer computes on.
    """
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    out: dict[str, str] = {}
    for module, node in module_nodes(model).items():
        tensor = node.output[0]
        for _ in range(2):  # follow at most one Q -> DQ pair (and a Cast between precisions)
            after = readers.get(tensor, [])
            if len(after) == 1 and after[0].op_type == "QuantizeLinear":
                dq = readers.get(after[0].output[0], [])
                if len(dq) == 1 and dq[0].op_type == "DequantizeLinear":
                    tensor = dq[0].output[0]
        out[module] = tensor
    return out


def module_of(node_name: str) -> str:
    """The module a node belongs to: its own name, or the scope before ``/`` (``layer1.0/Add_0``)."""
    return node_name.split("/", 1)[0]


def owners(module: str) -> list[str]:
    """``layer3.1.conv2`` -> [``layer3.1.conv2``, ``layer3.1``, ``layer3``] (the module and its parents)."""
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(len(parts), 0, -1)]


def match_modules(patterns: Iterable[str], names: Sequence[str]) -> dict[str, list[str]]:
    """Each pattern (a module name or an fnmatch glob such as ``layer4.*``) -> the ``names`` it
    selects: a name is selected when it or one of its parent modules matches. A pattern that selects
    nothing maps to an empty list (the caller names close matches)."""
    result: dict[str, list[str]] = {}
    for pattern in patterns:
        result[pattern] = [n for n in names if any(fnmatch.fnmatchcase(o, pattern) for o in owners(n))]
    return result
