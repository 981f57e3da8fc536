"""bench: statistics on known samples, interleaving, report schema, files, CLI errors. No speed asserted."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from resnet_deploy import ConfigError, MissingDependencyError, create_model, export_onnx
from resnet_deploy.bench import BenchReport, LatencyStats, Target, benchmark, write_csv, write_plot
from resnet_deploy.cli import app
from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner
from resnet_deploy.runtime.pyt import TorchRunner
from tests.helpers import assert_one_line_error


def test_latency_stats_on_known_samples() -> None:
    s = LatencyStats.of([float(v) for v in range(1, 101)])  # 1..100 ms
    assert (s.count, s.mean, s.min, s.max) == (100, 50.5, 1.0, 100.0)
    assert s.p50 == pytest.approx(50.5) and s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)
    assert s.std == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    one = LatencyStats.of([4.0])
    assert one.std == 0.0 and one.p99 == 4.0
    with pytest.raises(ValueError):
        LatencyStats.of([])


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("b") / "r20.onnx"
    export_onnx("resnet20", path, weights="random")
    return path


def test_interleaved_measurement_and_report(onnx_path: Path) -> None:
    ort_runner = OnnxRuntimeRunner(onnx_path, threads=1)
    torch_runner = TorchRunner(create_model("resnet20", weights="random"), threads=1)
    targets = [Target("ort", ort_runner, 40_000_000), Target("torch", torch_runner, 40_000_000)]
    with ort_runner, torch_runner:
        report = benchmark(targets, [1, 4], warmup_s=0.0, iters=6, rounds=3)
    # Rounds rotate who goes first: A B, B A, A B at each batch size.
    assert report.schedule == [
        (b, r, t)
        for b in (1, 4)
        for r, pair in enumerate([("ort", "torch"), ("torch", "ort"), ("ort", "torch")])
        for t in pair
    ]
    assert [(r.target, r.batch) for r in report.rows] == [("ort", 1), ("torch", 1), ("ort", 4), ("torch", 4)]
    for row in report.rows:
        assert row.latency_ms.count == 6 and row.latency_ms.min <= row.latency_ms.p50 <= row.latency_ms.max
        assert row.throughput_ips == pytest.approx(row.batch / (row.latency_ms.mean / 1000))
        assert row.gflops == pytest.approx(40_000_000 * 2 * row.throughput_ips / 1e9)
    ratios = {(r["target"], r["batch"]): r["speedup"] for r in report.ratios()}
    assert ratios[("ort", 1)] == 1.0 and ratios[("torch", 4)] == pytest.approx(
        report.rows[3].throughput_ips / report.rows[2].throughput_ips
    )
    d = report.to_dict()
    assert {"cpu", "cpu_cores", "python", "torch", "onnx", "threads", "models"} <= set(d["environment"])
    assert set(d["rows"][0]) >= {
        "target",
        "backend",
        "batch",
        "iterations",
        "latency_mean_ms",
        "latency_std_ms",
        "latency_min_ms",
        "latency_p50_ms",
        "latency_p90_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "throughput_ips",
        "gflops",
    }


def test_files_round_trip(onnx_path: Path, tmp_path: Path) -> None:
    runner = OnnxRuntimeRunner(onnx_path, threads=1)
    with runner:
        report = benchmark([Target("ort", runner, 40_000_000)], [1, 2], warmup_s=0.0, iters=3, rounds=1)
    write_csv(report, tmp_path / "b.csv")
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert len(rows) == 2 and [int(r["batch"]) for r in rows] == [1, 2]
    for got, want in zip(rows, report.rows, strict=True):
        assert float(got["latency_p50_ms"]) == pytest.approx(want.latency_ms.p50)
        assert float(got["throughput_ips"]) == pytest.approx(want.throughput_ips)
    png = write_plot(report, tmp_path / "b.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from PIL import Image

    assert Image.open(png).size[0] > 500


def test_cli_bench_json_csv_plot(onnx_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            str(onnx_path),
            "--depth",
            "20",
            "--batch-sizes",
            "1,2",
            "--warmup-s",
            "0",
            "--iters",
            "4",
            "--rounds",
            "2",
            "--threads",
            "1",
            "--json",
            str(tmp_path / "r.json"),
            "--csv",
            str(tmp_path / "r.csv"),
            "--plot",
            str(tmp_path / "r.png"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["target"] for r in report["rows"]] == ["r20.onnx [onnxruntime]", "resnet20 [torch cpu fp32]"] * 2
    assert report["environment"]["threads"] == 1 and report["settings"]["iters"] == 4
    assert len(list(csv.DictReader((tmp_path / "r.csv").open()))) == 4
    assert (tmp_path / "r.png").stat().st_size > 5000
    assert "throughput relative to" in result.stdout
    result = CliRunner().invoke(
        app,
        [
            "bench",
            str(onnx_path),
            "--backend",
            "onnxruntime",
            "--backend",
            "torch",
            "--batch-sizes",
            "1",
            "--warmup-s",
            "0",
            "--iters",
            "2",
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert [r["backend"] for r in json.loads(result.stdout)["rows"]] == ["onnxruntime", "torch"]


def test_bench_errors(onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    export_onnx("resnet20", tmp_path / "b4.onnx", weights="random", batch=4)
    cases = [
        (["bench", str(onnx_path), "--batch-sizes", "0,1"], "--batch-sizes"),
        (["bench", str(tmp_path / "b4.onnx"), "--batch-sizes", "1,8"], "fixed batch of 4: use --batch-sizes 4"),
        (["bench", str(onnx_path), "--iters", "3", "--duration-s", "1"], "--duration-s or --iters, not both"),
        (["bench", str(onnx_path), "--backend", "tensorrt"], "build one first"),
        (["bench"], "nothing to benchmark"),
        (["bench", str(tmp_path / "missing.onnx")], "file not found"),
        (["bench", str(onnx_path), "--plot", str(tmp_path / "nodir" / "p.png")], "output folder does not exist"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, args)
        assert_one_line_error(result.exit_code, result.stderr, needle)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the optional extra were not installed
    result = runner.invoke(app, ["bench", str(onnx_path), "--plot", str(tmp_path / "p.png")])
    assert_one_line_error(result.exit_code, result.stderr, 'pip install "resnet-deploy[plot]"')
    with pytest.raises(MissingDependencyError):
        write_plot(BenchReport({}, {}), tmp_path / "x.png")
    with pytest.raises(ConfigError, match="either a duration or an iteration count, not both"):
        benchmark([Target("x", OnnxRuntimeRunner(onnx_path))], [1], duration_s=1.0, iters=3)


def test_interrupt_saves_what_was_measured(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    exe = Path(sys.executable).parent / "resnet-deploy"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "resnet_deploy.cli"]
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [
            *cmd,
            "bench",
            "--depth",
            "20",
            "--batch-sizes",
            "1,2",
            "--warmup-s",
            "0",
            "--duration-s",
            "60",
            "--rounds",
            "2",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RESNET_DEPLOY_OFFLINE": "1"},
    )
    time.sleep(8)  # inside the first 60 s measurement
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted: the measurements so far are shown and saved")
    report = json.loads(out.read_text())
    assert report["interrupted"] is True and [r["batch"] for r in report["rows"]] == [1]
    assert report["rows"][0]["iterations"] > 10 and "resnet20" in stdout


def test_mixed_sizes_duplicate_names_and_batches(onnx_path: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    export_onnx("resnet20", tmp_path / "a" / "m.onnx", weights="random")
    export_onnx("resnet20", tmp_path / "b" / "m.onnx", weights="random", image_size=48)
    result = CliRunner().invoke(
        app,
        [
            "bench",
            str(tmp_path / "a" / "m.onnx"),
            str(tmp_path / "b" / "m.onnx"),
            "--batch-sizes",
            "2,2,1",
            "--warmup-s",
            "0",
            "--iters",
            "2",
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["target"], r["batch"]) for r in rows] == [
        ("a/m.onnx [onnxruntime]", 2),
        ("b/m.onnx [onnxruntime]", 2),
        ("a/m.onnx [onnxruntime]", 1),
        ("b/m.onnx [onnxruntime]", 1),
    ]
    assert rows[1]["gflops"] / rows[0]["gflops"] == pytest.approx(
        (48 * 48) / (32 * 32) * rows[1]["throughput_ips"] / rows[0]["throughput_ips"], rel=0.05
    )


def test_interrupt_during_warmup_adds_no_row(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    exe = Path(sys.executable).parent / "resnet-deploy"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "resnet_deploy.cli"]
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [
            *cmd,
            "bench",
            "--depth",
            "20",
            "--batch-sizes",
            "1",
            "--warmup-s",
            "60",
            "--iters",
            "5",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RESNET_DEPLOY_OFFLINE": "1"},
    )
    time.sleep(7)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    report = json.loads(out.read_text())
    assert report["interrupted"] is True and report["rows"] == []
