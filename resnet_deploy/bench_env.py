"""Where a benchmark's numbers come from: the machine, the libraries, the models, and (on GPUs)
NVML's clocks, power and clocks-event reasons around each point."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from typing import Any

from ._version import __version__
from .gpu_env import nvml_snapshot
from .system import cpu_count, cpu_isa, cpu_model, dist_version


def environment(threads: int | None, targets: Sequence[Any]) -> dict[str, Any]:
    """Where the numbers come from: CPU, GPU, driver/CUDA, library versions, threads, model hashes."""
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": cpu_count(),
        "cpu_isa": cpu_isa(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "toolkit": __version__,
        "threads": threads,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    for pkg in ("torch", "onnxruntime-gpu", "onnxruntime", "onnx", "numpy", "tensorrt", "openvino", "nvidia-ml-py"):
        version = dist_version(pkg)
        if version is not None:
            env[pkg] = version
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
            env["cuda"] = torch.version.cuda
            major, minor = torch.cuda.get_device_capability()
            env["compute_capability"] = f"{major}.{minor}"
            env["driver"] = _nvidia_driver()
    except ImportError:
        pass
    env["models"] = {t.label: t.sha256 for t in targets}
    return env


def _nvidia_driver() -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def gpu_state() -> dict[str, Any] | None:
    """NVML's reading of the GPU torch runs on (by UUID: NVML's index ignores CUDA_VISIBLE_DEVICES)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return nvml_snapshot(uuid=str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid))
