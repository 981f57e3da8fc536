"""Facts about the machine, in one place: usable CPU cores, the CPU's model name, installed versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def dist_version(dist: str) -> str | None:
    """The installed version of the distribution ``dist`` (e.g. "onnxruntime-gpu"), or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The instruction-set extensions that decide CPU inference speed: int8 is only much faster than
# fp32 with VNNI (AVX512-VNNI, AVX-VNNI) or AMX; on AVX2 alone ONNX Runtime's and OpenVINO's int8
# kernels gain little. A benchmark's numbers mean little without them.
CPU_ISA = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_isa() -> dict[str, bool] | None:
    """Which of ``CPU_ISA`` the CPU has (/proc/cpuinfo's flags; None where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return {name: name in flags for name in CPU_ISA}
    except OSError:
        pass
    return None
