"""``export_chain``: the stages of ``resnet-deploy export``, in order, as one library call.

export (fp32, verified against PyTorch) -> the precision's transform (verified against fp32) ->
the uint8 pixel input (verified against the float model) -> a TensorRT engine (checked against
its ONNX). Each stage is a ``Path -> Path`` function that verifies and records what it writes; the
chain only decides which run, where their files go (STYLE's artifact names) and what the merged
report says. Everything that can fail fast (options, calibration folder, engine profile, TensorRT
on this machine) is checked before the first, slow stage starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calibration import DEFAULT_CALIB_COUNT, CalibMethod
from .check import compare
from .choices import OutputFormat, Precision
from .data import IMAGE_EXTENSIONS, list_images, load_image
from .engine import BuildReport, build_engine, runtime_env
from .errors import ConfigError, DataError, ParityError
from .export import ExportReport, export_onnx
from .metrics import MIN_JUDGED_SAMPLES, CheckReport
from .models.registry import resolve_model_name
from .onnx_io import FLOAT_NCHW, UINT8_NHWC, InputFormat
from .pixels import PixelInputReport, add_pixel_input
from .precision import Int8Recipe, PrecisionReport, convert
from .precisions import precision_spec
from .records import record_check
from .reports import Progress, Reporter
from .sensitivity import DEFAULT_MAX_EXCLUDED
from .sidecar import Profile


@dataclass(frozen=True)
class PrecisionOptions:
    """The chain's precision stage (``convert`` takes the same options)."""

    precision: str = Precision.fp32.value
    fp16_io: bool = False
    calib: str | None = None  # int8: an image folder, or "random"
    calib_count: int = DEFAULT_CALIB_COUNT
    calib_method: str = CalibMethod.entropy.value
    percentile: float = 99.999
    recipe: str = Int8Recipe.tensorrt.value
    seed: int = 0
    allow_mismatch: bool = False
    # int8's layout (``quantize_int8``): layers kept out of int8, the classifier, the remainder's type
    exclude: tuple[str, ...] = ()
    quantize_classifier: bool = False
    high_precision: str | None = None  # fp16 | fp32 (None: fp16 for the tensorrt recipe, fp32 for cpu)
    auto_exclude: bool = False
    max_excluded: int = DEFAULT_MAX_EXCLUDED

    def validate(self) -> None:
        """Every option error now, before a (long) export runs: a missing, empty or unreadable
        calibration folder included."""
        precision_spec(self.precision)
        if self.fp16_io and self.precision not in ("fp16", "int8"):
            raise ConfigError("--fp16-io goes with --precision fp16 or int8")
        int8_only = (
            ("--exclude", bool(self.exclude)),
            ("--quantize-classifier", self.quantize_classifier),
            ("--high-precision", self.high_precision is not None),
            ("--auto-exclude", self.auto_exclude),
        )
        for flag, given in int8_only:
            if given and self.precision != "int8":
                raise ConfigError(f"{flag} goes with --precision int8")
        if self.auto_exclude and self.calib_images is None and self.calib is not None:
            raise ConfigError(
                "--auto-exclude ranks layers on held-out calibration images: pass --calib DIR, not random"
            )
        if not 1 <= self.max_excluded <= 1000:
            raise ConfigError(f"--max-excluded {self.max_excluded}: must be an integer in 1-1000")
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
        if self.calib_images is not None:
            files = list_images(self.calib_images)
            if not files:
                raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.calib_images}")
            if self.auto_exclude and len(files) < self.calib_count + MIN_JUDGED_SAMPLES:
                raise ConfigError(
                    f"--auto-exclude judges each exclusion on held-out images: {len(files)} images in "
                    f"{self.calib_images} leave none beyond --calib-count {self.calib_count} (lower it to "
                    f"{max(1, len(files) - 32)} or add images)"
                )
            for f in files:
                try:
                    load_image(f)
                    break
                except DataError:
                    continue
            else:
                raise DataError(f"none of the {len(files)} image files in {self.calib_images} could be read")

    @property
    def calib_images(self) -> str | None:
        """The calibration folder (None for ``random`` or no calibration)."""
        return self.calib if self.calib is not None and self.calib.strip().lower() != "random" else None

    def converter_options(self) -> dict[str, Any]:
        """The keyword arguments of the precision's transform (``precision.CONVERTERS``)."""
        common: dict[str, Any] = {"seed": self.seed, "allow_mismatch": self.allow_mismatch}
        if self.precision == "fp16":
            return {"keep_io_types": not self.fp16_io, **common}
        return {
            "calibration": self.calib or "random",
            "recipe": self.recipe,
            "method": self.calib_method,
            "percentile": self.percentile,
            "count": self.calib_count,
            "exclude": self.exclude,
            "quantize_classifier": self.quantize_classifier,
            "high_precision": self.high_precision,
            "fp16_io": self.fp16_io,
            "auto_exclude": self.auto_exclude,
            "max_excluded": self.max_excluded,
            **common,
        }


@dataclass(frozen=True)
class EngineOptions:
    """The optimization profile of the chain's engine."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 64


@dataclass(frozen=True)
class ChainPaths:
    fp32: Any  # str | Path | None (None: the export's default, ./<model>.onnx)
    precision: Any  # the float model of the chosen precision
    final: Any  # what the chain leaves (the pixel-input model, or the precision's)


def artifact_paths(name: str, output: str | None, precision: str, input_format: str = FLOAT_NCHW) -> ChainPaths:
    """Where the fp32 ONNX, the float model of the chosen precision and the final artifact go.
    ``output`` names the final artifact; the models it was made from are kept beside it
    (``resnet50.onnx`` next to ``resnet50.fp16.onnx`` next to ``resnet50.fp16.uint8-nhwc.onnx``).
    A path ending in '/' must be an existing folder."""
    if output is not None and output.endswith(("/", os.sep)) and not Path(output).is_dir():
        raise ConfigError(f"output folder does not exist: {output} (create it first)")
    pixels = input_format == UINT8_NHWC
    if precision == "fp32" and not pixels:
        return ChainPaths(output, output, output)
    tail = f".{UINT8_NHWC}" if pixels else ""
    prec = precision_spec(precision).suffix
    out = Path(output) if output is not None else None
    if out is None or out.is_dir():
        folder = out or Path(".")
        return ChainPaths(folder / f"{name}.onnx", folder / f"{name}{prec}.onnx", folder / f"{name}{prec}{tail}.onnx")
    stem = out.name.removesuffix(".onnx").removesuffix(tail).removesuffix(prec or ".fp32")
    fp32 = out.with_name(f"{stem}.onnx")
    if fp32 == out:
        fp32 = out.with_name(f"{stem}.fp32.onnx")
    if not pixels:
        return ChainPaths(fp32, out, out)
    middle = fp32 if precision == "fp32" else out.with_name(f"{stem}{prec}.onnx")
    if middle == out:
        middle = out.with_name(f"{stem}{prec}.float.onnx")
    return ChainPaths(fp32, middle, out)


@dataclass
class ChainReport:
    """What each stage of the chain made (None for a stage that did not run)."""

    export: ExportReport
    precision: PrecisionReport | None = None
    pixel_input: PixelInputReport | None = None
    engine: BuildReport | None = None
    check: CheckReport | None = None
    warnings: list[str] = field(default_factory=list)  # every stage's warnings, in order

    @property
    def onnx_path(self) -> Path:
        """The last ONNX the chain wrote (what an engine is built from)."""
        last = self.pixel_input or self.precision or self.export
        return Path(last.path)

    @property
    def passed(self) -> bool:
        return self.check is None or self.check.passed

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``export --json``: the last ONNX stage's report alone, or every stage's
        when the chain added a pixel input or an engine."""
        if self.engine is not None:
            return {
                "export": self.export,
                "precision": self.precision,
                "pixel_input": self.pixel_input,
                "engine": self.engine,
                "check": self.check,
            }
        if self.pixel_input is not None:
            return {"export": self.export, "precision": self.precision, "pixel_input": self.pixel_input}
        return (self.precision or self.export).to_dict()


def resolve_model(depth: int | None = None, model: str | None = None) -> str:
    """The model id that ``--depth`` and/or ``--model`` name (they must agree)."""
    if depth is None and model is None:
        raise ConfigError("choose a model: --depth N (e.g. --depth 50) or --model NAME (see 'resnet-deploy models')")
    by_depth = resolve_model_name(depth) if depth is not None else None
    by_name = resolve_model_name(model) if model is not None else None
    if by_depth and by_name and by_depth != by_name:
        raise ConfigError(f"--depth {depth} and --model {model} name different models; give one of them")
    name = by_depth or by_name
    assert name is not None
    return name


def export_chain(
    model: str | int,
    output: str | None = None,
    *,
    precision: PrecisionOptions | None = None,
    input_format: str = FLOAT_NCHW,
    fmt: str = OutputFormat.onnx.value,
    engine: EngineOptions | None = None,
    progress: Progress | None = None,
    **export_options: Any,
) -> ChainReport:
    """Run what ``resnet-deploy export`` runs: the verified fp32 export of ``model`` (options as
    ``export_onnx``), then, when asked, the precision's transform, the uint8 pixel input, and a
    TensorRT engine checked against the last ONNX. Returns every stage's report; raises
    ``ParityError`` with the failing stage's report (an engine that differs from its ONNX: with
    the whole ``ChainReport``, after its files and record are written)."""
    say = Reporter(progress)
    options = precision or PrecisionOptions(seed=export_options.get("seed", 0))
    options.validate()
    InputFormat(input_format)
    profile = _engine_profile(OutputFormat(fmt), export_options.get("batch", "dynamic"), engine or EngineOptions())
    name = resolve_model_name(model)
    paths = artifact_paths(name, output, options.precision, input_format)
    export_options.setdefault("seed", options.seed)
    export_options.setdefault("allow_mismatch", options.allow_mismatch)
    report = ChainReport(export_onnx(name, paths.fp32, progress=progress, **export_options))
    report.warnings += report.export.warnings
    if options.precision != Precision.fp32.value:
        report.precision = _convert_stage(report.export, paths.precision, options, progress)
        report.warnings += report.precision.warnings
    if input_format == UINT8_NHWC:
        float_path = report.onnx_path
        report.pixel_input = add_pixel_input(
            float_path, paths.final, seed=options.seed, allow_mismatch=options.allow_mismatch, progress=progress
        )
        report.warnings += report.pixel_input.warnings
    if profile is None:
        return report
    onnx_path = report.onnx_path
    report.engine = build_engine(
        onnx_path,
        onnx_path.with_suffix(".plan"),
        min_batch=profile.min_batch,
        opt_batch=profile.opt_batch,
        max_batch=profile.max_batch,
        progress=progress,
    )
    say("checking the engine against its ONNX")
    sizes = sorted({profile.min_batch, profile.opt_batch})
    report.check = compare(
        report.engine.path, onnx_path, batch_sizes=sizes, images=options.calib_images, seed=options.seed
    )
    record_check(report.engine.path, report.check)
    if not report.check.passed:
        raise ParityError(f"the engine differs from {onnx_path.name} beyond tolerance", report)
    return report


def _engine_profile(fmt: OutputFormat, batch: Any, engine: EngineOptions) -> EngineOptions | None:
    """With an engine to build: its profile, checked now, and TensorRT and a GPU here, so a long
    export does not run for an engine that cannot be built. None for an ONNX-only chain."""
    if fmt is not OutputFormat.engine:
        return None
    if str(batch).strip().lower() != "dynamic":
        raise ConfigError("--format engine needs --batch dynamic (the engine's profile sets the batch range)")
    Profile(engine.min_batch, engine.opt_batch, engine.max_batch, (3, 1, 1))
    runtime_env()
    return engine


def _convert_stage(
    export: ExportReport, dst: Any, options: PrecisionOptions, progress: Progress | None
) -> PrecisionReport:
    """The precision's transform of the fresh fp32 export; its report carries the export's, and
    so does a ParityError's."""
    try:
        converted = convert(Path(export.path), dst, options.precision, progress=progress, **options.converter_options())
    except ParityError as e:
        if isinstance(e.report, PrecisionReport):
            e.report.extra["export"] = export.to_dict()
        raise
    converted.extra["export"] = export.to_dict()
    return converted
