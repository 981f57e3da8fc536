"""ship --tune: candidate configurations served by a real Triton (PyTriton) on loopback, swept with
the live-server load generator, the best one within the p99 budget shipped with its evidence."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from resnet_deploy.cli import app
from resnet_deploy.errors import ConfigError, ShipRefused
from resnet_deploy.records import record_path
from resnet_deploy.ship import ship
from resnet_deploy.triton import validate_config
from resnet_deploy.tune import REPORT_NAME, tune_config
from tests.helpers import assert_one_line_error

runner = CliRunner()
FAST = dict(concurrency=(1, 2), duration_s=1.0, warmup_s=0.3)


@pytest.fixture()
def artifact(digits_onnx: Path, tmp_path: Path) -> Path:
    """A private copy of the trained, verified digits ONNX and its parity record."""
    dst = tmp_path / "digits.onnx"
    dst.write_bytes(digits_onnx.read_bytes())
    record_path(dst).write_text(record_path(digits_onnx).read_text())
    return dst


def served() -> None:
    pytest.importorskip("pytriton", reason='needs the serve extra: pip install "resnet-deploy[serve]"')


@pytest.mark.serve
def test_the_best_candidate_is_shipped_with_its_evidence(artifact: Path, tmp_path: Path) -> None:
    served()
    repo = tmp_path / "repo"
    stages: list[str] = []
    report = tune_config(
        artifact,
        repo,
        latency_budget_ms=5000.0,
        instances=(1,),
        max_queue_delay_us=(0, 2000),
        name="digits",
        progress=stages.append,
        **FAST,  # type: ignore[arg-type]
    )
    assert [c.key for c in report.candidates] == ["1/-/0", "1/-/2000"]
    for c in report.candidates:
        assert c.status == "measured" and c.error is None and c.startup_s and c.startup_s > 0
        assert [r["concurrency"] for r in c.levels] == [1, 2]
        for r in c.levels:
            assert r["requests"] > 0 and r["failures"] == 0 and r["throughput_ips"] > 0
            assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"] < 5000
            # Triton's own count of the measured requests (the last in flight may land after its reading)
            assert r["requests"] - r["concurrency"] <= r["server"]["success"] <= r["requests"]
        assert c.meets_at == [1, 2]  # a budget of 5 s: every level meets it
        top = max(c.levels, key=lambda r: r["throughput_ips"])
        assert c.throughput_ips == top["throughput_ips"] and c.best_concurrency == top["concurrency"]
        assert c.p99_ms == top["latency_p99_ms"] and c.lowest_p99_ms == c.levels[0]["latency_p99_ms"]
    # the rule: the highest value wins (a tie goes to the shorter delay)
    values = [c.throughput_ips or 0.0 for c in report.candidates]
    assert report.chosen == (1 if values[1] > values[0] else 0)
    best = report.candidates[report.chosen]
    assert any("candidate 2/2 (1/-/2000)" in s for s in stages) and any("concurrency 2" in s for s in stages)

    model = repo / "digits"
    text = (model / "config.pbtxt").read_text()
    assert validate_config(text).endswith("ModelConfig")
    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    group = config.instance_group[0]
    assert group.count == 1 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU  # ship's default
    assert report.warnings == [
        "measured with ONNX Runtime on this host's CPU, shipped for KIND_GPU instances: tune on the GPU host, "
        "or ship with --kind cpu"
    ]
    assert config.dynamic_batching.max_queue_delay_microseconds == best.max_queue_delay_us
    assert list(config.dynamic_batching.preferred_batch_size) == []
    header = [line for line in text.splitlines() if line.startswith("#")]
    joined = "\n".join(header)
    assert "p99 budget 5000 ms -> 1 instance(s)" in joined and f"at concurrency {best.best_concurrency}" in joined
    assert f"# tuned by 'ship --tune' {report.date}: host " in joined
    assert "runner onnxruntime (CPUExecutionProvider), grpc batch-1 requests, 1 s per level" in joined
    assert sum("<- chosen" in line for line in header) == 1
    assert any(line.startswith(f"#   {best.key}: c1 ") and line.endswith("<- chosen") for line in header)
    assert any(line.startswith("#   1/-/0: c1 ") for line in header) and any(
        line.startswith("#   1/-/2000: c1 ") for line in header
    )
    assert "!" not in "".join(line for line in header if line.startswith("#   "))  # nothing over budget
    saved = json.loads((model / REPORT_NAME).read_text())
    assert saved["chosen"] == report.chosen and saved["latency_budget_ms"] == 5000.0
    assert [c["key"] for c in saved["candidates"]] == ["1/-/0", "1/-/2000"]
    assert all(len(c["levels"]) == 2 and c["levels"][1]["latency_p99_ms"] > 0 for c in saved["candidates"])
    assert saved["environment"]["runner"]["runner"] == "onnxruntime" and saved["environment"]["cores"] >= 1
    assert saved["ship"]["files"][-1] == "config.pbtxt" and not saved["ship"]["forced"]
    assert sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt", "labels.txt", REPORT_NAME]


@pytest.mark.serve
def test_an_impossible_budget_writes_nothing_and_names_the_closest(artifact: Path, tmp_path: Path) -> None:
    """Through the real command line: exit 1, one line naming the closest candidate, the report on
    stdout with --json, the repository untouched; --tune-max-time-s skips what would not fit."""
    served()
    repo = tmp_path / "repo"
    repo.mkdir()
    args = ["--tune", "--latency-budget", "0.001", "--tune-instances", "1", "--tune-queue-delay-us", "0,2000"]
    args += ["--tune-concurrency", "1", "--tune-duration-s", "0.5", "--tune-max-time-s", "1", "--kind", "cpu"]
    r = subprocess.run(
        [sys.executable, "-m", "resnet_deploy", "ship", str(artifact), "--repo", str(repo), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(
        r.returncode,
        r.stderr,
        "no candidate meets the p99 budget of 0.001 ms",
        "closest: 1 instance(s), preferred batch -, delay 0 us: p99 ",
        "ms at concurrency 1",
        "stopped at --tune-max-time-s",
        "nothing written",
        exit_code=1,
    )
    assert list(repo.iterdir()) == []
    report = json.loads(r.stdout)
    assert report["chosen"] is None and report["config_path"] is None and report["timed_out"] is True
    first, second = report["candidates"]
    assert first["status"] == "measured" and first["meets_at"] == [] and first["levels"][0]["latency_p99_ms"] > 0.001
    assert second["status"] == "skipped" and "--tune-max-time-s 1 reached" in second["error"]


@pytest.mark.serve
def test_ctrl_c_stops_the_server_and_writes_nothing(tmp_path: Path) -> None:
    """SIGINT while a candidate is measured: exit 130 with one line, no repository, no tritonserver left."""
    served()
    from benchmarks.serve_load import _children, alive
    from resnet_deploy import export_onnx

    model = tmp_path / "r20.onnx"
    export_onnx("resnet20", model, weights="random")
    repo = tmp_path / "repo"
    args = ["--force", "--tune", "--latency-budget", "100", "--tune-instances", "1", "--tune-queue-delay-us", "0"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "resnet_deploy",
            "ship",
            str(model),
            "--repo",
            str(repo),
            *args,
            "--tune-duration-s",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not _children(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    kids = _children(proc.pid)
    assert kids, "tritonserver never started"
    time.sleep(8)  # Triton up, the sweep running
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert_one_line_error(proc.returncode, stderr, "interrupted", exit_code=130)
    assert not repo.exists()
    deadline = time.monotonic() + 10
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kids)


def test_ship_refusals_come_before_any_server(artifact: Path, tmp_path: Path) -> None:
    """What ship would refuse is refused before measuring: seconds, not minutes, and no server."""
    repo = tmp_path / "repo"
    ship(artifact, repo, name="digits")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="exists: choose another --version, or --replace it"):
        tune_config(artifact, repo, latency_budget_ms=10, name="digits")
    record_path(artifact).unlink()
    with pytest.raises(ShipRefused, match="has no parity record"):
        tune_config(artifact, tmp_path / "other", latency_budget_ms=10)
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "other").exists()
    with pytest.raises(ConfigError, match="--tune-preferred-batch \\[128\\] exceeds max_batch_size 64"):
        tune_config(artifact, tmp_path / "other", latency_budget_ms=10, preferred_batch=(None, 128), force=True)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"latency_budget_ms": math.inf}, "--latency-budget inf"),
        ({"latency_budget_ms": -1}, "--latency-budget -1"),
        ({"latency_budget_ms": 0}, "--latency-budget 0"),
        ({"latency_budget_ms": 1e9}, "in (0, 600000]"),
        ({"instances": ()}, "--tune-instances: give at least one value"),
        ({"instances": (0,)}, "--instances 0: must be in 1-256"),
        ({"max_queue_delay_us": (-1,)}, "--max-queue-delay-us -1"),
        ({"preferred_batch": (0,)}, "--tune-preferred-batch [0]"),
        ({"concurrency": (0, 2)}, "--tune-concurrency [0, 2]"),
        ({"concurrency": (1000,)}, "levels must be in 1-256"),
        ({"max_candidates": 0}, "--tune-max-candidates 0"),
        ({"instances": (1, 2, 3), "max_candidates": 4}, "9 candidates (3 instance counts x 1 preferred"),
        ({"duration_s": math.nan}, "--tune-duration-s nan"),
        ({"warmup_s": -1}, "--warmup-s -1"),
        ({"max_time_s": 0}, "--tune-max-time-s 0"),
        ({"protocol": "udp"}, "protocol 'udp'"),
        ({"batch": 0}, "batch 0"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path, kwargs: dict[str, Any], needle: str) -> None:
    """Checked before the artifact is even read (this one does not exist)."""
    options: dict[str, Any] = {"latency_budget_ms": 10.0, **kwargs}
    with pytest.raises(ConfigError) as e:
        tune_config(tmp_path / "unread.onnx", tmp_path / "repo", **options)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--tune"], ["--tune needs --latency-budget MS"]),
        (["--latency-budget", "5"], ["--latency-budget applies to --tune"]),
        (["--tune-instances", "1,2"], ["--tune-instances applies to --tune"]),
        (["--tune", "--latency-budget", "-1"], ["--latency-budget -1.0: must be a p99 latency"]),
        (["--tune", "--latency-budget", "nan"], ["--latency-budget nan"]),
        (["--tune", "--latency-budget", "0"], ["--latency-budget 0.0"]),
        (["--tune", "--latency-budget", "5", "--instances", "2"], ["drop --instances"]),
        (["--tune", "--latency-budget", "5", "--max-queue-delay-us", "10"], ["drop --max-queue-delay-us"]),
        (["--tune", "--latency-budget", "5", "--preferred-batch", "4"], ["drop --preferred-batch"]),
        (["--tune", "--latency-budget", "5", "--no-dynamic-batching"], ["drop --no-dynamic-batching"]),
        (["--tune", "--latency-budget", "5", "--tune-instances", "1,x"], ["--tune-instances '1,x'"]),
        (["--tune", "--latency-budget", "5", "--tune-preferred-batch", "none,y"], ["e.g. none,4,8"]),
        (
            ["--tune", "--latency-budget", "5", "--tune-instances", "1,2,3", "--tune-queue-delay-us", "0,1,2,3,4"],
            ["15 candidates", "exceed --tune-max-candidates 12"],
        ),
        (["--tune", "--latency-budget", "5", "--tune-max-candidates", "0"], ["--tune-max-candidates 0"]),
        (["--tune", "--latency-budget", "5", "--tune-concurrency", "1,0"], ["--tune-concurrency [0, 1]"]),
        (["--tune", "--latency-budget", "5", "--tune-duration-s", "-2"], ["--tune-duration-s -2.0"]),
        (["--tune", "--latency-budget", "5", "--tune-max-time-s", "inf"], ["--tune-max-time-s inf"]),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    result = runner.invoke(app, ["ship", str(tmp_path / "unread.onnx"), "--repo", str(tmp_path / "repo"), *args])
    assert_one_line_error(result.exit_code, result.stderr, *needles, exit_code=2)
    assert not (tmp_path / "repo").exists()
