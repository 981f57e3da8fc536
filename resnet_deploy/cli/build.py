"""``build``: a TensorRT engine (plan + JSON sidecar) from an ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import HardwareCompatChoice, _emit_json, _render_build, _stages


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
    json_out: Annotated[bool, typer.Option("--json", help="Print the build report (the sidecar) as JSON.")] = False,
) -> None:
    """Build a TensorRT engine (plan + JSON sidecar) from an ONNX. Needs TensorRT and an NVIDIA GPU."""
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
            progress=progress,
        )
    if json_out:
        _emit_json(report)
        return
    _render_build(report)
