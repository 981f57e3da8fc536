"""``export`` and ``convert``: a ResNet to a verified ONNX (and on to fp16/int8, pixel input and an
engine), and an fp32 ONNX to fp16/int8, with their renderers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ._common import (
    AUTO_EXCLUDE_OPT,
    CALIB_COUNT_OPT,
    CALIB_METHOD_OPT,
    CALIB_OPT,
    EXCLUDE_OPT,
    HIGH_PRECISION_OPT,
    INPUT_FORMAT_OPT,
    MAX_EXCLUDED_OPT,
    PERCENTILE_OPT,
    QUANTIZE_CLASSIFIER_OPT,
    RECIPE_OPT,
    SEED_BOUNDS,
    CalibMethodChoice,
    ConvertPrecision,
    ExporterChoice,
    FormatChoice,
    HighPrecisionChoice,
    InputFormatChoice,
    PrecisionChoice,
    RecipeChoice,
    ShortcutChoice,
    VariantChoice,
    _emit_json,
    _render_build,
    _stages,
    err,
    out,
)

if TYPE_CHECKING:
    from ..pipeline import ChainReport, PrecisionOptions


def export_cmd(
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            "-d",
            help="ResNet depth: 18, 34, 50, 101, 152 (ImageNet) or 20, 32, 44, 56, 110 (CIFAR).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model id instead of --depth, e.g. resnet50.", show_default=False),
    ] = None,
    variant: Annotated[
        VariantChoice,
        typer.Option(help="v1.5: stride on the bottleneck 3x3 (torchvision); v1: on the first 1x1 (the paper)."),
    ] = VariantChoice.v1_5,
    shortcut: Annotated[
        ShortcutChoice | None,
        typer.Option(
            help="Paper's shortcut option: A zero-pad, B project where shapes change, C project always. Default: B (ImageNet), A (CIFAR).",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    weights: Annotated[
        str,
        typer.Option(
            "--weights",
            "-w",
            help="auto | random | imagenet[:v1|:v2] | PATH to a torchvision state_dict. auto: ImageNet weights if already cached, else random (untrained).",
        ),
    ] = "auto",
    num_classes: Annotated[
        int | None,
        typer.Option(help="Classes of the final layer (default: 1000 ImageNet, 10 CIFAR).", show_default=False),
    ] = None,
    image_size: Annotated[
        str | None, typer.Option(help="Input size: 224 or HxW (default: 224 ImageNet, 32 CIFAR).", show_default=False)
    ] = None,
    batch: Annotated[str, typer.Option(help="'dynamic' (a dynamic 'batch' axis) or a fixed batch size.")] = "dynamic",
    opset: Annotated[int, typer.Option(help="ONNX opset (13-17 use the TorchScript exporter).")] = 18,
    exporter: Annotated[
        ExporterChoice, typer.Option(help="torch exporter: auto picks dynamo for opset >= 18.")
    ] = ExporterChoice.auto,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Output file or existing folder (default: ./<model>.onnx).", show_default=False
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for random weights and the verification inputs.", **SEED_BOUNDS)] = 0,
    rtol: Annotated[
        float,
        typer.Option(help="Parity tolerance: max |onnx - torch| must be <= RTOL x max |torch logit|."),
    ] = 1e-4,
    allow_mismatch: Annotated[
        bool, typer.Option("--allow-mismatch", help="Keep the file even if ONNX Runtime disagrees with PyTorch.")
    ] = False,
    precision: Annotated[
        PrecisionChoice,
        typer.Option(help="fp32; fp16 or int8 (precision inside the graph; the fp32 model is kept beside it)."),
    ] = PrecisionChoice.fp32,
    fp16_io: Annotated[
        bool, typer.Option("--fp16-io", help="With --precision fp16: fp16 input and output too (default fp32).")
    ] = False,
    calib: Annotated[str | None, CALIB_OPT] = None,
    calib_count: Annotated[int, CALIB_COUNT_OPT] = 512,
    calib_method: Annotated[CalibMethodChoice, CALIB_METHOD_OPT] = CalibMethodChoice.entropy,
    percentile: Annotated[float, PERCENTILE_OPT] = 99.999,
    int8_recipe: Annotated[RecipeChoice, RECIPE_OPT] = RecipeChoice.tensorrt,
    exclude: Annotated[list[str] | None, EXCLUDE_OPT] = None,
    quantize_classifier: Annotated[bool, QUANTIZE_CLASSIFIER_OPT] = False,
    high_precision: Annotated[HighPrecisionChoice | None, HIGH_PRECISION_OPT] = None,
    auto_exclude: Annotated[bool, AUTO_EXCLUDE_OPT] = False,
    max_excluded: Annotated[int, MAX_EXCLUDED_OPT] = 8,
    fmt: Annotated[
        FormatChoice,
        typer.Option("--format", help="onnx, or engine: also build a TensorRT plan beside the ONNX and check it."),
    ] = FormatChoice.onnx,
    min_batch: Annotated[int, typer.Option("--min-batch", help="With --format engine: profile min batch.")] = 1,
    opt_batch: Annotated[int, typer.Option("--opt-batch", help="With --format engine: profile opt batch.")] = 8,
    max_batch: Annotated[int, typer.Option("--max-batch", help="With --format engine: profile max batch.")] = 64,
    input_format: Annotated[InputFormatChoice, INPUT_FORMAT_OPT] = InputFormatChoice.float32_nchw,
    json_out: Annotated[bool, typer.Option("--json", help="Print the export report as JSON on stdout.")] = False,
) -> None:
    """Export a ResNet to a verified ONNX file (BatchNorm folded, dynamic batch, checked against PyTorch)."""
    from ..metrics import Tolerance
    from ..pipeline import EngineOptions, export_chain, resolve_model

    if not 0 <= rtol < 1:
        raise ConfigError(f"--rtol {rtol}: choose a value in [0, 1)")
    options = _precision_options(
        precision, fp16_io, calib, calib_count, calib_method, percentile, int8_recipe, seed, allow_mismatch
    )
    options = _with_int8_layout(options, exclude, quantize_classifier, high_precision, auto_exclude, max_excluded)
    name = resolve_model(depth, model)
    with _parity_report_on_failure(json_out), _stages() as progress:
        report = export_chain(
            name,
            output,
            precision=options,
            input_format=input_format.value,
            fmt=fmt.value,
            engine=EngineOptions(min_batch, opt_batch, max_batch),
            progress=progress,
            weights=weights,
            variant=variant.value,
            shortcut=shortcut.value if shortcut else None,
            num_classes=num_classes,
            image_size=image_size,
            batch=batch,
            opset=opset,
            exporter=exporter.value,
            tolerance=Tolerance(scale_rtol=rtol, min_retrieval=1.0),
        )
    _print_chain_warnings(report)
    _emit_json(report) if json_out else _render_chain(report)


def convert_cmd(
    artifact: Annotated[Path, typer.Argument(help="An fp32 ONNX exported by resnet-deploy.", show_default=False)],
    precision: Annotated[ConvertPrecision, typer.Option(help="Target precision.", show_default=False)],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file or folder (default: beside the source, e.g. resnet50.int8.onnx).",
            show_default=False,
        ),
    ] = None,
    fp16_io: Annotated[bool, typer.Option("--fp16-io", help="With fp16: fp16 input and output too.")] = False,
    calib: Annotated[str | None, CALIB_OPT] = None,
    calib_count: Annotated[int, CALIB_COUNT_OPT] = 512,
    calib_method: Annotated[CalibMethodChoice, CALIB_METHOD_OPT] = CalibMethodChoice.entropy,
    percentile: Annotated[float, PERCENTILE_OPT] = 99.999,
    int8_recipe: Annotated[RecipeChoice, RECIPE_OPT] = RecipeChoice.tensorrt,
    exclude: Annotated[list[str] | None, EXCLUDE_OPT] = None,
    quantize_classifier: Annotated[bool, QUANTIZE_CLASSIFIER_OPT] = False,
    high_precision: Annotated[HighPrecisionChoice | None, HIGH_PRECISION_OPT] = None,
    auto_exclude: Annotated[bool, AUTO_EXCLUDE_OPT] = False,
    max_excluded: Annotated[int, MAX_EXCLUDED_OPT] = 8,
    seed: Annotated[int, typer.Option(help="Seed for the comparison inputs (and --calib random).", **SEED_BOUNDS)] = 0,
    allow_mismatch: Annotated[
        bool, typer.Option("--allow-mismatch", help="Keep the file even if the comparison with fp32 fails.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert an fp32 ONNX to fp16 or int8 (Q/DQ), checked against the fp32 model."""
    from ..precision import convert

    options = _precision_options(
        precision, fp16_io, calib, calib_count, calib_method, percentile, int8_recipe, seed, allow_mismatch
    )
    options = _with_int8_layout(options, exclude, quantize_classifier, high_precision, auto_exclude, max_excluded)
    with _parity_report_on_failure(json_out), _stages() as progress:
        converted = convert(artifact, output, options.precision, progress=progress, **options.converter_options())
    _print_precision_warnings(converted.warnings)
    if json_out:
        _emit_json(converted)
        return
    _render_precision(converted)


# ----------------------------------------------------------------------------------- export's chain


def _precision_options(
    precision: PrecisionChoice | ConvertPrecision,
    fp16_io: bool,
    calib: str | None,
    calib_count: int,
    calib_method: CalibMethodChoice,
    percentile: float,
    recipe: RecipeChoice,
    seed: int,
    allow_mismatch: bool,
) -> PrecisionOptions:
    """export's and convert's precision options, checked before anything runs."""
    from ..pipeline import PrecisionOptions

    options = PrecisionOptions(
        precision.value,
        fp16_io,
        calib,
        calib_count,
        calib_method.value,
        percentile,
        recipe.value,
        seed,
        allow_mismatch,
    )
    options.validate()
    return options


def _with_int8_layout(
    options: PrecisionOptions,
    exclude: list[str] | None,
    quantize_classifier: bool,
    high_precision: HighPrecisionChoice | None,
    auto_exclude: bool,
    max_excluded: int,
) -> PrecisionOptions:
    """The int8 layout options added to export's / convert's precision options, checked."""
    from dataclasses import replace

    layout = replace(
        options,
        exclude=tuple(exclude or ()),
        quantize_classifier=quantize_classifier,
        high_precision=high_precision.value if high_precision else None,
        auto_exclude=auto_exclude,
        max_excluded=max_excluded,
    )
    layout.validate()
    return layout


@contextmanager
def _parity_report_on_failure(json_out: bool) -> Iterator[None]:
    """A ParityError's report still reaches stdout with --json (the whole chain's, rendered as
    tables without it, when the engine failed its check); the error itself goes on up."""
    from ..errors import ParityError
    from ..pipeline import ChainReport

    try:
        yield
    except ParityError as e:
        if isinstance(e.report, ChainReport):
            _print_chain_warnings(e.report)
            if not json_out:
                _render_chain(e.report)
        if json_out and e.report is not None:
            _emit_json(e.report)
        raise


def _print_precision_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        style = "bold red" if "random" in warning else "bold yellow"
        err.print(f"[{style}]warning:[/] " + escape(warning), highlight=False)


def _print_chain_warnings(report: ChainReport) -> None:
    for warning in report.export.warnings:
        err.print("[bold yellow]warning:[/] " + escape(warning), highlight=False)
    if report.precision is not None:
        _print_precision_warnings(report.precision.warnings)


# ---------------------------------------------------------------------------------------- rendering


def _render_chain(report: ChainReport) -> None:
    _render_export(report.export)
    if report.precision is not None:
        _render_precision(report.precision)
    if report.pixel_input is not None:
        _render_pixels(report.pixel_input)
    if report.engine is not None and report.check is not None:
        _render_build(report.engine)
        verdict = "[bold green]passed[/]" if report.check.passed else "[bold red]FAILED[/]"
        out.print(f"check: {verdict} engine vs {escape(report.onnx_path.name)}")


def _render_pixels(report: Any) -> None:
    status = "[bold green]passed[/]" if report.parity_passed else "[bold red]FAILED[/]"
    shape = ", ".join(map(str, report.input["shape"]))
    worst = max((r.diff_to_scale for r in report.parity), default=0.0)
    out.print(
        f"[bold]{escape(report.path)}[/]  "
        + escape(
            f"({report.file_size_bytes / 1e6:.1f} MB, input uint8 [{shape}] pixels, sha256 {report.sha256[:12]}...)"
        ),
        highlight=False,
    )
    out.print(
        f"parity: {status} vs {escape(Path(report.source).name)} on random pixels "
        f"(max diff / max|logit| {worst:.2e}; {report.tolerance})",
        highlight=False,
    )


def _render_precision(report: Any) -> None:
    status = "[bold green]passed[/]" if report.parity_passed else "[bold red]FAILED[/]"
    out.print(
        f"[bold]{escape(report.path)}[/]  ({report.file_size_bytes / 1e6:.1f} MB, {report.precision}, "
        f"io {report.io_dtype}, sha256 {report.sha256[:12]}...)",
        highlight=False,
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_row("onnx", ", ".join(f"{op} {n}" for op, n in report.nodes_by_op.items()))
    if report.precision == "fp16":
        grid.add_row(
            "weights",
            f"{report.clamped_weights} clamped to the fp16 range, {report.underflowed_weights} underflowed to 0",
        )
    else:
        c = report.extra["calibration"]
        x = report.extra
        grid.add_row(
            "int8",
            f"{x['recipe']} recipe, {x['high_precision']} between the Q/DQ pairs, classifier in {x['classifier']}",
        )
        grid.add_row("excluded", escape(", ".join(x["excluded"]) or "none"))
        grid.add_row(
            "calibration",
            escape(
                f"{c['count']} inputs from {c['source']}, {c['method']}, {c['skipped']} skipped, cache {c['cache']}"
            ),
        )
    grid.add_row("parity", f"{status} vs fp32 ONNX ({report.tolerance})")
    out.print(grid)
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("batch", "SQNR dB", "retrieval", "cosine (min)", "top-1 agree", "top-5 agree", "max diff / max|logit|"):
        table.add_column(col, justify="right")
    for r in report.parity:
        table.add_row(
            str(r.batch_size),
            "-" if r.sqnr_db is None else f"{r.sqnr_db:.1f}",
            "-" if r.retrieval is None else f"{r.retrieval:.0%}",
            f"{r.cosine_min:.6f}",
            f"{r.top1_agreement:.0%}",
            f"{r.top5_agreement:.0%}",
            f"{r.diff_to_scale:.2e}",
        )
    out.print(table)
    auto = report.extra.get("auto_exclude") if report.precision == "int8" else None
    if auto and auto.get("ranking"):
        _render_auto_exclude(auto)


def _render_auto_exclude(auto: dict[str, Any]) -> None:
    """--auto-exclude: the sensitivity ranking, and what each exclusion bought."""
    base = auto["baseline"]
    out.print(
        f"[bold]--auto-exclude[/] ({auto['method']}): before, SQNR {base['sqnr_db']} dB, retrieval "
        f"{base['retrieval']}; ranking (top 10, dB the output gains):",
        highlight=False,
    )
    out.print("  " + ", ".join(f"{escape(r['module'])} {r['score_db']:+.1f}" for r in auto["ranking"][:10]))
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("excluded", "SQNR dB", "gained dB", "retrieval", "gate"):
        table.add_column(col, justify="right")
    for step in auto["steps"]:
        table.add_row(
            escape(step["module"]),
            f"{step['sqnr_db']}",
            f"{step['gained_db']:+.1f}" if step["gained_db"] is not None else "-",
            f"{step['retrieval']}",
            "[green]passes[/]" if step["passed"] else "fails",
        )
    out.print(table)


def _render_export(report: Any) -> None:
    size_mb = report.file_size_bytes / 1e6
    status = "[bold green]passed[/]" if report.parity_passed else "[bold red]FAILED[/]"
    out.print(f"[bold]{escape(report.path)}[/]  ({size_mb:.1f} MB, sha256 {report.sha256[:12]}...)", highlight=False)
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim")
    info.add_column()
    info.add_row(
        "model",
        f"{report.model} (variant {report.variant}, shortcut {report.shortcut}, "
        f"{report.num_classes} classes, {report.params:,} params, {report.gmacs:.3f} GMACs)",
    )
    info.add_row(
        "weights", escape(report.weights.label) + ("" if report.weights.trained else " [yellow](untrained)[/]")
    )
    b = "batch" if report.batch == "dynamic" else report.batch
    info.add_row(
        "input",
        escape(
            f"input float32 [{b}, 3, {report.image_size[0]}, {report.image_size[1]}]"
            f" -> logits [{b}, {report.num_classes}]"
        ),
    )
    info.add_row(
        "onnx",
        f"opset {report.opset}, {report.exporter} exporter, {report.num_nodes} nodes: "
        + ", ".join(f"{op} {n}" for op, n in report.nodes_by_op.items()),
    )
    info.add_row("parity", f"{status} vs PyTorch ({report.tolerance})")
    out.print(info)
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("batch", "max abs diff", "max diff / max|logit|", "mean abs diff", "cosine (min)", "top-1 agree"):
        table.add_column(col, justify="right")
    for r in report.parity:
        table.add_row(
            str(r.batch_size),
            f"{r.max_abs_diff:.2e}",
            f"{r.diff_to_scale:.2e}",
            f"{r.mean_abs_diff:.2e}",
            f"{r.cosine_min:.8f}",
            f"{r.top1_agreement:.0%}",
        )
    out.print(table)
    out.print(f"[dim]{report.seconds.get('total', 0):.1f} s[/]")
