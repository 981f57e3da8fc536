"""The package surface: the public API, lazy heavy imports, package data."""

from __future__ import annotations

import subprocess
import sys

import resnet_deploy as rd


def test_public_api_uses_the_cli_names() -> None:
    for name in ("create_model", "list_models", "export_onnx", "ResnetDeployError", "ConfigError", "__version__"):
        assert name in rd.__all__ and hasattr(rd, name)
    assert issubclass(rd.ConfigError, ValueError) and issubclass(rd.MissingDependencyError, ImportError)
    for cls in (
        rd.ConfigError,
        rd.WeightsError,
        rd.ExportError,
        rd.ParityError,
        rd.EngineError,
        rd.MissingDependencyError,
    ):
        assert issubclass(cls, rd.ResnetDeployError)


def test_import_does_not_load_tensorrt_or_onnxruntime() -> None:
    code = "import sys, resnet_deploy, resnet_deploy.cli; print(sorted(m for m in ('tensorrt', 'onnxruntime') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_imagenet_class_names_ship_as_package_data() -> None:
    from resnet_deploy.models.cfg import imagenet_classes

    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet tissue"
    assert rd.get_model_cfg(50).label_names() == list(names)


def test_missing_dependency_message_names_the_extra() -> None:
    err = rd.MissingDependencyError("tensorrt", extra="tensorrt", purpose="building engines")
    assert str(err) == 'tensorrt is not installed (needed for building engines): pip install "resnet-deploy[tensorrt]"'
