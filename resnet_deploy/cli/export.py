"""``export`` and ``convert``: a ResNet to a verified ONNX (and on to fp16/int8, pixel input and an
engine), and an fp32 ONNX to fp16/int8, with their renderers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ._common import (
    CALIB_COUNT_OPT,
    CALIB_METHOD_OPT,
    CALIB_OPT,
    PERCENTILE_OPT,
    RECIPE_OPT,
    CalibMethodChoice,
    ConvertPrecision,
    ExporterChoice,
    FormatChoice,
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
    seed: Annotated[int, typer.Option(help="Seed for random weights and the verification inputs.")] = 0,
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
    fmt: Annotated[
        FormatChoice,
        typer.Option("--format", help="onnx, or engine: also build a TensorRT plan beside the ONNX and check it."),
    ] = FormatChoice.onnx,
    min_batch: Annotated[int, typer.Option("--min-batch", help="With --format engine: profile min batch.")] = 1,
    opt_batch: Annotated[int, typer.Option("--opt-batch", help="With --format engine: profile opt batch.")] = 8,
    max_batch: Annotated[int, typer.Option("--max-batch", help="With --format engine: profile max batch.")] = 64,
    input_format: Annotated[
        InputFormatChoice,
        typer.Option(
            "--input-format",
            help="float32-nchw (normalised tensors), or uint8-nhwc: raw resized+cropped RGB pixels, normalised inside the graph.",
        ),
    ] = InputFormatChoice.float32_nchw,
    json_out: Annotated[bool, typer.Option("--json", help="Print the export report as JSON on stdout.")] = False,
) -> None:
    """Export a ResNet to a verified ONNX file (BatchNorm folded, dynamic batch, checked against PyTorch)."""
    if not 0 <= rtol < 1:
        raise ConfigError(f"--rtol {rtol}: choose a value in [0, 1)")
    options = _precision_options(
        precision, fp16_io, calib, calib_count, calib_method, percentile, int8_recipe, seed, allow_mismatch
    )

    name = _resolve_model_option(depth, model)
    profile = _engine_profile(fmt, batch, min_batch, opt_batch, max_batch)
    fp32_path, precision_path, final_path = _precision_paths(name, output, precision.value, input_format.value)
    report = _export_fp32(
        name,
        fp32_path,
        rtol,
        json_out,
        weights=weights,
        variant=variant.value,
        shortcut=shortcut.value if shortcut else None,
        num_classes=num_classes,
        image_size=image_size,
        batch=batch,
        opset=opset,
        exporter=exporter.value,
        seed=seed,
        allow_mismatch=allow_mismatch,
    )
    _finish_export(report, options, precision_path, final_path, input_format.value, profile, json_out)


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
    seed: Annotated[int, typer.Option(help="Seed for the comparison inputs (and --calib random).")] = 0,
    allow_mismatch: Annotated[
        bool, typer.Option("--allow-mismatch", help="Keep the file even if the comparison with fp32 fails.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert an fp32 ONNX to fp16 or int8 (Q/DQ), checked against the fp32 model."""
    options = _precision_options(
        precision, fp16_io, calib, calib_count, calib_method, percentile, int8_recipe, seed, allow_mismatch
    )
    converted = _convert(artifact, output, options, json_out)
    if json_out:
        _emit_json(converted)
        return
    _render_precision(converted)


# ----------------------------------------------------------------------------------- export's chain


def _resolve_model_option(depth: int | None, model: str | None) -> str:
    from ..models.registry import resolve_model_name

    if depth is None and model is None:
        raise ConfigError("choose a model: --depth N (e.g. --depth 50) or --model NAME (see 'resnet-deploy models')")
    by_depth = resolve_model_name(depth) if depth is not None else None
    by_name = resolve_model_name(model) if model is not None else None
    if by_depth and by_name and by_depth != by_name:
        raise ConfigError(f"--depth {depth} and --model {model} name different models; give one of them")
    return by_depth or by_name  # type: ignore[return-value]


def _engine_profile(
    fmt: FormatChoice, batch: str, min_batch: int, opt_batch: int, max_batch: int
) -> tuple[int, int, int] | None:
    """With --format engine, the engine's profile, checked now: fail before a long export when the
    engine cannot be built here. None with --format onnx."""
    if fmt != FormatChoice.engine:
        return None
    from ..engine import runtime_env
    from ..sidecar import Profile

    if batch.strip().lower() != "dynamic":
        raise ConfigError("--format engine needs --batch dynamic (the engine's profile sets the batch range)")
    Profile(min_batch, opt_batch, max_batch, (3, 1, 1))
    runtime_env()
    return min_batch, opt_batch, max_batch


def _export_fp32(name: str, path: Any, rtol: float, json_out: bool, **export_options: Any) -> Any:
    """The fp32 export with a progress UI; with --json a parity failure's report still goes to stdout."""
    from ..errors import ParityError
    from ..export import export_onnx
    from ..parity import Tolerance

    try:
        with _stages() as progress:
            report = export_onnx(name, path, tolerance=Tolerance(scale_rtol=rtol), progress=progress, **export_options)
    except ParityError as e:
        if json_out and e.report is not None:
            _emit_json(e.report)
        raise
    for warning in report.warnings:
        err.print("[bold yellow]warning:[/] " + escape(warning), highlight=False)
    return report


def _finish_export(
    report: Any,
    options: _PrecisionOptions,
    precision_path: Any,
    final_path: Any,
    input_format: str,
    profile: tuple[int, int, int] | None,
    json_out: bool,
) -> None:
    """The stages after the fp32 export, each when asked (precision, pixel input, engine), then what
    they made, as JSON or tables; a ParityError when the engine differs from its ONNX."""
    from ..errors import ParityError

    converted = None
    if options.precision != "fp32":
        converted = _convert(Path(report.path), precision_path, options, json_out, report.to_dict())
    pixels = None
    if input_format == "uint8-nhwc":
        float_path = Path(converted.path if converted is not None else report.path)
        pixels = _add_pixels(float_path, final_path, options.seed, options.allow_mismatch, json_out)
    if profile is None:
        if json_out:
            if pixels is not None:
                _emit_json({"export": report, "precision": converted, "pixel_input": pixels})
            else:
                _emit_json(converted or report)
        else:
            _render_chain(report, converted, pixels)
        return
    onnx_path = Path(pixels.path if pixels is not None else converted.path if converted is not None else report.path)
    calib = options.calib
    calib_images = calib if calib is not None and calib.strip().lower() != "random" else None
    built, checked = _engine_chain(onnx_path, *profile, calib_images, options.seed)
    if json_out:
        _emit_json({"export": report, "precision": converted, "pixel_input": pixels, "engine": built, "check": checked})
    else:
        _render_chain(report, converted, pixels)
        _render_build(built)
        verdict = "[bold green]passed[/]" if checked.passed else "[bold red]FAILED[/]"
        out.print(f"check: {verdict} engine vs {escape(onnx_path.name)}")
    if not checked.passed:
        raise ParityError(f"the engine differs from {onnx_path.name} beyond tolerance", checked)


def _engine_chain(
    onnx_path: Path, min_batch: int, opt_batch: int, max_batch: int, images: str | None, seed: int
) -> tuple[Any, Any]:
    """Build the engine beside its ONNX and check it against that ONNX (the chain of export)."""
    from ..engine import build_engine
    from ..parity import compare

    with _stages() as progress:
        built = build_engine(
            onnx_path,
            onnx_path.with_suffix(".plan"),
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            progress=progress,
        )
        progress("checking the engine against its ONNX")
        checked = compare(built.path, onnx_path, batch_sizes=sorted({min_batch, opt_batch}), images=images, seed=seed)
    from ..records import record_check

    record_check(built.path, checked)
    return built, checked


# ---------------------------------------------------------------------------------------- precision


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
) -> _PrecisionOptions:
    """export's and convert's precision options, checked before anything runs."""
    options = _PrecisionOptions(
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


@dataclass(frozen=True)
class _PrecisionOptions:
    precision: str
    fp16_io: bool
    calib: str | None
    calib_count: int
    calib_method: str
    percentile: float
    recipe: str
    seed: int
    allow_mismatch: bool

    def validate(self) -> None:
        if self.fp16_io and self.precision != "fp16":
            raise ConfigError("--fp16-io goes with --precision fp16")
        if self.precision == "int8" and self.calib is None:
            raise ConfigError(
                "--precision int8 needs calibration images: --calib DIR (or --calib random, with meaningless accuracy)"
            )
        if self.precision != "int8" and self.calib is not None:
            raise ConfigError("--calib goes with --precision int8")
        if self.calib_count <= 0:
            raise ConfigError(f"--calib-count {self.calib_count}: must be a positive integer")
        if self.calib_method == "percentile" and not 90.0 <= self.percentile < 100.0:
            raise ConfigError(f"--percentile {self.percentile} must be in [90, 100)")
        if self.calib is not None and self.calib.strip().lower() != "random":
            # A missing, empty or unreadable folder fails now, before a (long) export runs.
            from ..data import IMAGE_EXTENSIONS, list_images, load_image
            from ..errors import DataError

            files = list_images(self.calib)
            if not files:
                raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.calib}")
            for f in files:
                try:
                    load_image(f)
                    break
                except DataError:
                    continue
            else:
                raise DataError(f"none of the {len(files)} image files in {self.calib} could be read")


def _convert(
    src: Path,
    dst: str | Path | None,
    options: _PrecisionOptions,
    json_out: bool,
    export_report: dict[str, Any] | None = None,
) -> Any:
    """fp32 ONNX -> fp16/int8 ONNX with the library, warnings on stderr, the report returned."""
    from ..errors import ParityError
    from ..precision import quantize_int8, to_fp16

    try:
        with _stages() as progress:
            if options.precision == "fp16":
                converted = to_fp16(
                    src,
                    dst,
                    keep_io_types=not options.fp16_io,
                    seed=options.seed,
                    allow_mismatch=options.allow_mismatch,
                    progress=progress,
                )
            else:
                converted = quantize_int8(
                    src,
                    dst,
                    options.calib or "random",
                    steps=progress.step,
                    recipe=options.recipe,
                    method=options.calib_method,
                    percentile=options.percentile,
                    count=options.calib_count,
                    seed=options.seed,
                    allow_mismatch=options.allow_mismatch,
                    progress=progress,
                )
    except ParityError as e:
        if json_out and e.report is not None:
            if export_report is not None:
                e.report.extra["export"] = export_report
            _emit_json(e.report)
        raise
    if export_report is not None:
        converted.extra["export"] = export_report
    for warning in converted.warnings:
        style = "bold red" if "random" in warning else "bold yellow"
        err.print(f"[{style}]warning:[/] " + escape(warning), highlight=False)
    return converted


def _precision_paths(
    name: str, output_text: str | None, precision: str, input_format: str = "float32-nchw"
) -> tuple[Any, Any, Any]:
    """Where the fp32 ONNX, the float model of the chosen precision and the final artifact go.
    ``-o`` names the final artifact; the models it was made from are kept beside it
    (``resnet50.onnx`` next to ``resnet50.fp16.onnx`` next to ``resnet50.fp16.uint8-nhwc.onnx``).
    A path ending in '/' must be an existing folder."""
    if output_text is not None and output_text.endswith(("/", os.sep)) and not Path(output_text).is_dir():
        raise ConfigError(f"output folder does not exist: {output_text} (create it first)")
    pixels = input_format == "uint8-nhwc"
    if precision == "fp32" and not pixels:
        return output_text, output_text, output_text
    tail = ".uint8-nhwc" if pixels else ""
    prec = "" if precision == "fp32" else f".{precision}"
    output = Path(output_text) if output_text is not None else None
    if output is None or output.is_dir():
        folder = output or Path(".")
        return folder / f"{name}.onnx", folder / f"{name}{prec}.onnx", folder / f"{name}{prec}{tail}.onnx"
    stem = output.name.removesuffix(".onnx").removesuffix(tail).removesuffix(prec or ".fp32")
    fp32 = output.with_name(f"{stem}.onnx")
    if fp32 == output:
        fp32 = output.with_name(f"{stem}.fp32.onnx")
    if not pixels:
        return fp32, output, output
    middle = fp32 if precision == "fp32" else output.with_name(f"{stem}{prec}.onnx")
    if middle == output:
        middle = output.with_name(f"{stem}{prec}.float.onnx")
    return fp32, middle, output


def _add_pixels(src: Path, dst: Any, seed: int, allow_mismatch: bool, json_out: bool) -> Any:
    from ..errors import ParityError
    from ..pixels import add_pixel_input

    try:
        with _stages() as progress:
            return add_pixel_input(src, dst, seed=seed, allow_mismatch=allow_mismatch, progress=progress)
    except ParityError as e:
        if json_out and e.report is not None:
            _emit_json(e.report)
        raise


# ---------------------------------------------------------------------------------------- rendering


def _render_chain(export: Any, converted: Any, pixels: Any) -> None:
    _render_export(export)
    if converted is not None:
        _render_precision(converted)
    if pixels is not None:
        _render_pixels(pixels)


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
        grid.add_row("int8", f"{report.extra['recipe']} recipe")
        grid.add_row(
            "calibration",
            escape(
                f"{c['count']} inputs from {c['source']}, {c['method']}, {c['skipped']} skipped, cache {c['cache']}"
            ),
        )
    grid.add_row("parity", f"{status} vs fp32 ONNX ({report.tolerance})")
    out.print(grid)
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("batch", "cosine (min)", "top-1 agree", "top-5 agree", "max diff / max|logit|", "max abs diff"):
        table.add_column(col, justify="right")
    for r in report.parity:
        table.add_row(
            str(r.batch_size),
            f"{r.cosine_min:.6f}",
            f"{r.top1_agreement:.0%}",
            f"{r.top5_agreement:.0%}",
            f"{r.diff_to_scale:.2e}",
            f"{r.max_abs_diff:.2e}",
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
