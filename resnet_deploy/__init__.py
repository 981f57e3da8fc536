"""resnet-deploy: the ResNets of He et al. (2015) from PyTorch to production.

The public API uses the CLI's names: ``create_model``, ``list_models``, ``export_onnx``. Heavy
runtimes (onnxruntime, tensorrt) are imported lazily where they are used, never here.
"""

from ._version import __version__
from .errors import (
    ConfigError,
    DataError,
    EngineError,
    ExportError,
    MissingDependencyError,
    ParityError,
    ResnetDeployError,
    WeightsError,
)
from .export import ExportReport, export_onnx
from .models import ModelCfg, create_model, get_model_cfg, list_models, model_stats
from .onnx_io import read_metadata
from .predictor import Prediction, Predictor

__all__ = [
    "ConfigError",
    "DataError",
    "EngineError",
    "ExportError",
    "ExportReport",
    "MissingDependencyError",
    "ModelCfg",
    "ParityError",
    "Prediction",
    "Predictor",
    "ResnetDeployError",
    "WeightsError",
    "__version__",
    "create_model",
    "export_onnx",
    "get_model_cfg",
    "list_models",
    "model_stats",
    "read_metadata",
]
