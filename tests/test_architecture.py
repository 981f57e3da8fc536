"""The package's shape, as the redesign promised it: the import graph is a tree (no cycle, counting
imports inside functions and the package ``__init__`` an import runs first), no module over 600
lines and no function over 120. Each rule is also shown to catch a package that breaks it."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_deploy"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _targets(mod: str, path: Path, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    """The package modules an import statement loads (the module, or a submodule it names)."""
    pkg = mod.split(".")[0]
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.split(".")[0] == pkg]
    else:
        target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
        if node.level == 0:
            target = node.module or ""
        if target.split(".")[0] == pkg:
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
    found = set()
    for name in names:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in mods:
            found.add(name)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports, anywhere in its body (inside functions too). An
    import of ``a.b.c`` from outside ``a.b`` also runs ``a.b``'s ``__init__``: that counts."""
    mods = _modules(root)
    top = root.name
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(mod, path, node, mods):
                parts = target.split(".")
                ancestors = {".".join(parts[:k]) for k in range(2, len(parts))}
                for t in {target} | {a for a in ancestors if a in mods and not mod.startswith(a + ".")}:
                    if t not in (mod, top):
                        graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def oversized(root: Path) -> list[str]:
    """Modules over MAX_MODULE_LINES and functions over MAX_FUNCTION_LINES lines."""
    problems = []
    for mod, path in sorted(_modules(root).items()):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            problems.append(f"module {mod}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"function {mod}.{node.name}: {length} lines")
    return problems


def test_the_import_graph_is_a_tree() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and "resnet_deploy.check" in graph["resnet_deploy.stage"]
    assert cycles(graph) == []


def test_no_module_or_function_is_too_long() -> None:
    assert oversized(PACKAGE) == []


def test_the_low_layers_stay_low() -> None:
    """What the layout promises: pure metrics, an interface-only runner base, a TensorRT-free
    sidecar, and a CLI whose command modules never import the package that registers them."""
    graph = import_graph(PACKAGE)
    assert graph["resnet_deploy.metrics"] <= {"resnet_deploy.errors"}
    assert graph["resnet_deploy.runtime.base"] <= {
        "resnet_deploy.errors",
        "resnet_deploy.onnx_io",
        "resnet_deploy.data",
    }
    assert "resnet_deploy.engine" not in graph["resnet_deploy.sidecar"]
    commands = [m for m in graph if m.startswith("resnet_deploy.cli.") and not m.endswith("__main__")]
    assert commands and all("resnet_deploy.cli" not in graph[m] for m in commands)
    assert "resnet_deploy.ship" not in graph["resnet_deploy.serve"]


def _write_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "files, cycle",
    [
        # the cycle this redesign removed, in small: a pure module that reaches back into a runner
        (
            {"__init__.py": "", "a.py": "from .b import x\n", "b.py": "def f():\n    from .a import y\n"},
            ["pkg.a", "pkg.b"],
        ),
        # a base class that imports its own subclass to dispatch
        (
            {
                "__init__.py": "",
                "runtime/__init__.py": "",
                "runtime/base.py": "def open_runner():\n    from .trt import T\n",
                "runtime/trt.py": "from .base import Runner\n",
            },
            ["pkg.runtime.base", "pkg.runtime.trt"],
        ),
        # through a package __init__ that imports its submodules
        (
            {
                "__init__.py": "",
                "models/__init__.py": "from .registry import create\n",
                "models/registry.py": "from ..weights import load\n",
                "weights.py": "from .models.cfg import Cfg\n",
                "models/cfg.py": "",
            },
            ["pkg.models", "pkg.models.registry", "pkg.weights"],
        ),
    ],
)
def test_the_cycle_check_finds_a_cycle(tmp_path: Path, files: dict[str, str], cycle: list[str]) -> None:
    assert cycles(import_graph(_write_package(tmp_path, files))) == [cycle]


def test_the_size_check_finds_long_code(tmp_path: Path) -> None:
    long_body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    root = _write_package(tmp_path, {"__init__.py": "", "big.py": "def f():\n" + long_body + "\n" * 500})
    lines = len((root / "big.py").read_text().splitlines())
    assert lines > MAX_MODULE_LINES
    assert oversized(root) == [f"module pkg.big: {lines} lines", f"function pkg.big.f: {MAX_FUNCTION_LINES + 1} lines"]
