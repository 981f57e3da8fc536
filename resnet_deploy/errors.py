"""One exception tree for the whole toolkit.

The library raises these and never prints or exits; the CLI turns them into a one-line message and
an exit code in exactly one place (``resnet_deploy.cli``).
"""

from __future__ import annotations

from typing import Any


class ResnetDeployError(Exception):
    """Root of every error this toolkit raises on purpose."""

    exit_code = 1


class ConfigError(ResnetDeployError, ValueError):
    """A bad argument: unknown depth, variant, shortcut, size, class count, output path..."""

    exit_code = 2


class WeightsError(ResnetDeployError):
    """Weights that cannot be found, read, trusted or loaded into the architecture."""


class DataError(ResnetDeployError):
    """Images or datasets that cannot be found, read or used."""


class ExportError(ResnetDeployError):
    """The ONNX export, its checker or its shape inference failed."""


class ParityError(ResnetDeployError):
    """Two runners disagree beyond tolerance; carries the full report."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class EngineError(ResnetDeployError):
    """A TensorRT engine cannot be built, verified or loaded."""


class MissingDependencyError(ResnetDeployError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        how = f'pip install "resnet-deploy[{extra}]"' if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}: {how}")
        self.package = package
        self.extra = extra


class ShipRefused(ResnetDeployError):
    """The artifact is not fit to ship (no passing parity record, random weights...)."""


class BudgetError(ResnetDeployError):
    """Nothing measured meets the latency budget (``bench --latency-budget``); exit 1."""


class ServeError(ResnetDeployError):
    """Triton did not start, or stopped on its own."""


class TuneError(ResnetDeployError):
    """No tuned configuration meets the latency budget; carries the full report (nothing written)."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class Interrupted(ResnetDeployError):
    """Stopped by Ctrl-C or SIGTERM after showing what it had: ``error: <message>``, exit 130."""

    exit_code = 130
