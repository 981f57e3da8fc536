"""resnet-deploy: the ResNets of He et al. (2015) from PyTorch to production.

The public API uses the CLI's names: each command is one of these calls (``export`` is
``export_chain``, ``convert`` is ``to_fp16`` / ``quantize_int8``, ``build`` is ``build_engine``,
``check`` is ``check`` / ``compare``, ``bench`` is ``benchmark``, ``eval`` is ``evaluate``, ``ship``
is ``ship``, ``predict`` is ``Predictor``). Heavy runtimes (onnxruntime, tensorrt) are imported
lazily where they are used, never here.
"""

from ._version import __version__
from .bench import bench_targets, benchmark
from .check import check, compare
from .choices import Backend, InputFormat, OutputFormat, Precision
from .engine import build_engine, load_engine
from .errors import (
    ConfigError,
    DataError,
    EngineError,
    ExportError,
    Interrupted,
    MissingDependencyError,
    ParityError,
    ResnetDeployError,
    ServeError,
    ShipRefused,
    WeightsError,
)
from .evaluation import evaluate
from .export import ExportReport, export_onnx
from .models import ModelCfg, create_model, get_model_cfg, list_models, model_stats
from .onnx_io import ArtifactMeta, read_metadata
from .pipeline import ChainReport, EngineOptions, PrecisionOptions, export_chain
from .pixels import add_pixel_input
from .precision import convert, quantize_int8, to_fp16
from .predictor import Prediction, Predictor
from .runtime import open_backend, open_runner
from .ship import ship

__all__ = [
    "ArtifactMeta",
    "Backend",
    "ChainReport",
    "ConfigError",
    "DataError",
    "EngineError",
    "EngineOptions",
    "ExportError",
    "ExportReport",
    "InputFormat",
    "Interrupted",
    "MissingDependencyError",
    "ModelCfg",
    "OutputFormat",
    "ParityError",
    "Precision",
    "PrecisionOptions",
    "Prediction",
    "Predictor",
    "ResnetDeployError",
    "ServeError",
    "ShipRefused",
    "WeightsError",
    "__version__",
    "add_pixel_input",
    "bench_targets",
    "benchmark",
    "build_engine",
    "check",
    "compare",
    "convert",
    "create_model",
    "evaluate",
    "export_chain",
    "export_onnx",
    "get_model_cfg",
    "list_models",
    "load_engine",
    "model_stats",
    "open_backend",
    "open_runner",
    "quantize_int8",
    "read_metadata",
    "ship",
    "to_fp16",
]
