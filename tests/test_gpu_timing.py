"""GPU timing as trtexec does it: CUDA graphs and N streams in the TensorRT runner, phases from CUDA
events, and the GPU's clocks / power / clocks-event reasons from NVML.

Here (no GPU): the reason decoding against pynvml's own constants, NVML's answer on a machine
without a driver, the runner's option checks on a plan standing in for a real one (as in
test_engine.py), and the phase arithmetic. Marked gpu / tensorrt: the same code on a real engine
(scripts/gpu_check.sh runs them).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from resnet_deploy import ConfigError
from resnet_deploy.gpu_env import REASONS, decode_reasons, nvml_probe, nvml_snapshot, nvml_uuid, reason_bits
from resnet_deploy.runtime.trt import MAX_STREAMS, TensorRTRunner, graph_summary, stream_phases
from tests.test_engine import write_plan

# ------------------------------------------------------------------------------ NVML, pure logic


def test_the_reason_table_is_nvmls() -> None:
    """Every reason's bit is pynvml's constant under both its names (clocks-event and the older
    throttle), and no reason pynvml knows in the current namespace is missing but its aliases."""
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py: the reason table is checked against it")
    for name, bit in REASONS:
        assert getattr(pynvml, f"nvmlClocksEventReason{name}") == bit, name
        assert getattr(pynvml, f"nvmlClocksThrottleReason{name}") == bit, name
    assert reason_bits() == REASONS
    known = {bit for _, bit in REASONS}
    aliases = {"None", "All", "UserDefinedClocks"}
    for attr in dir(pynvml):
        if attr.startswith("nvmlClocksEventReason") and attr.removeprefix("nvmlClocksEventReason") not in aliases:
            assert getattr(pynvml, attr) in known, attr
    assert pynvml.nvmlClocksEventReasonAll == sum(known)


def test_decode_reasons_with_pynvml_constants() -> None:
    p = pytest.importorskip("pynvml", reason="nvidia-ml-py: decoded with its own constants")
    assert decode_reasons(p.nvmlClocksEventReasonNone) == []
    assert decode_reasons(p.nvmlClocksEventReasonGpuIdle) == ["GpuIdle"]
    both = p.nvmlClocksEventReasonHwSlowdown | p.nvmlClocksEventReasonSwPowerCap
    assert decode_reasons(both) == ["SwPowerCap", "HwSlowdown"]  # bit order, whatever order they were set in
    thermal = p.nvmlClocksThrottleReasonSwThermalSlowdown | p.nvmlClocksThrottleReasonHwThermalSlowdown
    assert decode_reasons(thermal) == ["SwThermalSlowdown", "HwThermalSlowdown"]
    assert decode_reasons(p.nvmlClocksEventReasonUserDefinedClocks) == ["ApplicationsClocksSetting"]  # an alias
    assert decode_reasons(p.nvmlClocksEventReasonAll) == [name for name, _ in REASONS]
    assert decode_reasons(p.nvmlClocksEventReasonSyncBoost | p.nvmlClocksEventReasonDisplayClockSetting) == [
        "SyncBoost",
        "DisplayClockSetting",
    ]
    # Bits this table does not name (the throttle namespace's BoardLimit, Reliability) are kept.
    assert decode_reasons(p.nvmlClocksThrottleReasonBoardLimit | p.nvmlClocksEventReasonHwPowerBrakeSlowdown) == [
        "HwPowerBrakeSlowdown",
        "unknown(0x200)",
    ]
    for bad in (-1, True, "4", 4.0):
        with pytest.raises(ValueError, match="non-negative int"):
            decode_reasons(bad)  # type: ignore[arg-type]


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(_has_cuda(), reason="a GPU is present: NVML answers (see the gpu-marked test)")
def test_no_gpu_means_no_snapshot_and_a_reason() -> None:
    snap, why = nvml_probe()
    assert snap is None and why is not None
    assert "driver" in why.lower() and "GPU" in why, why
    assert nvml_snapshot() is None and nvml_snapshot(3) is None  # never raises, whatever the index
    assert nvml_snapshot(uuid="0e9c1b36-0000-0000-0000-000000000000") is None


def test_nvml_uuid_spelling() -> None:
    assert nvml_uuid("0e9c1b36-aaaa") == "GPU-0e9c1b36-aaaa"  # as torch prints a device's uuid
    assert nvml_uuid(" GPU-0e9c1b36-aaaa ") == "GPU-0e9c1b36-aaaa"
    assert nvml_uuid("MIG-1234") == "MIG-1234"


def test_missing_nvidia_ml_py_is_a_reason_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # 'import pynvml' now fails as if not installed
    snap, why = nvml_probe()
    assert snap is None and why is not None and "pip install nvidia-ml-py" in why
    assert nvml_snapshot() is None
    assert reason_bits() == REASONS  # decoding still works from nvml.h's values
    assert decode_reasons(0x4 | 0x40) == ["SwPowerCap", "HwThermalSlowdown"]


# --------------------------------------------------------------------- runner, pure logic


def test_streams_and_cuda_graph_are_checked_when_the_runner_is_made(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    for bad in (0, -1, MAX_STREAMS + 1, True, 2.0, "2"):
        with pytest.raises(ConfigError, match=rf"--streams .*must be an integer in 1-{MAX_STREAMS}"):
            TensorRTRunner(plan, streams=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--streams 0"):
        TensorRTRunner(tmp_path / "missing.plan", streams=0)  # options before files
    with pytest.raises(ConfigError, match="cuda_graph must be True or False, got 'yes'"):
        TensorRTRunner(plan, cuda_graph="yes")  # type: ignore[arg-type]
    plain = TensorRTRunner(plan)
    assert plain.streams == 1 and plain.cuda_graph is False
    assert plain.describe()["streams"] == 1 and plain.describe()["cuda_graph"] == "off"
    many = TensorRTRunner(plan, streams=MAX_STREAMS, cuda_graph=True)
    info = many.describe()
    assert many.streams == MAX_STREAMS and info["streams"] == MAX_STREAMS
    assert info["cuda_graph"] == "not captured yet" and info["cuda_graph_batches"] == {}
    x = many.preprocess.zeros(1)
    for call in (many.infer, many.infer_streams, many.infer_timed):
        with pytest.raises(RuntimeError, match="outside its 'with' block"):
            call(x)


def test_stream_phases() -> None:
    """One stream: the plain h2d / compute / d2h. Two streams: h2d until the first may enqueue,
    compute from there to the last stream's end, d2h the tail; the phases add to the GPU time."""
    assert stream_phases([1.0], [5.0], [6.5]) == {"h2d": 1.0, "compute": 4.0, "d2h": 1.5}
    two = stream_phases([1.0, 1.25], [5.0, 8.0], [6.0, 9.5])
    assert two == {"h2d": 1.0, "compute": 7.0, "d2h": 1.5}
    assert sum(two.values()) == 9.5
    # The slower stream's copy-back finishing before the other's compute still counts from the last compute.
    assert stream_phases([0.5, 0.5], [4.0, 3.0], [4.5, 3.25]) == {"h2d": 0.5, "compute": 3.5, "d2h": 0.5}
    for bad in (([], [], []), ([1.0], [2.0, 3.0], [4.0])):
        with pytest.raises(ValueError, match="one event time per stream"):
            stream_phases(*bad)


def test_graph_summary() -> None:
    assert graph_summary(False, ["captured"]) == "off"
    assert graph_summary(True, []) == "not captured yet"
    assert graph_summary(True, ["captured", "captured"]) == "captured"
    assert graph_summary(True, ["captured", "failed: RuntimeError: x", "failed: y"]) == "failed: RuntimeError: x"


# ------------------------------------------------------------------- on a GPU (with TensorRT)


@pytest.mark.gpu
def test_nvml_snapshot_on_a_gpu() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed here: pip install nvidia-ml-py")
    snap, why = nvml_probe()
    assert snap is not None, why
    assert snap["sm_clock_mhz"] > 0 and snap["sm_clock_max_mhz"] >= snap["sm_clock_mhz"]
    assert snap["mem_clock_mhz"] > 0 and snap["mem_clock_max_mhz"] > 0
    assert snap["power_w"] is None or snap["power_w"] > 0, snap
    assert snap["power_limit_w"] is None or snap["power_limit_w"] >= 50, snap
    assert snap["power_w"] is not None or "power_w" in snap["unsupported"]
    assert 0 < snap["temperature_c"] < 120 and snap["driver_version"] and snap["name"]
    assert snap["clocks_event_reasons"] == decode_reasons(snap["clocks_event_bits"])
    assert set(snap["slowed_by"]) <= set(snap["clocks_event_reasons"])
    import torch

    by_uuid, why = nvml_probe(uuid=str(torch.cuda.get_device_properties(0).uuid))  # the GPU torch runs on
    assert by_uuid is not None and by_uuid["name"], why


@pytest.mark.gpu
def test_bench_rows_carry_nvml_around_each_point() -> None:
    """Two CUDA targets interleaved: each point has its own readings, before its first window and
    after its last, on the GPU torch runs on."""
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed here: pip install nvidia-ml-py")
    from resnet_deploy import create_model
    from resnet_deploy.bench import Target, benchmark
    from resnet_deploy.runtime.pyt import TorchRunner

    fp32 = TorchRunner(create_model("resnet20", weights="random"), device="cuda")
    fp16 = TorchRunner(create_model("resnet20", weights="random"), device="cuda", dtype="fp16")
    report = benchmark([Target("fp32", fp32), Target("fp16", fp16)], [1, 4], warmup_s=0.0, iters=6, rounds=3)
    for row in report.rows:
        assert row.gpu_start is not None and row.gpu_end is not None, row
        assert row.gpu_start["sm_clock_mhz"] > 0 and row.gpu_end["time"] > row.gpu_start["time"]
    a, b = report.rows[0], report.rows[1]  # interleaved at batch 1: b starts after a's first window
    assert a.gpu_start is not None and b.gpu_start is not None and a.gpu_start["time"] < b.gpu_start["time"]
    assert report.to_dict()["rows"][0]["gpu_start"]["clocks_event_reasons"] is not None


@pytest.fixture(scope="module")
def r20_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real resnet20 engine, batch 1-16."""
    from resnet_deploy import export_onnx
    from resnet_deploy.engine import build_engine

    work = tmp_path_factory.mktemp("timing")
    export_onnx("resnet20", work / "m.onnx", weights="random")
    return Path(build_engine(work / "m.onnx", work / "m.plan", min_batch=1, opt_batch=4, max_batch=16).path)


def _inputs(runner: TensorRTRunner, batch: int, seed: int) -> np.ndarray:
    return runner.preprocess.random(batch, np.random.default_rng(seed))


@pytest.mark.tensorrt
def test_cuda_graph_replay_equals_plain_enqueue(r20_plan: Path) -> None:
    with TensorRTRunner(r20_plan) as plain, TensorRTRunner(r20_plan, cuda_graph=True) as graphed:
        for batch in (1, 8):
            for seed in (0, 1):  # the second call replays the captured graph on new input data
                x = _inputs(plain, batch, seed)
                want, got = plain.infer(x), graphed.infer(x)
                assert got.shape == (batch, 10) and float(np.abs(got - want).max()) <= 1e-5 * float(np.abs(want).max())
        info = graphed.describe()
        assert info["cuda_graph"] == "captured", info
        assert info["cuda_graph_batches"] == {"1": "captured", "8": "captured"}
        assert plain.describe()["cuda_graph"] == "off"


@pytest.mark.tensorrt
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_two_streams_give_the_same_logits_per_stream(r20_plan: Path, cuda_graph: bool) -> None:
    with TensorRTRunner(r20_plan) as plain, TensorRTRunner(r20_plan, streams=2, cuda_graph=cuda_graph) as two:
        for batch in (1, 8):
            x = _inputs(plain, batch, 2)
            want = plain.infer(x)
            outs = two.infer_streams(x)
            assert len(outs) == 2
            for out in outs:
                assert float(np.abs(out - want).max()) <= 1e-5 * float(np.abs(want).max())
            assert np.allclose(two.infer(x), want, rtol=0, atol=1e-5 * float(np.abs(want).max()))  # first stream
        if cuda_graph:
            assert two.describe()["cuda_graph"] == "captured"


@pytest.mark.tensorrt
@pytest.mark.parametrize(("streams", "cuda_graph"), [(1, False), (1, True), (2, True)])
def test_compute_time_is_within_the_wall_time(r20_plan: Path, streams: int, cuda_graph: bool) -> None:
    with TensorRTRunner(r20_plan, streams=streams, cuda_graph=cuda_graph) as r:
        x = _inputs(r, 8, 3)
        r.warmup(8)
        for _ in range(10):
            t0 = time.perf_counter()
            phases = r.infer_timed(x)
            wall_ms = (time.perf_counter() - t0) * 1000
            assert set(phases) == {"h2d", "compute", "d2h"}
            assert all(v >= 0 for v in phases.values()), phases
            assert 0 < phases["compute"] <= wall_ms, (phases, wall_ms)
            assert sum(phases.values()) <= wall_ms + 0.01, (phases, wall_ms)  # events lie inside the call
