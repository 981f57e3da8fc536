"""What the GPU was doing around a measurement: clocks, power, temperature and why clocks were held.

A benchmark number means little without the state of the GPU it ran on: a GPU capped by its power
limit or slowed by heat gives another latency than the same GPU at full boost. ``nvml_snapshot``
reads that state from NVML (the library ``nvidia-smi`` uses) through the ``nvidia-ml-py`` bindings
(``import pynvml``). It never raises: where NVML, the driver or the GPU is missing it returns None,
and ``nvml_probe`` says why. A leaf module: it imports nothing of this package, so runners, bench
and the GPU scripts may all use it.

NVML calls used (nvml.h / the NVML API reference): nvmlInit, nvmlSystemGetDriverVersion,
nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex, nvmlDeviceGetName, nvmlDeviceGetClockInfo and
nvmlDeviceGetMaxClockInfo (NVML_CLOCK_SM, NVML_CLOCK_MEM; MHz), nvmlDeviceGetPowerUsage and
nvmlDeviceGetEnforcedPowerLimit (milliwatts), nvmlDeviceGetTemperature (NVML_TEMPERATURE_GPU, C),
nvmlDeviceGetUtilizationRates (percent over the driver's last sample period),
nvmlDeviceGetPerformanceState, and nvmlDeviceGetCurrentClocksEventReasons (driver 535+; older
drivers and bindings: nvmlDeviceGetCurrentClocksThrottleReasons, the same bit mask).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

INSTALL = "pip install nvidia-ml-py"

# The clocks-event (formerly "throttle") reasons, in nvml.h's bit order. The values are nvml.h's
# and are read from pynvml when it is installed (nvmlClocksEventReason*, or the older
# nvmlClocksThrottleReason* names); the numbers here only decode a mask recorded elsewhere.
# UserDefinedClocks is an alias of ApplicationsClocksSetting (bit 2) and is not listed twice.
REASONS: tuple[tuple[str, int], ...] = (
    ("GpuIdle", 0x1),
    ("ApplicationsClocksSetting", 0x2),
    ("SwPowerCap", 0x4),
    ("HwSlowdown", 0x8),
    ("SyncBoost", 0x10),
    ("SwThermalSlowdown", 0x20),
    ("HwThermalSlowdown", 0x40),
    ("HwPowerBrakeSlowdown", 0x80),
    ("DisplayClockSetting", 0x100),
)
# Reasons that mean the GPU ran slower than it could have under load (not idle, not a setting).
SLOWDOWNS = frozenset({"SwPowerCap", "HwSlowdown", "SwThermalSlowdown", "HwThermalSlowdown", "HwPowerBrakeSlowdown"})

_lock = threading.Lock()
_started = False  # nvmlInit succeeded in this process (NVML is left initialised until exit)


def reason_bits() -> tuple[tuple[str, int], ...]:
    """(name, bit) for each known reason: pynvml's constants where it is installed, else nvml.h's."""
    try:
        import pynvml
    except ImportError:
        return REASONS
    table = []
    for name, documented in REASONS:
        value: Any = getattr(pynvml, f"nvmlClocksEventReason{name}", None)
        if value is None:
            value = getattr(pynvml, f"nvmlClocksThrottleReason{name}", documented)
        table.append((name, int(value)))
    return tuple(table)


def decode_reasons(bits: int) -> list[str]:
    """The names of the reasons set in an NVML clocks-event mask, in bit order; bits NVML may add
    later are kept as ``unknown(0x...)`` rather than dropped. 0 (``None``: full clocks) -> []."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 0:
        raise ValueError(f"a clocks-event reason mask is a non-negative int, got {bits!r}")
    names = []
    known = 0
    for name, bit in reason_bits():
        known |= bit
        if bits & bit:
            names.append(name)
    rest = bits & ~known
    if rest:
        names.append(f"unknown({rest:#x})")
    return names


def nvml_snapshot(device_index: int = 0, *, uuid: str | None = None) -> dict[str, Any] | None:
    """Clocks, power, temperature, utilisation and clocks-event reasons of the GPU at NVML index
    ``device_index`` (or with this ``uuid``) now; None where NVML cannot answer (``nvml_probe``
    gives the reason).

    NVML numbers GPUs as ``nvidia-smi`` does (PCI order, ignoring ``CUDA_VISIBLE_DEVICES``); to
    read the GPU torch runs on, pass ``uuid=str(torch.cuda.get_device_properties(i).uuid)``."""
    return nvml_probe(device_index, uuid=uuid)[0]


def nvml_uuid(uuid: str) -> str:
    """NVML's spelling of a GPU UUID: torch prints ``xxxxxxxx-...``, NVML wants ``GPU-xxxxxxxx-...``."""
    text = str(uuid).strip()
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def nvml_probe(device_index: int = 0, *, uuid: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """``(snapshot, None)``, or ``(None, why not)``: nvidia-ml-py missing (with how to install it),
    no NVIDIA driver, no GPU at that index (or with that UUID). Never raises."""
    try:
        import pynvml
    except ImportError:
        return None, f"nvidia-ml-py is not installed (NVML readings need it): {INSTALL}"
    try:
        why = _start(pynvml)
        if why is not None:
            return None, why
        if uuid is not None:
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(nvml_uuid(uuid))
            except pynvml.NVMLError as e:
                return None, f"no GPU with UUID {nvml_uuid(uuid)} here ({e})"
            return _read(pynvml, handle, int(pynvml.nvmlDeviceGetIndex(handle))), None
        count = int(pynvml.nvmlDeviceGetCount())
        if isinstance(device_index, bool) or not isinstance(device_index, int) or not 0 <= device_index < count:
            return None, f"no GPU at NVML index {device_index!r}: the driver sees {count} GPU(s)"
        return _read(pynvml, pynvml.nvmlDeviceGetHandleByIndex(device_index), device_index), None
    except Exception as e:  # telemetry must never cost a measurement: any NVML failure is a reason
        return None, f"NVML failed: {type(e).__name__}: {e}"


def _start(pynvml: Any) -> str | None:
    """nvmlInit once per process (NVML counts inits; it is released when the process exits, so a
    snapshot taken right after a measurement does not pay NVML's start-up). A reason on failure."""
    global _started
    with _lock:
        if _started:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            return "no NVIDIA driver here: NVML's library (libnvidia-ml.so.1) was not found, so no GPU can be read"
        except pynvml.NVMLError_DriverNotLoaded:
            return "the NVIDIA driver is not loaded: no GPU can be read"
        except pynvml.NVMLError_NoPermission:
            return "NVML refused access to the GPU driver (no permission)"
        except pynvml.NVMLError as e:
            return f"NVML could not start (NVIDIA driver or GPU unavailable): {e}"
        _started = True
        return None


def _read(pynvml: Any, handle: Any, index: int) -> dict[str, Any]:
    """Every field NVML answers; one a GPU does not support (NVMLError_NotSupported, e.g. power on
    some boards) is None and named in ``unsupported``."""
    unsupported: list[str] = []

    def get(field: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except pynvml.NVMLError:
            unsupported.append(field)
            return None

    def watts(milliwatts: Any) -> float | None:
        return None if milliwatts is None else round(float(milliwatts) / 1000.0, 3)

    def event_bits() -> int:
        # "Clocks event reasons" since driver 535; the older name reads the same bit mask.
        call = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if call is None:
            call = pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(call(handle))

    sm, mem = pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM
    bits = get("clocks_event_reasons", event_bits)
    util = get("utilization", lambda: pynvml.nvmlDeviceGetUtilizationRates(handle))
    snap: dict[str, Any] = {
        "time": time.time(),
        "index": index,
        "name": get("name", lambda: _text(pynvml.nvmlDeviceGetName(handle))),
        "driver_version": get("driver_version", lambda: _text(pynvml.nvmlSystemGetDriverVersion())),
        "sm_clock_mhz": get("sm_clock_mhz", lambda: int(pynvml.nvmlDeviceGetClockInfo(handle, sm))),
        "sm_clock_max_mhz": get("sm_clock_max_mhz", lambda: int(pynvml.nvmlDeviceGetMaxClockInfo(handle, sm))),
        "mem_clock_mhz": get("mem_clock_mhz", lambda: int(pynvml.nvmlDeviceGetClockInfo(handle, mem))),
        "mem_clock_max_mhz": get("mem_clock_max_mhz", lambda: int(pynvml.nvmlDeviceGetMaxClockInfo(handle, mem))),
        "power_w": watts(get("power_w", lambda: pynvml.nvmlDeviceGetPowerUsage(handle))),
        "power_limit_w": watts(get("power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle))),
        "temperature_c": get(
            "temperature_c", lambda: int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        ),
        "utilization_gpu_pct": None if util is None else int(util.gpu),
        "utilization_memory_pct": None if util is None else int(util.memory),
        "pstate": get("pstate", lambda: int(pynvml.nvmlDeviceGetPerformanceState(handle))),
        "clocks_event_bits": bits,
        "clocks_event_reasons": None if bits is None else decode_reasons(bits),
    }
    snap["slowed_by"] = sorted(set(snap["clocks_event_reasons"] or ()) & SLOWDOWNS)
    snap["unsupported"] = unsupported
    return snap


def _text(value: Any) -> str:
    """pynvml returns str (nvidia-ml-py 11.5+) or bytes (older bindings)."""
    return value.decode() if isinstance(value, bytes) else str(value)
