"""Shared fixtures. Every test runs with an empty torch.hub cache and downloads switched off, so
results never depend on what a machine has cached and no test touches the network."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """The Ctrl-C tests send SIGINT to the commands they start. A test run started with '&' from
    a script (or by a runner that does so) inherits SIGINT ignored, and so would every command it
    starts: a handler here is reset to the default in each child, an ignored signal is not."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("RESNET_DEPLOY_OFFLINE", "1")
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # honour TORCH_HOME even if set_dir ran
    return home


@pytest.fixture(scope="session")
def torchvision_layout() -> dict[str, Any]:
    """torchvision 0.29.1's resnet18..152 state_dict entries, in order (from shared/fixtures)."""
    data: dict[str, Any] = json.loads((FIXTURES / "torchvision_resnet_state_dicts.json").read_text())
    return data["models"]


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _has_tensorrt() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None and _has_cuda()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU and TensorRT tests skip with a reason where the hardware or library is absent, and run
    unchanged on a machine that has them (scripts/gpu_check.sh)."""
    needs = {
        "gpu": (_has_cuda, "needs a CUDA GPU (torch.cuda.is_available() is False)"),
        "tensorrt": (_has_tensorrt, 'needs TensorRT and a CUDA GPU (pip install "resnet-deploy[tensorrt]")'),
    }
    cache: dict[str, bool] = {}
    for item in items:
        for marker, (probe, reason) in needs.items():
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in cache:
                cache[marker] = probe()
            if not cache[marker]:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A narrow ResNet-20 trained on scikit-learn's handwritten digits (~15 s), with its held-out
    images on disk: the real trained model every accuracy and serving test shares."""
    from benchmarks.digits import train_digits

    return train_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def digits_onnx(digits: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained digits model exported to a verified fp32 ONNX (with its parity record)."""
    from resnet_deploy import export_onnx

    out = tmp_path_factory.mktemp("digits_onnx") / "digits.onnx"
    report = export_onnx(digits.model, out)
    assert report.parity_passed and report.weights.trained
    return out
