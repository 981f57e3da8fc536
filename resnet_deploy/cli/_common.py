"""What every command module shares: the consoles, ``--json`` output, the progress UI, the fixed
choices and shared options, and the renderers more than one command uses.

The command modules import this module and the library, never the package's ``__init__`` (which
imports them to register their commands).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from ..choices import Backend as BackendChoice
from ..choices import CalibMethod as CalibMethodChoice
from ..choices import ConvertPrecision
from ..choices import Device as DeviceChoice
from ..choices import Exporter as ExporterChoice
from ..choices import HardwareCompat as HardwareCompatChoice
from ..choices import HighPrecision as HighPrecisionChoice
from ..choices import InputFormat as InputFormatChoice
from ..choices import Int8Recipe as RecipeChoice
from ..choices import Kind as KindChoice
from ..choices import OutputFormat as FormatChoice
from ..choices import PerformanceHint as PerformanceHintChoice
from ..choices import Precision as PrecisionChoice
from ..choices import Protocol as ProtocolChoice
from ..choices import Shortcut as ShortcutChoice
from ..choices import TorchDtype as TorchDtypeChoice
from ..choices import Variant as VariantChoice
from ..errors import ConfigError
from ..errors import Interrupted as Interrupted
from ..reports import printable


class _SafeConsole(Console):
    """A console that shows control characters in printed strings as escapes (a value read from
    a file cannot drive the terminal); line feeds of our own layout stay. Values that must stay on
    one line (metadata, paths in a table) go through ``printable`` before they reach a cell."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(printable(o, newlines=True) if isinstance(o, str) else o for o in objects), **kwargs)


def _stdout_is_tty() -> bool:
    return sys.stdout is not None and sys.stdout.isatty()


# Wide enough for the tables when stdout is a pipe or a file (rich would assume 80 columns).
out = _SafeConsole(soft_wrap=True, width=None if _stdout_is_tty() or os.environ.get("COLUMNS") else 160)
err = _SafeConsole(stderr=True, soft_wrap=True)


# ------------------------------------------------------------------------------------------ choices


# Every fixed choice is the library's own Enum (``choices.py``, one definition each, and light:
# the command line starts without torch); the CLI knows them by these names.
__all__ = [
    "BackendChoice",
    "CalibMethodChoice",
    "ConvertPrecision",
    "DeviceChoice",
    "ExporterChoice",
    "FormatChoice",
    "HardwareCompatChoice",
    "HighPrecisionChoice",
    "InputFormatChoice",
    "KindChoice",
    "PerformanceHintChoice",
    "PrecisionChoice",
    "ProtocolChoice",
    "RecipeChoice",
    "ShortcutChoice",
    "TorchDtypeChoice",
    "VariantChoice",
]


# ------------------------------------------------------------------------------------------ options


# Seeds as numpy and torch take them; a negative or 30-digit seed is a usage error, not a traceback.
SEED_BOUNDS: dict[str, Any] = {"min": 0, "max": 2**32 - 1}

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

INPUT_FORMAT_OPT = typer.Option(
    "--input-format",
    help="float32-nchw (normalised tensors), or uint8-nhwc: raw resized+cropped RGB pixels, normalised inside the graph.",
)
EXCLUDE_OPT = typer.Option(
    "--exclude",
    help="int8: keep this module out of int8, in the high-precision type (repeatable; globs such as 'layer4.*').",
    show_default=False,
)
QUANTIZE_CLASSIFIER_OPT = typer.Option(
    "--quantize-classifier",
    help="int8, tensorrt recipe: quantize the classifier (fc) too (default: kept in float, as ModelOpt does).",
)
HIGH_PRECISION_OPT = typer.Option(
    "--high-precision",
    help="int8: the type between the Q/DQ pairs: fp16 (default for the tensorrt recipe) or fp32 (the cpu recipe's).",
    show_default=False,
)
AUTO_EXCLUDE_OPT = typer.Option(
    "--auto-exclude",
    help="int8: rank layers by int8 sensitivity on held-out calibration images and exclude the worst until parity passes.",
)
MAX_EXCLUDED_OPT = typer.Option("--max-excluded", help="With --auto-exclude: the most layers it may exclude.")

PROVIDER_OPT = typer.Option(
    "--provider", help="ONNX Runtime provider for ONNX artifacts: cpu, cuda or tensorrt (no silent CPU fallback)."
)


# ------------------------------------------------------------------------ output, progress, parsing


def _emit_json(obj: Any) -> None:
    from ..reports import dumps

    if sys.stdout is None:  # started with stdout closed ('>&-')
        raise ConfigError("standard output is closed: nowhere to write the JSON (redirect it to a file)")
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


def _output_paths(
    json_path: Path | None, csv_path: Path | None, plot_path: Path | None, stem: str
) -> tuple[Path | None, Path | None, Path | None]:
    """A report's output files (``--json``, ``--csv``, ``--plot``), checked before measuring; an
    existing folder gets ``<stem>.json`` / ``.csv`` / ``.png`` inside it (as export's -o does)."""
    from ..reports import check_output_path

    def checked(path: Path | None, name: str) -> Path | None:
        return path if path is None or str(path) == "-" else check_output_path(path, name)

    return checked(json_path, f"{stem}.json"), checked(csv_path, f"{stem}.csv"), checked(plot_path, f"{stem}.png")


def _save_outputs(
    report: Any,
    json_path: Path | None,
    csv_path: Path | None,
    plot_path: Path | None,
    write_csv: Callable[[Any, Path], Any],
    write_plot: Callable[[Any, Path], Any],
) -> None:
    """The report as JSON (a file, or stdout for '-'), its rows as CSV and the plot, as asked."""
    from ..reports import atomic_write_text, dumps

    if json_path is not None:
        if str(json_path) == "-":
            _emit_json(report)
        else:
            atomic_write_text(json_path, dumps(report))
    if csv_path is not None:
        write_csv(report, csv_path)
    if plot_path is not None and report.rows:
        write_plot(report, plot_path)


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


def _parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--batch-sizes {text!r}: give comma-separated positive integers, e.g. 1,8") from None
    if not sizes or any(b <= 0 for b in sizes):
        raise ConfigError(f"--batch-sizes {text!r}: give comma-separated positive integers, e.g. 1,8")
    from ..metrics import check_batch_sizes

    return check_batch_sizes(sizes, "--batch-sizes")


def _render_build(report: Any) -> None:
    sc = report.sidecar
    out.print(
        f"[bold]{escape(report.path)}[/]  ({sc.plan_size_bytes / 1e6:.1f} MB, {sc.precision}, {sc.build_mode}, "
        f"TensorRT {sc.tensorrt_version}, {escape(sc.gpu_name)} sm{sc.compute_capability}, "
        f"batch {sc.profile['min'][0]}-{sc.profile['max'][0]}, built in {sc.build_seconds:.0f} s)",
        highlight=False,
    )
