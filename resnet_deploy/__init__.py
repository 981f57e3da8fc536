"""resnet-deploy: the ResNets of He et al. (2015) from PyTorch to production.

The public API uses the CLI's names: each command is one of these calls (``export`` is
``export_chain``, ``convert`` is ``to_fp16`` / ``quantize_int8``, ``build`` is ``build_engine``,
``check`` is ``check`` / ``compare``, ``bench`` is ``benchmark`` (``--latency-budget``:
``search_batch``; ``--server``: ``sweep_server``), ``eval`` is ``evaluate``, ``ship`` is ``ship``
(``--tune``: ``tune_config``), ``predict`` is ``Predictor``). Heavy runtimes (onnxruntime, tensorrt) are imported
lazily where they are used, never here.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Light modules are imported at once; the rest on first use (PEP 562), so the command line and
# 'import resnet_deploy.errors' start without torch and ONNX (a Ctrl-C during start-up lands in our
# handler, not in an import).
from ._version import __version__
from .choices import Backend, InputFormat, OutputFormat, Precision
from .errors import (
    BudgetError,
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
    TuneError,
    WeightsError,
)
from .stability import Stability

_LAZY: dict[str, str] = {
    "bench_targets": ".bench",
    "benchmark": ".bench",
    "check": ".check",
    "compare": ".check",
    "build_engine": ".engine",
    "load_engine": ".engine",
    "evaluate": ".evaluation",
    "parse_layer_information": ".engine_layers",
    "ExportReport": ".export",
    "export_onnx": ".export",
    "ModelCfg": ".models",
    "create_model": ".models",
    "get_model_cfg": ".models",
    "list_models": ".models",
    "model_stats": ".models",
    "ArtifactMeta": ".onnx_io",
    "read_metadata": ".onnx_io",
    "ChainReport": ".pipeline",
    "EngineOptions": ".pipeline",
    "PrecisionOptions": ".pipeline",
    "export_chain": ".pipeline",
    "add_pixel_input": ".pixels",
    "check_layers": ".layers",
    "compare_layers": ".layers",
    "convert": ".precision",
    "quantize_int8": ".precision",
    "to_fp16": ".precision",
    "Prediction": ".predictor",
    "Predictor": ".predictor",
    "open_backend": ".runtime",
    "open_runner": ".runtime",
    "ship": ".ship",
    "ServerSweep": ".loadgen",
    "sweep_server": ".loadgen",
    "search_batch": ".sizing",
    "TuneReport": ".tune",
    "tune_config": ".tune",
}

if TYPE_CHECKING:
    from .bench import bench_targets, benchmark
    from .check import check, compare
    from .engine import build_engine, load_engine
    from .engine_layers import parse_layer_information
    from .evaluation import evaluate
    from .export import ExportReport, export_onnx
    from .layers import check_layers, compare_layers
    from .loadgen import ServerSweep, sweep_server
    from .models import ModelCfg, create_model, get_model_cfg, list_models, model_stats
    from .onnx_io import ArtifactMeta, read_metadata
    from .pipeline import ChainReport, EngineOptions, PrecisionOptions, export_chain
    from .pixels import add_pixel_input
    from .precision import convert, quantize_int8, to_fp16
    from .predictor import Prediction, Predictor
    from .runtime import open_backend, open_runner
    from .ship import ship
    from .sizing import search_batch
    from .tune import TuneReport, tune_config


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'resnet_deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ArtifactMeta",
    "Backend",
    "BudgetError",
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
    "ServerSweep",
    "ShipRefused",
    "Stability",
    "TuneError",
    "TuneReport",
    "WeightsError",
    "__version__",
    "add_pixel_input",
    "bench_targets",
    "benchmark",
    "build_engine",
    "check",
    "check_layers",
    "compare",
    "compare_layers",
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
    "parse_layer_information",
    "quantize_int8",
    "read_metadata",
    "search_batch",
    "ship",
    "sweep_server",
    "to_fp16",
    "tune_config",
]
