"""OpenVINO as a backend, on the real OpenVINO runtime (the ``openvino`` extra, part of ``dev``).

The trained digits ResNet-20 and its fp16 and int8 conversions (both int8 recipes) run on
OpenVINO's CPU plugin and are judged with the toolkit's own parity gate against ONNX Runtime on
the fp32 ONNX; a model with other weights fails that gate on OpenVINO. The commands (check, eval,
predict, bench) take ``--backend openvino``; bad input is one line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from resnet_deploy.check import compare
from resnet_deploy.cli import app
from resnet_deploy.errors import ConfigError
from resnet_deploy.precision import quantize_int8, to_fp16
from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner
from resnet_deploy.runtime.openvino import OpenVINORunner
from resnet_deploy.runtime.registry import open_backend
from tests.helpers import assert_one_line_error

pytest.importorskip("openvino", reason='needs OpenVINO (pip install "resnet-deploy[openvino]")')

cli = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> tuple[int, str, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def other_weights(src: Path, dst: Path) -> Path:
    """``src`` with other weights: every convolution's weight tensor (fp32 or int8) shuffled with a
    fixed seed, so each layer keeps its distribution of values but computes something else."""
    model = onnx.load(str(src))
    rng = np.random.default_rng(1)
    for i, init in enumerate(model.graph.initializer):
        if len(init.dims) == 4:
            w = numpy_helper.to_array(init)
            shuffled = rng.permutation(w.reshape(-1)).reshape(w.shape)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(shuffled, init.name))
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def models(digits: Any, digits_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The digits model at every precision, and copies of it with other weights."""
    root = tmp_path_factory.mktemp("openvino")
    fp32 = Path(shutil.copy(digits_onnx, root / "digits.onnx"))
    shutil.copy(f"{digits_onnx}.parity.json", root / "digits.onnx.parity.json")

    def int8(recipe: str) -> Path:  # kept when ONNX Runtime's conversion gate is marginal: judged below
        dst = root / f"digits.{recipe}.int8.onnx"
        calib = digits.train_dir
        return Path(
            quantize_int8(fp32, dst, calibration=calib, recipe=recipe, count=64, cache=False, allow_mismatch=True).path
        )

    int8_cpu = int8("cpu")
    return {
        "fp32": fp32,
        "fp16": Path(to_fp16(fp32, allow_mismatch=True).path),
        "int8-cpu": int8_cpu,
        "int8-tensorrt": int8("tensorrt"),  # symmetric Q/DQ with an fp16 remainder (fp16 scales)
        "wrong": other_weights(fp32, root / "wrong" / "digits.onnx"),
        "wrong-int8": other_weights(int8_cpu, root / "wrong" / "digits.cpu.int8.onnx"),
    }


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-cpu", "int8-tensorrt"])
def test_parity_with_onnxruntime_by_the_gate(precision: str, models: dict[str, Path], digits: Any) -> None:
    """Each artifact on OpenVINO against ONNX Runtime on the fp32 ONNX, judged by its precision's
    gate on random inputs and the held-out digits (fp32: max|diff| <= 1e-4 x max|logit|)."""
    candidate = OpenVINORunner(models[precision], threads=2)
    report = compare(candidate, OnnxRuntimeRunner(models["fp32"], threads=2), images=digits.test_dir, max_images=64)
    assert report.passed, [(r.inputs, r.result) for r in report.rows]
    assert report.candidate["runner"] == "openvino" and report.reference["runner"] == "onnxruntime"
    if precision == "fp32":
        assert max(r.result.diff_to_scale for r in report.rows) <= 1e-4
    images = report.rows[-1].result
    assert images.batch_size == 64 and images.top1_agreement >= 0.95
    kernels = report.candidate["compiled"]["layer_precisions"]
    if precision.startswith("int8"):  # the Q/DQ graph really runs int8 convolutions
        assert sum(n for k, n in kernels.items() if k.startswith("Convolution") and k[-2:] in ("u8", "i8")) == 19
    else:
        assert kernels.get("Convolution u8", 0) == 0


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_gate_fails_other_weights_on_openvino(precision: str, models: dict[str, Path], digits: Any) -> None:
    wrong = models["wrong" if precision == "fp32" else "wrong-int8"]
    report = compare(
        OpenVINORunner(wrong, threads=2), OnnxRuntimeRunner(models["fp32"]), images=digits.test_dir, max_images=64
    )
    assert not report.passed
    images = report.rows[-1].result
    assert not images.passed and images.top1_agreement < 0.5


def test_settings_are_recorded_and_every_batch_runs_on_one_compiled_model(models: dict[str, Path]) -> None:
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32), dtype=np.float32)
    with OpenVINORunner(models["fp32"], threads=1, hint="latency") as latency:
        compiled = latency._compiled
        whole = latency.infer(x)
        parts = [latency.infer(x[:1]), latency.infer(x[1:4]), latency.infer(x[4:])]
        assert latency._compiled is compiled  # no compile per batch size
        desc = latency.describe()
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-5)
    assert desc["threads"] == 1 and desc["hint"] == "latency" and desc["requests"] == 1
    chosen = desc["compiled"]
    assert chosen["PERFORMANCE_HINT"] == "LATENCY" and chosen["INFERENCE_NUM_THREADS"] == 1
    assert chosen["INFERENCE_PRECISION_HINT"] == "f32"  # forced for an fp32 artifact (not bf16/fp16)
    assert chosen["NUM_STREAMS"] == 1 and chosen["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] == 1

    with OpenVINORunner(models["fp32"], threads=2, hint="throughput") as throughput:
        desc = throughput.describe()
        np.testing.assert_allclose(throughput.infer(x), whole, rtol=1e-5, atol=1e-5)  # split over requests
    chosen = desc["compiled"]
    assert chosen["PERFORMANCE_HINT"] == "THROUGHPUT" and desc["requests"] == chosen["OPTIMAL_NUMBER_OF_INFER_REQUESTS"]
    assert chosen["NUM_STREAMS"] >= 1 and chosen["INFERENCE_NUM_THREADS"] == 2

    with OpenVINORunner(models["int8-cpu"], threads=1) as default:  # OpenVINO's own defaults, recorded
        desc = default.describe()
    assert desc["hint"] is None and desc["compiled"]["PERFORMANCE_HINT"] in ("LATENCY", "THROUGHPUT")
    assert desc["compiled"]["INFERENCE_PRECISION_HINT"] in ("f32", "bf16", "f16")


def test_bad_settings_and_artifacts_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--hint 'fast': choose one of latency, throughput"):
        OpenVINORunner(models["fp32"], hint="fast")
    with pytest.raises(ConfigError, match="--threads 0"):
        OpenVINORunner(models["fp32"], threads=0)
    with pytest.raises(ConfigError, match="--hint applies to --backend openvino, not onnxruntime"):
        open_backend(models["fp32"], "onnxruntime", hint="latency")
    with pytest.raises(ConfigError, match="--hint applies to --backend openvino, not onnxruntime"):
        open_backend(models["fp32"], hint="throughput")  # auto picks ONNX Runtime for an ONNX
    for name in ("digits.pth", "digits.plan"):
        (tmp_path / name).write_bytes(b"\0" * 16)
        with pytest.raises(ConfigError, match=f"backend openvino runs .onnx files, not {name}"):
            open_backend(tmp_path / name, "openvino")
    with OpenVINORunner(models["fp32"]) as ov, pytest.raises(ConfigError, match=r"expected input \[n, 3, 32, 32\]"):
        ov.infer(np.zeros((1, 3, 64, 64), np.float32))


def _unsupported(src: Path, dst: Path) -> Path:
    """``src`` with its classifier replaced by an operator of a domain OpenVINO has no rule for."""
    model = onnx.load(str(src))
    node = model.graph.node[-1]
    node.op_type, node.domain = "Classify", "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(model, str(dst))
    return dst


def test_cli_bad_input_is_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \xff\xfe" * 8)
    code, _, err = run("check", str(garbage), "--backend", "openvino")
    assert_one_line_error(code, err, "garbage.onnx is not a readable ONNX model", exit_code=2)

    unsupported = _unsupported(models["fp32"], tmp_path / "unsupported.onnx")
    code, _, err = run("predict", str(unsupported), str(tmp_path), "--backend", "openvino")
    assert_one_line_error(code, err, "openvino cannot read unsupported.onnx", "com.example.Classify")

    (tmp_path / "digits.pth").write_bytes(b"\0" * 16)
    code, _, err = run("predict", str(tmp_path / "digits.pth"), str(tmp_path), "--backend", "openvino")
    assert_one_line_error(code, err, "backend openvino runs .onnx files, not digits.pth", exit_code=2)
    code, _, err = run("check", str(models["fp32"]), "--backend", "openvino", "--provider", "cuda")
    assert_one_line_error(code, err, "--provider applies to --backend onnxruntime, not openvino", exit_code=2)
    code, _, err = run("check", str(models["fp32"]), "--backend", "openvino", "--layers")
    assert_one_line_error(code, err, "drop --backend", exit_code=2)
    code, _, err = run("eval", str(models["fp32"]), "--data", str(tmp_path), "--backend", "tensorflow")
    assert code == 2 and "tensorflow" in err


def test_missing_openvino_names_the_extra(models: dict[str, Path]) -> None:
    """The real missing-import path: ``import openvino`` fails in a fresh interpreter."""
    code = (
        "import sys; sys.modules['openvino'] = None; from resnet_deploy.cli import main; "
        f"sys.argv = ['resnet-deploy', 'check', {str(models['fp32'])!r}, '--backend', 'openvino']; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(done.returncode, done.stderr, 'pip install "resnet-deploy[openvino]"', "openvino")


def test_check_eval_predict_bench_on_openvino(models: dict[str, Path], digits: Any) -> None:
    int8, record = models["int8-cpu"], Path(f"{models['int8-cpu']}.parity.json")
    before = record.read_bytes()
    code, out, err = run(
        "check", str(int8), "--backend", "openvino", "--reference", str(models["fp32"]),
        "--images", str(digits.test_dir), "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] and report["candidate"]["runner"] == "openvino"
    assert record.read_bytes() == before  # the record vouches for the artifact on ONNX Runtime
    assert "no parity record written" in err

    def top1(backend: str, artifact: Path) -> float:
        code, out, err = run("eval", str(artifact), "--data", str(digits.test_dir), "--backend", backend, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["runner"]["runner"] == backend
        return float(report["top1"])

    for artifact in (models["fp32"], int8):
        assert abs(top1("openvino", artifact) - top1("onnxruntime", artifact)) <= 0.01

    images = sorted(str(p) for p in (digits.test_dir / "3").iterdir())[:4]
    answers = {}
    for backend in ("openvino", "onnxruntime"):
        code, out, err = run("predict", str(models["fp32"]), *images, "--backend", backend, "--json")
        assert code == 0, err
        answers[backend] = json.loads(out)
        assert answers[backend]["runner"]["runner"] == backend
    for a, b in zip(answers["openvino"]["predictions"], answers["onnxruntime"]["predictions"], strict=True):
        assert a["indices"] == b["indices"]
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-5)

    code, out, err = run(
        "bench", str(int8), "--backend", "openvino", "--backend", "onnxruntime", "--iters", "3",
        "--batch-sizes", "1,4", "--warmup-s", "0", "--threads", "2", "--json", "-",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert {(r["backend"], r["batch"]) for r in rows} == {(b, n) for b in ("openvino", "onnxruntime") for n in (1, 4)}
    assert all(r["iterations"] == 3 and r["throughput_ips"] > 0 for r in rows)
