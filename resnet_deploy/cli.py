"""The ``resnet-deploy`` command line: a thin layer over the library.

Each command builds its arguments, calls the library function of the same name and renders the
typed report (a rich table for people, ``--json`` for machines). Errors become one line on stderr
and an exit code in exactly one place: ``_Group.main``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from ._version import __version__
from .errors import ConfigError, ResnetDeployError
from .reports import to_jsonable

DEBUG_ENV = "RESNET_DEPLOY_DEBUG"
# Wide enough for the tables when stdout is a pipe or a file (rich would assume 80 columns).
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err = Console(stderr=True, soft_wrap=True)


class _Group(TyperGroup):
    """Turns every failure into ``error: <one line>`` on stderr and a non-zero exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except ResnetDeployError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as e:
            # typer bundles its own click: recognise its usage errors by shape, not by class.
            if hasattr(e, "format_message") and hasattr(e, "exit_code"):
                if type(e).__name__ == "NoArgsIsHelpError":
                    typer.echo(e.format_message())
                    sys.exit(0)
                if type(e).__name__ == "Abort":
                    _fail("aborted", 1)
                _fail(_one_line(e.format_message()) + _help_hint(e), int(e.exit_code))
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(f"unexpected {type(e).__name__}: {_one_line(str(e))} (set {DEBUG_ENV}=1 for a traceback)", 1)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        if code == 130:  # typer turns Ctrl-C into a silent Exit(130)
            _fail("interrupted", 130)
        sys.exit(code)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _help_hint(e: Exception) -> str:
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", None)
    return f" (see '{path} --help')" if path else ""


def _fail(message: str, code: int) -> None:
    err.print("[bold red]error:[/] " + escape(message), markup=True, highlight=False)
    sys.exit(code)


app = typer.Typer(
    cls=_Group,
    name="resnet-deploy",
    help="The ResNets of He et al. (2015) from PyTorch to production: ONNX, TensorRT, Triton.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"resnet-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """The ResNets of He et al. (2015) from PyTorch to production: ONNX, TensorRT, Triton."""


class VariantChoice(str, Enum):
    v1_5 = "v1.5"
    v1 = "v1"


class ShortcutChoice(str, Enum):
    A = "A"
    B = "B"
    C = "C"


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class FormatChoice(str, Enum):
    onnx = "onnx"
    engine = "engine"


class InputFormatChoice(str, Enum):
    float32_nchw = "float32-nchw"
    uint8_nhwc = "uint8-nhwc"


class ConvertPrecision(str, Enum):
    fp16 = "fp16"
    int8 = "int8"


class CalibMethodChoice(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class RecipeChoice(str, Enum):
    tensorrt = "tensorrt"
    cpu = "cpu"


CALIB_OPT = typer.Option(
    "--calib",
    help="INT8 calibration images: a folder (jpg/png/webp/bmp, recursive), or 'random' (meaningless accuracy).",
    show_default=False,
)
CALIB_COUNT_OPT = typer.Option("--calib-count", help="How many calibration images to use.")
CALIB_METHOD_OPT = typer.Option("--calib-method", help="Activation range estimation.")
PERCENTILE_OPT = typer.Option("--percentile", help="With --calib-method percentile: the percentile kept.")
RECIPE_OPT = typer.Option(
    "--int8-recipe",
    help="tensorrt: symmetric int8, zero points 0, Q/DQ on residual Adds (TensorRT 10/11). cpu: uint8 x int8 (ONNX Runtime x86).",
)


class ExporterChoice(str, Enum):
    auto = "auto"
    dynamo = "dynamo"
    torchscript = "torchscript"


def _emit_json(obj: Any) -> None:
    from .reports import dumps

    sys.stdout.write(dumps(obj))
    sys.stdout.flush()


@contextmanager
def _stages() -> Iterator[_StageUI]:
    """A rich spinner + progress bar on stderr for the current stage (silent when not a TTY)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    ui = _StageUI(bar)
    try:
        yield ui
    finally:
        if bar.live.is_started:
            bar.stop()


class _StageUI:
    """Called with a stage name (spinner), or ``.step(name, done, total)`` for a counted stage (bar)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.task = bar.add_task("starting", total=None)

    def _start(self) -> None:
        if not self.bar.live.is_started and err.is_terminal:
            self.bar.start()

    def __call__(self, stage: str) -> None:
        self._start()
        self.bar.update(self.task, description=stage, total=None, completed=0)

    def step(self, stage: str, done: int, total: int) -> None:
        self._start()
        self.bar.update(self.task, description=stage, total=total, completed=done)


PROVIDER_OPT = typer.Option(
    "--provider", help="ONNX Runtime provider for ONNX artifacts: cpu, cuda or tensorrt (no silent CPU fallback)."
)


# ---------------------------------------------------------------------------------------- models


@app.command("models")
def models_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the model zoo: the paper's ImageNet ResNets (Table 1) and CIFAR ResNets (section 4.2)."""
    from .models.registry import get_model_cfg, list_models, model_stats

    rows = []
    for name in list_models():
        cfg = get_model_cfg(name)
        params, macs = model_stats(name)
        row: dict[str, Any] = {
            "name": name,
            "depth": cfg.depth,
            "dataset": cfg.dataset,
            "block": cfg.block,
            "layers": list(cfg.layers),
            "variant": "v1.5",
            "shortcut": cfg.default_shortcut,
            "params": params,
            "gmacs": round(macs / 1e9, 3),
            "input_size": list(cfg.input_size),
            "num_classes": cfg.num_classes,
            "weights": [{"tag": w.tag, "top1": w.top1, "top5": w.top5} for w in cfg.weights],
        }
        if cfg.block == "bottleneck":
            row["gmacs_v1"] = round(model_stats(name, variant="v1")[1] / 1e9, 3)
        rows.append(row)
    if json_out:
        _emit_json(rows)
        return
    table = Table(title="resnet-deploy model zoo (MACs per image at the native input size)")
    for col, justify in (
        ("name", "left"),
        ("depth", "right"),
        ("dataset", "left"),
        ("block", "left"),
        ("layers", "left"),
        ("variant", "left"),
        ("shortcut", "center"),
        ("params", "right"),
        ("GMACs", "right"),
        ("input", "right"),
        ("ImageNet top-1", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        gmacs = f"{r['gmacs']:.2f}" if r["gmacs"] >= 0.995 else f"{r['gmacs']:.3f}"
        if "gmacs_v1" in r:
            gmacs += f" (v1 {r['gmacs_v1']:.2f})"
        variant = "v1.5 / v1" if r["block"] == "bottleneck" else "v1.5 (= v1)"
        top1 = ", ".join(f"{w['top1']:.2f}" for w in r["weights"]) or "-"
        table.add_row(
            r["name"],
            str(r["depth"]),
            r["dataset"],
            r["block"],
            "-".join(map(str, r["layers"])),
            variant,
            r["shortcut"],
            f"{r['params']:,}",
            gmacs,
            "x".join(map(str, r["input_size"][1:])),
            top1,
        )
    out.print(table)


# ---------------------------------------------------------------------------------------- export


def _resolve_model_option(depth: int | None, model: str | None) -> str:
    from .models.registry import resolve_model_name

    if depth is None and model is None:
        raise ConfigError("choose a model: --depth N (e.g. --depth 50) or --model NAME (see 'resnet-deploy models')")
    by_depth = resolve_model_name(depth) if depth is not None else None
    by_name = resolve_model_name(model) if model is not None else None
    if by_depth and by_name and by_depth != by_name:
        raise ConfigError(f"--depth {depth} and --model {model} name different models; give one of them")
    return by_depth or by_name  # type: ignore[return-value]


@app.command("export")
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
    from .errors import ParityError
    from .export import export_onnx
    from .parity import Tolerance

    if not 0 <= rtol < 1:
        raise ConfigError(f"--rtol {rtol}: choose a value in [0, 1)")
    options = _PrecisionOptions(
        precision.value,
        fp16_io,
        calib,
        calib_count,
        calib_method.value,
        percentile,
        int8_recipe.value,
        seed,
        allow_mismatch,
    )
    options.validate()

    name = _resolve_model_option(depth, model)
    if fmt == FormatChoice.engine:  # fail before a long export when the engine cannot be built here
        from .engine import Profile, runtime_env

        if batch.strip().lower() != "dynamic":
            raise ConfigError("--format engine needs --batch dynamic (the engine's profile sets the batch range)")
        Profile(min_batch, opt_batch, max_batch, (3, 1, 1))
        runtime_env()
    fp32_path, precision_path, final_path = _precision_paths(name, output, precision.value, input_format.value)
    try:
        with _stages() as progress:
            report = export_onnx(
                name,
                fp32_path,
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
                tolerance=Tolerance(scale_rtol=rtol),
                progress=progress,
            )
    except ParityError as e:
        if json_out and e.report is not None:
            _emit_json(e.report)
        raise
    for warning in report.warnings:
        err.print("[bold yellow]warning:[/] " + escape(warning), highlight=False)
    converted = None
    if precision != PrecisionChoice.fp32:
        converted = _convert(Path(report.path), precision_path, options, json_out, report.to_dict())
    pixels = None
    if input_format == InputFormatChoice.uint8_nhwc:
        float_path = Path(converted.path if converted is not None else report.path)
        pixels = _add_pixels(float_path, final_path, seed, allow_mismatch, json_out)
    if fmt == FormatChoice.onnx:
        if json_out:
            if pixels is not None:
                _emit_json({"export": report, "precision": converted, "pixel_input": pixels})
            else:
                _emit_json(converted or report)
        else:
            _render_export(report)
            if converted is not None:
                _render_precision(converted)
            if pixels is not None:
                _render_pixels(pixels)
        return
    onnx_path = Path(pixels.path if pixels is not None else converted.path if converted is not None else report.path)
    calib_images = calib if calib is not None and calib.strip().lower() != "random" else None
    built, checked = _engine_chain(onnx_path, min_batch, opt_batch, max_batch, calib_images, seed)
    if json_out:
        _emit_json({"export": report, "precision": converted, "pixel_input": pixels, "engine": built, "check": checked})
    else:
        _render_export(report)
        if converted is not None:
            _render_precision(converted)
        if pixels is not None:
            _render_pixels(pixels)
        _render_build(built)
        verdict = "[bold green]passed[/]" if checked.passed else "[bold red]FAILED[/]"
        out.print(f"check: {verdict} engine vs {escape(onnx_path.name)}")
    if not checked.passed:
        raise ParityError(f"the engine differs from {onnx_path.name} beyond tolerance", checked)


def _engine_chain(
    onnx_path: Path, min_batch: int, opt_batch: int, max_batch: int, images: str | None, seed: int
) -> tuple[Any, Any]:
    """Build the engine beside its ONNX and check it against that ONNX (the chain of export)."""
    from .engine import build_engine
    from .parity import compare

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
    from .records import record_check

    record_check(built.path, checked)
    return built, checked


def _render_build(report: Any) -> None:
    sc = report.sidecar
    out.print(
        f"[bold]{escape(report.path)}[/]  ({sc.plan_size_bytes / 1e6:.1f} MB, {sc.precision}, {sc.build_mode}, "
        f"TensorRT {sc.tensorrt_version}, {escape(sc.gpu_name)} sm{sc.compute_capability}, "
        f"batch {sc.profile['min'][0]}-{sc.profile['max'][0]}, built in {sc.build_seconds:.0f} s)",
        highlight=False,
    )


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
            from .data import IMAGE_EXTENSIONS, list_images, load_image
            from .errors import DataError

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
    from .errors import ParityError
    from .precision import quantize_int8, to_fp16

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
    from .errors import ParityError
    from .pixels import add_pixel_input

    try:
        with _stages() as progress:
            return add_pixel_input(src, dst, seed=seed, allow_mismatch=allow_mismatch, progress=progress)
    except ParityError as e:
        if json_out and e.report is not None:
            _emit_json(e.report)
        raise


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


# ------------------------------------------------------------------------------------------ info


@app.command("convert")
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
    options = _PrecisionOptions(
        precision.value,
        fp16_io,
        calib,
        calib_count,
        calib_method.value,
        percentile,
        int8_recipe.value,
        seed,
        allow_mismatch,
    )
    options.validate()
    converted = _convert(artifact, output, options, json_out)
    if json_out:
        _emit_json(converted)
        return
    _render_precision(converted)


@app.command("eval")
def eval_cmd(
    artifact: Annotated[
        str,
        typer.Argument(
            help="An ONNX file (any precision), a model id/depth (with --weights), or a .pth checkpoint (with --depth).",
            show_default=False,
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="ImageFolder dataset: DIR/<class>/<image>.", show_default=False)],
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per inference call.")] = 32,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate this many images, spread evenly over the dataset.", show_default=False)
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Class names, one per line, in index order (default: sorted folder names).",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", "-w", help="Weights for a model id/depth artifact.", show_default=False)
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option("--depth", "-d", help="Architecture of a .pth checkpoint artifact.", show_default=False),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).", show_default=False)] = None,
    provider: Annotated[str, PROVIDER_OPT] = "cpu",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Top-1 / top-5 accuracy of an artifact on an image folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from .evaluation import evaluate
    from .runtime.onnxrt import providers_for

    bar = Progress(
        "[bold]evaluating", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    )
    task = bar.add_task("eval", total=None)

    def update(done: int, total: int) -> None:
        if not bar.live.is_started:  # start on the first batch: bad input fails before any bar is drawn
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        report = evaluate(
            artifact,
            data,
            batch_size=batch_size,
            limit=limit,
            labels_file=labels,
            weights=weights,
            depth=depth,
            threads=threads,
            providers=providers_for(provider),
            progress=update,
        )
    finally:
        if bar.live.is_started:
            bar.stop()
    if report.skipped:
        err.print(
            f"[bold yellow]warning:[/] skipped {len(report.skipped)} unreadable image(s), e.g. "
            + escape(report.skipped[0][0]),
            highlight=False,
        )
    if json_out:
        _emit_json(report)
        return
    out.print(
        f"[bold]{escape(report.artifact)}[/] on {escape(report.data)}: {report.count} images, {report.classes} classes",
        highlight=False,
    )
    out.print(
        f"top-1 [bold]{report.top1 * 100:.2f}%[/]   top-5 [bold]{report.top5 * 100:.2f}%[/]   "
        f"({report.seconds:.1f} s, {report.count / max(report.seconds, 1e-9):.1f} images/s)"
    )


def _parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--batch-sizes {text!r}: give comma-separated positive integers, e.g. 1,8") from None
    if not sizes or any(b <= 0 for b in sizes):
        raise ConfigError(f"--batch-sizes {text!r}: give comma-separated positive integers, e.g. 1,8")
    return sizes


class HardwareCompatChoice(str, Enum):
    none = "none"
    ampere_plus = "ampere-plus"
    same_cc = "same-cc"


@app.command("build")
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
    from .engine import build_engine

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


@app.command("check")
def check_cmd(
    artifact: Annotated[
        str, typer.Argument(help="The artifact to check: an ONNX file of any precision.", show_default=False)
    ],
    reference: Annotated[
        str,
        typer.Option(
            help="'torch' (the PyTorch model rebuilt from the artifact's metadata, weights hash checked) or another artifact."
        ),
    ] = "torch",
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Seeded random inputs at these batch sizes.")
    ] = "1,8",
    images: Annotated[
        Path | None,
        typer.Option(
            help="Also compare on real images from this folder (preprocessed like everywhere else).", show_default=False
        ),
    ] = None,
    max_images: Annotated[
        int, typer.Option("--max-images", help="At most this many images, spread over the folder.")
    ] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the random inputs.")] = 0,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            "-w",
            help="Weights for the torch reference when the metadata cannot name them (a file).",
            show_default=False,
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(help="Require max|diff| <= RTOL x max|reference logit| (fp32 default 1e-4).", show_default=False),
    ] = None,
    min_cosine: Annotated[
        float | None,
        typer.Option(
            "--min-cosine",
            help="Require this per-sample cosine similarity (fp16 0.999, int8 0.95).",
            show_default=False,
        ),
    ] = None,
    min_top1: Annotated[
        float | None,
        typer.Option(
            "--min-top1", help="Require this top-1 agreement (images: fp16 0.98, int8 0.9).", show_default=False
        ),
    ] = None,
    provider: Annotated[str, PROVIDER_OPT] = "cpu",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Prove an artifact computes what its PyTorch model (or another artifact) computes; exit 1 if not."""
    from .errors import ParityError
    from .parity import Tolerance, compare
    from .runtime.onnxrt import providers_for

    providers = providers_for(provider)
    sizes = _parse_batch_sizes(batch_sizes)
    tolerance = None
    if rtol is not None or min_cosine is not None or min_top1 is not None:
        tolerance = Tolerance(scale_rtol=rtol, min_cosine=min_cosine, min_top1_agreement=min_top1)
    with _stages() as progress:
        progress("comparing")
        report = compare(
            artifact,
            reference,
            batch_sizes=sizes,
            images=images,
            max_images=max_images,
            seed=seed,
            tolerance=tolerance,
            weights=weights,
            providers=providers,
        )
    from .records import record_check

    record_check(artifact, report)
    for note in report.notes or []:
        err.print("[bold yellow]note:[/] " + escape(note), highlight=False)
    if json_out:
        _emit_json(report)
    else:
        status = "[bold green]passed[/]" if report.passed else "[bold red]FAILED[/]"
        out.print(
            f"{status}  {escape(str(report.candidate.get('path', artifact)))} ({report.precision}) vs "
            f"{escape(str(report.reference.get('model') or report.reference.get('path') or reference))}"
        )
        table = Table(show_edge=False, box=None, padding=(0, 2))
        for col in (
            "inputs",
            "max abs",
            "max rel",
            "mean abs",
            "max/|logit|",
            "cosine min",
            "top-1",
            "top-5",
            "tolerance",
            "",
        ):
            table.add_column(col, justify="left" if col in ("inputs", "tolerance") else "right")
        for row in report.rows:
            r = row.result
            table.add_row(
                escape(row.inputs),
                f"{r.max_abs_diff:.2e}",
                f"{r.max_rel_diff:.2e}",
                f"{r.mean_abs_diff:.2e}",
                f"{r.diff_to_scale:.2e}",
                f"{r.cosine_min:.6f}",
                f"{r.top1_agreement:.0%}",
                f"{r.top5_agreement:.0%}",
                escape(r.tolerance),
                "ok" if r.passed else "[red]FAIL[/]",
            )
        out.print(table)
    if not report.passed:
        failed = [row.inputs for row in report.rows if not row.result.passed]
        raise ParityError(f"{artifact} differs from the reference beyond tolerance on: {'; '.join(failed)}", report)


class BackendChoice(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


class DeviceChoice(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class TorchDtypeChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


def _macs_from_metadata(meta: dict[str, str]) -> int | None:
    from .models.registry import model_stats

    try:
        h, w = (int(v) for v in meta["image_size"].split("x"))
        widths = tuple(int(v) for v in meta["widths"].split(",")) if meta.get("widths") else None
        return model_stats(
            meta["model"],
            variant=meta.get("variant", "v1.5"),
            shortcut=meta.get("shortcut"),
            num_classes=int(meta.get("num_classes", "1000")),
            image_size=(h, w),
            widths=widths,
        )[1]
    except (KeyError, ValueError, ConfigError):
        return None


def _bench_targets(
    artifacts: list[str],
    depth: int | None,
    backends: list[BackendChoice],
    device: str,
    precision: str,
    threads: int | None,
    torch_options: dict[str, Any],
) -> list[Any]:
    """One Target per artifact x backend (and a PyTorch zoo model for --depth)."""
    from .bench import Target
    from .runtime.onnxrt import OnnxRuntimeRunner, providers_for
    from .runtime.pyt import TorchRunner
    from .runtime.trt import TensorRTRunner
    from .weights import sha256_file

    targets = []
    for artifact in artifacts:
        path = Path(artifact)
        if not path.is_file():
            raise ConfigError(f"file not found: {path}")
        suffix = path.suffix.lower()
        if suffix not in (".onnx", ".plan", ".engine", ".pth", ".pt", ".safetensors"):
            raise ConfigError(
                f"{path.name}: not an artifact to benchmark (.onnx, .plan/.engine, .pth/.pt/.safetensors)"
            )
        auto = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt"}.get(suffix, "torch")
        for backend in [b.value for b in backends] or [auto]:
            options = "" if backend != "torch" else _torch_label(device, precision, torch_options)
            names = [Path(a).name for a in artifacts]
            shown = path.name if names.count(path.name) == 1 else f"{path.parent.name}/{path.name}"
            label = f"{shown} [{backend}{options}]"
            if backend == "onnxruntime":
                if suffix != ".onnx":
                    raise ConfigError(f"--backend onnxruntime runs .onnx files, not {path.name}")
                runner: Any = OnnxRuntimeRunner(path, providers=providers_for(device), threads=threads)
                meta = runner.metadata
            elif backend == "tensorrt":
                if suffix not in (".plan", ".engine"):
                    raise ConfigError(
                        f"--backend tensorrt runs engines: build one first with 'resnet-deploy build {path}'"
                    )
                runner = TensorRTRunner(path)
                meta = runner.metadata
            elif suffix in (".pth", ".pt", ".safetensors"):
                if depth is None:
                    raise ConfigError(f"{path.name} is a PyTorch checkpoint: say which architecture with --depth N")
                runner = TorchRunner.from_checkpoint(
                    depth, path, threads=threads, device=device, dtype=precision, **torch_options
                )
                meta = {}
            else:  # the PyTorch model an ONNX/engine was exported from, rebuilt from its metadata
                source = OnnxRuntimeRunner(path) if suffix == ".onnx" else TensorRTRunner(path)
                meta = source.metadata
                runner = TorchRunner.from_metadata(
                    meta, preprocess=source.preprocess, threads=threads, device=device, dtype=precision, **torch_options
                )
            macs = _macs_from_metadata(meta) if meta else None
            if macs is None and isinstance(runner, TorchRunner):
                from .models import count_macs

                macs = count_macs(runner.model, runner.preprocess.crop)
            targets.append(Target(label, runner, macs, sha256_file(path)))
    if depth is not None and not any(Path(a).suffix.lower() in (".pth", ".pt", ".safetensors") for a in artifacts):
        from .models import count_macs

        runner = TorchRunner.from_zoo(
            str(depth), weights="random", threads=threads, device=device, dtype=precision, **torch_options
        )
        info = runner.model.weights_info
        targets.append(
            Target(
                f"resnet{depth} [torch{_torch_label(device, precision, torch_options)}]",
                runner,
                count_macs(runner.model, runner.preprocess.crop),
                info.state_sha256 if info else None,
            )
        )
    return targets


def _torch_label(device: str, precision: str, options: dict[str, Any]) -> str:
    parts = [device, precision] + [k.replace("_", "-") for k, v in options.items() if v]
    return " " + " ".join(parts)


@app.command("bench")
def bench_cmd(
    artifacts: Annotated[
        list[str] | None,
        typer.Argument(help="ONNX files, engines or checkpoints to measure side by side.", show_default=False),
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            "-d",
            help="Also a PyTorch zoo model (random weights), or the architecture of .pth artifacts.",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        list[BackendChoice] | None,
        typer.Option(
            "--backend",
            help="Run each artifact with these backends (repeatable; default by file type). torch on an ONNX = the PyTorch model it was exported from.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        DeviceChoice, typer.Option(help="cpu or cuda (torch; ONNX Runtime's CUDA provider).")
    ] = DeviceChoice.cpu,
    precision: Annotated[
        TorchDtypeChoice, typer.Option(help="PyTorch dtype (ONNX/engines carry their own precision).")
    ] = TorchDtypeChoice.fp32,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8,32",
    warmup_s: Annotated[
        float, typer.Option("--warmup-s", help="Warm-up seconds per target and batch (excluded).")
    ] = 2.0,
    duration_s: Annotated[
        float | None,
        typer.Option("--duration-s", help="Measured seconds per target and batch (default 5).", show_default=False),
    ] = None,
    iters: Annotated[
        int | None,
        typer.Option(
            "--iters", help="Measured iterations per target and batch instead of a duration.", show_default=False
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds the budget is split into.")] = 5,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for every backend (recorded).", show_default=False)
    ] = None,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="torch on CUDA: replay captured CUDA graphs.")
    ] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="torch: channels_last memory format.")] = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch: torch.compile the model.")] = False,
    compute_only: Annotated[
        bool, typer.Option("--compute-only", help="GPU: time compute only, without host<->device copies.")
    ] = False,
    peak_gflops: Annotated[
        float | None,
        typer.Option("--peak-gflops", help="Report achieved GFLOP/s as a fraction of this peak.", show_default=False),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the report as JSON to this file ('-' for stdout).", show_default=False),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write the rows as CSV to this file.", show_default=False)
    ] = None,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help='Write a PNG plot (needs matplotlib: pip install "resnet-deploy\\[plot]").',
            show_default=False,
        ),
    ] = None,
) -> None:
    """Latency and throughput per batch size, several artifacts/backends measured side by side (interleaved)."""
    from .bench import benchmark, require_matplotlib, write_csv, write_plot
    from .reports import atomic_write_text, check_output_path, dumps

    if duration_s is not None and iters is not None:
        raise ConfigError("give --duration-s or --iters, not both")
    if duration_s is not None and duration_s <= 0:
        raise ConfigError(f"--duration-s {duration_s}: must be positive")
    if iters is not None and iters <= 0:
        raise ConfigError(f"--iters {iters}: must be a positive integer")
    if warmup_s < 0 or rounds <= 0:
        raise ConfigError("--warmup-s must be >= 0 and --rounds >= 1")
    if backend and not artifacts:
        raise ConfigError("--backend applies to artifacts; --depth alone always runs PyTorch")
    for option, value in (("--csv", csv_path), ("--plot", plot_path)):
        if value is not None and str(value) == "-":
            raise ConfigError(f"{option} needs a file path ('-' is only for --json)")
    if threads is None:  # explicit and recorded, the same for every backend
        from .system import cpu_count

        threads = cpu_count()
    if threads is not None and threads <= 0:
        raise ConfigError(f"--threads {threads}: must be a positive integer")
    sizes = _parse_batch_sizes(batch_sizes)
    if plot_path is not None:
        require_matplotlib()  # fail before measuring, not after
    outputs = [p for p in (json_path, csv_path, plot_path) if p is not None and str(p) != "-"]
    for p in outputs:
        check_output_path(p, p.name)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    torch_options = {"channels_last": channels_last, "compile": compile_model, "cuda_graphs": cuda_graphs}
    targets = _bench_targets(
        list(artifacts or []), depth, list(backend or []), device.value, precision.value, threads, torch_options
    )
    if not targets:
        raise ConfigError("nothing to benchmark: give artifacts (ONNX, engine, checkpoint) or --depth N")
    with _stages() as progress:
        report = benchmark(  # enters (loads) each runner, and closes it after
            targets,
            sizes,
            warmup_s=warmup_s,
            duration_s=None if iters is not None else (duration_s or 5.0),
            iters=iters,
            rounds=rounds,
            threads=threads,
            compute_only=compute_only,
            peak_gflops=peak_gflops,
            progress=progress.step,
        )
    if json_path is not None:
        if str(json_path) == "-":
            _emit_json(report)
        else:
            atomic_write_text(json_path, dumps(report))
    if csv_path is not None:
        write_csv(report, csv_path)
    if plot_path is not None and report.rows:
        write_plot(report, plot_path)
    if str(json_path) != "-":
        _render_bench(report)
    if report.interrupted:
        _fail("interrupted: the measurements so far are shown" + (" and saved" if outputs else ""), 130)


def _render_bench(report: Any) -> None:
    env = report.environment
    where = env.get("gpu") or f"{env.get('cpu')}, {env.get('cpu_cores')} cores"
    table = Table(title=f"latency (ms) and throughput on {where}, threads {env.get('threads') or 'default'}")
    has_peak = any(r.peak_fraction is not None for r in report.rows)
    has_phases = any(r.phases_ms for r in report.rows)
    cols = ["target", "batch", "mean", "std", "p50", "p90", "p95", "p99", "min", "max", "images/s", "GFLOP/s"]
    cols += ["of peak"] if has_peak else []
    cols += ["h2d", "compute", "d2h"] if has_phases else []
    for col in cols:
        table.add_column(col, justify="left" if col == "target" else "right")
    for r in report.rows:
        s = r.latency_ms
        cells = [escape(r.target), str(r.batch)] + [
            f"{v:.2f}" for v in (s.mean, s.std, s.p50, s.p90, s.p95, s.p99, s.min, s.max)
        ]
        cells += [f"{r.throughput_ips:.1f}", f"{r.gflops:.1f}" if r.gflops is not None else "-"]
        if has_peak:
            cells.append(f"{r.peak_fraction:.1%}" if r.peak_fraction is not None else "-")
        if has_phases:
            cells += [f"{(r.phases_ms or {}).get(k, float('nan')):.2f}" for k in ("h2d", "compute", "d2h")]
        table.add_row(*cells)
    out.print(table)
    settings = report.settings
    versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "onnxruntime-gpu", "onnxruntime", "tensorrt") if k in env)
    out.print(
        f"[dim]{escape(versions)}; threads={env.get('threads')}; "
        f"{'compute only (CUDA events)' if settings.get('compute_only') else 'wall-clock per call'}; "
        f"{settings.get('rounds')} interleaved rounds{'; INTERRUPTED' if report.interrupted else ''}[/]"
    )
    ratios = report.ratios()
    if len({r.target for r in report.rows}) > 1:
        rt = Table(title=f"throughput relative to {escape(str(ratios[0]['vs']))} (same run, interleaved)")
        rt.add_column("target")
        batches = sorted({r["batch"] for r in ratios})
        for b in batches:
            rt.add_column(f"batch {b}", justify="right")
        for label in dict.fromkeys(r["target"] for r in ratios):
            cells = [
                next((f"{r['speedup']:.2f}x" for r in ratios if r["target"] == label and r["batch"] == b), "-")
                for b in batches
            ]
            rt.add_row(escape(label), *cells)
        out.print(rt)


# ------------------------------------------------------------------------------------------ deploy


class KindChoice(str, Enum):
    gpu = "gpu"
    cpu = "cpu"


@app.command("ship")
def ship_cmd(
    artifact: Annotated[
        Path, typer.Argument(help="A verified ONNX file or TensorRT plan (with its sidecar).", show_default=False)
    ],
    repo: Annotated[
        Path, typer.Option("--repo", help="Triton model repository folder (created if missing).", show_default=False)
    ],
    name: Annotated[
        str | None, typer.Option(help="Model name in the repository (default: the model id).", show_default=False)
    ] = None,
    version: Annotated[int, typer.Option(help="Version folder to write.")] = 1,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch", help="max_batch_size (default: an engine's profile max, else 64).", show_default=False
        ),
    ] = None,
    instances: Annotated[int, typer.Option(help="Model instances (instance_group count).")] = 1,
    kind: Annotated[KindChoice, typer.Option(help="Instance kind: gpu, or cpu (ONNX only).")] = KindChoice.gpu,
    preferred_batch: Annotated[
        str | None,
        typer.Option("--preferred-batch", help="Dynamic batcher's preferred sizes, e.g. 8,16.", show_default=False),
    ] = None,
    max_queue_delay_us: Annotated[
        int | None,
        typer.Option(
            "--max-queue-delay-us",
            help="How long the dynamic batcher waits to fill a batch [default: 100].",
            show_default=False,
        ),
    ] = None,
    no_dynamic_batching: Annotated[
        bool, typer.Option("--no-dynamic-batching", help="Leave Triton's dynamic batcher off.")
    ] = False,
    accelerator: Annotated[
        PrecisionChoice | None,
        typer.Option(
            help="ONNX on GPU: run it through ONNX Runtime's TensorRT provider at this precision.", show_default=False
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Class names, one per line (default: ImageNet's / CIFAR-10's).", show_default=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Ship without a passing parity record, or with random weights.")
    ] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing version.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Write a Triton model repository entry (config.pbtxt, labels, model) for a verified artifact."""
    from .ship import ship

    if no_dynamic_batching and max_queue_delay_us is not None:
        raise ConfigError("--max-queue-delay-us configures the dynamic batcher: drop --no-dynamic-batching")
    report = ship(
        artifact,
        repo,
        name=name,
        version=version,
        max_batch=max_batch,
        instances=instances,
        kind=kind.value,
        preferred_batch=preferred_batch,
        max_queue_delay_us=None if no_dynamic_batching else (100 if max_queue_delay_us is None else max_queue_delay_us),
        accelerator=accelerator.value if accelerator else None,
        labels=labels,
        force=force,
        replace=replace,
    )
    for problem in report.forced:
        err.print("[bold red]warning:[/] shipped with --force: " + escape(problem), highlight=False)
    for warning in report.warnings:
        err.print("[bold yellow]warning:[/] " + escape(warning), highlight=False)
    if json_out:
        _emit_json(report)
        return
    out.print(
        f"[bold]{escape(report.model_dir)}[/]  ({report.platform}, version {report.version}, "
        f"max_batch_size {report.max_batch_size})",
        highlight=False,
    )
    for f in report.files:
        out.print(f"  {escape(f)}", highlight=False)
    inp = report.input
    out.print(
        f"[dim]input {escape(inp['name'])} {inp['dtype']} {inp['dims']} {inp['format']}; output "
        f"{escape(report.output['name'])} {report.output['dtype']} {report.output['dims']}"
        + (f"; config validated with {report.validated_with}" if report.validated_with else "")
        + "[/]",
        highlight=False,
    )


@app.command("predict")
def predict_cmd(
    artifact: Annotated[
        str, typer.Argument(help="An ONNX file, a TensorRT plan, a model id or a checkpoint.", show_default=False)
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    topk: Annotated[int, typer.Option("--topk", help="Classes to show per image.")] = 5,
    backend: Annotated[
        str, typer.Option(help="auto | onnxruntime | onnxruntime-cuda | onnxruntime-tensorrt | tensorrt | torch.")
    ] = "auto",
    labels: Annotated[
        Path | None, typer.Option(help="Class names, one per line (default: from the model).", show_default=False)
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per inference call.")] = 32,
    threads: Annotated[int | None, typer.Option(help="CPU threads.", show_default=False)] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", "-d", help="Architecture of a .pth checkpoint.", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify images with an artifact: top-k labels and probabilities."""
    from .predictor import Predictor

    if topk <= 0:
        raise ConfigError(f"--topk {topk}: must be a positive integer")
    with Predictor.from_artifact(
        artifact, backend, labels=labels, batch_size=batch_size, threads=threads, depth=depth
    ) as p:
        if p.metadata.get("weights_trained") == "false":
            err.print(
                "[bold yellow]warning:[/] random (untrained) weights: the labels are meaningless", highlight=False
            )
        results = p.predict(images, topk=topk)
        described = p.describe()
    if json_out:
        _emit_json({"artifact": artifact, "runner": described, "predictions": results})
        return
    for r in results:
        out.print(f"[bold]{escape(r.source)}[/]", highlight=False)
        for label, index, prob in zip(r.labels, r.indices, r.probabilities, strict=True):
            out.print(f"  {prob:7.2%}  {escape(label)} [dim]({index})[/]", highlight=False)


@app.command("serve")
def serve_cmd(
    artifact: Annotated[
        str,
        typer.Argument(help="An ONNX file, a TensorRT plan, a model id or a checkpoint.", show_default=False),
    ],
    name: Annotated[
        str | None, typer.Option(help="Model name clients use (default: its model id).", show_default=False)
    ] = None,
    address: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP/REST port (KServe v2).")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port", help="Prometheus metrics port.")] = 8002,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch", help="Largest batch (default: an engine's profile max, else 64).", show_default=False
        ),
    ] = None,
    max_queue_delay_us: Annotated[
        int, typer.Option("--max-queue-delay-us", help="How long the dynamic batcher waits to fill a batch.")
    ] = 100,
    preferred_batch: Annotated[
        str | None,
        typer.Option("--preferred-batch", help="Dynamic batcher's preferred sizes, e.g. 8,16.", show_default=False),
    ] = None,
    instances: Annotated[int, typer.Option(help="Model instances (each with its own runner).")] = 1,
    backend: Annotated[
        str, typer.Option(help="auto | onnxruntime | onnxruntime-cuda | onnxruntime-tensorrt | tensorrt | torch.")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per instance (default: cores / instances).", show_default=False)
    ] = None,
    log_file: Annotated[
        str | None, typer.Option("--log-file", help="Keep tritonserver's log here.", show_default=False)
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", "-d", help="Architecture of a .pth checkpoint.", show_default=False)
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the server's endpoints as one JSON line once it is ready.")
    ] = False,
) -> None:
    """Serve an artifact on a real Triton Inference Server (PyTriton): HTTP, gRPC, metrics, dynamic batching."""
    import json

    from .reports import check_output_path
    from .serve import ServeOptions, TritonServer
    from .ship import parse_batch_list

    options = ServeOptions(
        artifact=artifact,
        name=name,
        address=address,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us,
        preferred_batch=parse_batch_list(preferred_batch),
        instances=instances,
        backend=backend,
        depth=depth,
        threads=threads,
        log_file=str(check_output_path(log_file, "tritonserver.log")) if log_file is not None else None,
    )
    server = TritonServer(options)
    # PyTriton echoes tritonserver's own output on stdout: send it to stderr, so stdout carries
    # only the ready line(s) below (--json: exactly one JSON line).
    real_stdout = sys.stdout
    console = Console(file=real_stdout, highlight=False)
    sys.stdout = sys.stderr
    try:
        with err.status("starting Triton Inference Server", spinner="dots"):
            info = server.start()
        if json_out:
            real_stdout.write(json.dumps(to_jsonable(info)) + "\n")
            real_stdout.flush()
        else:
            console.print(
                f"[bold green]ready[/] model [bold]{escape(info.model)}[/] ({escape(str(info.runner.get('runner')))}, "
                f"max batch {info.max_batch_size}, {info.instances} instance(s), started in {info.startup_seconds:.1f} s)",
                highlight=False,
            )
            inp = info.input
            console.print(
                f"  input   {escape(inp['name'])} {inp['dtype']} {inp['shape']} ({inp['format']})", highlight=False
            )
            console.print(f"  output  {escape(info.output['name'])} float32 {info.output['shape']}", highlight=False)
            console.print(f"  HTTP    {info.http}   (health: {info.http}/v2/health/ready)", highlight=False)
            console.print(f"  gRPC    {info.grpc}", highlight=False)
            console.print(f"  metrics {info.metrics}", highlight=False)
            console.print("[dim]Ctrl-C or SIGTERM stops the server[/]")
            real_stdout.flush()
        received = server.wait()
    finally:
        server.stop()
        sys.stdout = real_stdout
    err.print(f"stopped ({received})", highlight=False)


@app.command("info")
def info_cmd(
    artifact: Annotated[Path, typer.Argument(help="An ONNX file exported by resnet-deploy.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what an exported artifact is: its metadata, signature and graph."""
    from .artifacts import describe_onnx

    desc = describe_onnx(artifact)
    if json_out:
        _emit_json(desc)
        return
    out.print(f"[bold]{escape(desc['path'])}[/]  ({desc['file_size_bytes'] / 1e6:.1f} MB)", highlight=False)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for io_ in desc["inputs"] + desc["outputs"]:
        grid.add_row(escape(io_["name"]), escape(f"{io_['dtype']} {io_['shape']}"))
    grid.add_row("opset", str(desc["opset"]))
    grid.add_row("nodes", ", ".join(f"{op} {n}" for op, n in desc["nodes_by_op"].items()))
    rec = desc["parity_record"]
    if rec["ok"]:
        grid.add_row("parity", escape(f"passed ({rec['step']} vs {rec['reference']}, {rec['created']})"))
    else:
        grid.add_row("parity", "[yellow]" + escape(str(rec["problem"])) + "[/]")
    for key, value in desc["metadata"].items():
        grid.add_row(escape(key), escape(value))
    out.print(grid)


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM (a timeout, CI cancelling) unwinds like Ctrl-C, so temp files are removed.
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except KeyboardInterrupt:  # during start-up imports, before the app's own handler runs
        err.print("[bold red]error:[/] interrupted", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
