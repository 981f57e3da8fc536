"""``build``: a TensorRT engine (plan + JSON sidecar + TensorRT's layer information) from an ONNX.

The layer table shows what TensorRT made of each module: the layer that computes it and the
precision it runs in. In an int8 engine a convolution not in int8 is a warning, or with
``--strict-precision`` an error (exit 1) before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..reports import printable
from ._common import HardwareCompatChoice, _emit_json, _render_build, _stages, err, out


def build_cmd(
    onnx_model: Annotated[
        Path,
        typer.Argument(
            help="An ONNX from resnet-deploy (fp32, fp16 or int8 Q/DQ) with a dynamic batch axis.", show_default=False
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="The plan (default: beside the ONNX, .plan); its sidecar is PLAN.json.",
            show_default=False,
        ),
    ] = None,
    min_batch: Annotated[int, typer.Option("--min-batch", help="Optimization profile: smallest batch.")] = 1,
    opt_batch: Annotated[
        int, typer.Option("--opt-batch", help="Optimization profile: the batch TensorRT tunes for.")
    ] = 8,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Optimization profile: largest batch.")] = 64,
    workspace: Annotated[
        float | None, typer.Option(help="Workspace memory pool limit, GiB.", show_default=False)
    ] = None,
    timing_cache: Annotated[
        Path | None,
        typer.Option(
            "--timing-cache", help="Timing cache file: loaded if present, saved after the build.", show_default=False
        ),
    ] = None,
    hardware_compat: Annotated[
        HardwareCompatChoice,
        typer.Option("--hardware-compat", help="none (this GPU's compute capability), ampere-plus, or same-cc."),
    ] = HardwareCompatChoice.none,
    version_compatible: Annotated[
        bool, typer.Option("--version-compatible", help="Runs on newer TensorRT of the same major version.")
    ] = False,
    opt_level: Annotated[
        int | None, typer.Option("--opt-level", help="Builder optimization level 0-5.", show_default=False)
    ] = None,
    strict_precision: Annotated[
        bool,
        typer.Option(
            "--strict-precision",
            help="An int8 engine with a convolution TensorRT does not run in int8 is an error (nothing written).",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the build report (the sidecar and the layers) as JSON.")
    ] = False,
) -> None:
    """Build a TensorRT engine (plan, sidecar, layer information) from an ONNX. Needs TensorRT and a GPU.

    Writes PLAN, PLAN.json (the sidecar) and PLAN.layers.json (TensorRT's own layer information) and
    shows the precision each layer runs in, by module."""
    from ..engine import build_engine

    with _stages() as progress:
        report = build_engine(
            onnx_model,
            output,
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            workspace_gib=workspace,
            timing_cache=timing_cache,
            hardware_compat=hardware_compat.value,
            version_compatible=version_compatible,
            opt_level=opt_level,
            strict_precision=strict_precision,
            progress=progress,
        )
    for warning in report.warnings:
        err.print("[bold yellow]warning:[/] " + escape(warning), highlight=False)
    if json_out:
        _emit_json(report)
        return
    _render_build(report)
    _render_layers(report)


_PRECISION_STYLE = {"int8": "green", "fp16": "cyan", "bf16": "cyan", "fp8": "green", "fp32": "yellow"}


def _render_layers(report: Any) -> None:
    """One row per engine layer that computes modules: its modules, TensorRT's layer type and the
    precision it runs in (a convolution of an int8 engine not in int8 marked); helpers counted."""
    layers = report.layers
    if layers is None:
        return
    check = report.int8_check
    flagged = {c.layer: c for c in check.non_int8} if check is not None else {}
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("#", "modules", "TensorRT layer type", "precision", "out", ""):
        table.add_column(col, justify="right" if col == "#" else "left")
    helpers = 0
    for i, layer in enumerate(layers.layers):
        if layer.helper:
            helpers += 1
            continue
        style = _PRECISION_STYLE.get(layer.precision, "red")
        mark = ""
        if layer.name in flagged:
            mark = "kept out of int8 in the ONNX" if flagged[layer.name].excluded else "[bold yellow]not int8[/]"
        table.add_row(
            str(i),
            escape(printable(", ".join(layer.modules))),
            escape(printable(layer.type or "?")),
            f"[{style}]{escape(layer.precision)}[/]",
            escape(layer.output_precision),
            mark,
        )
    out.print(table)
    counts = ", ".join(f"{n} {p}" for p, n in layers.precision_counts().items()) or "no precisions shown"
    out.print(
        escape(f"layers: {counts}; {helpers} TensorRT helper layer(s) (reformats, Q/DQ) not shown; ")
        + (f"TensorRT's layer information: {escape(printable(report.layers_path))}" if report.layers_path else ""),
        highlight=False,
    )
    for note in report.notes:
        out.print("note: " + escape(note), highlight=False)
