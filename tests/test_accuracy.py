"""The accuracy gate: a real trained model on real images, through every precision.

A narrow ResNet-20 from the zoo is trained on scikit-learn's handwritten digits (real 8x8 scans,
upsampled to 32x32 by the toolkit's preprocessing) to >= 95% held-out accuracy, exported, converted
and evaluated in ONNX Runtime on the 360 held-out images.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks.digits import Digits
from resnet_deploy import export_onnx
from resnet_deploy.precision import quantize_int8, run_onnx, to_fp16


@pytest.fixture(scope="module")
def fp32_onnx(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    report = export_onnx(digits.model, out)
    assert report.parity_passed and report.weights.source == "in-memory" and report.weights.trained
    return out


def accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((run_onnx(path, x).argmax(1) == y).mean())


def test_the_trained_model_is_real(digits: Digits) -> None:
    assert digits.torch_accuracy >= 0.95, digits.torch_accuracy
    assert digits.train_seconds < 90  # ~13 s alone on 2 cores; generous for a loaded CI machine
    assert len(digits.x_test) == 360 and len(set(digits.y_test.tolist())) == 10


def test_fp32_onnx_equals_torch(digits: Digits, fp32_onnx: Path) -> None:
    import torch

    with torch.no_grad():
        torch_pred = digits.model(torch.from_numpy(digits.x_test)).argmax(1).numpy()
    onnx_pred = run_onnx(fp32_onnx, digits.x_test).argmax(1)
    assert (onnx_pred == torch_pred).all()
    assert accuracy(fp32_onnx, digits.x_test, digits.y_test) == digits.torch_accuracy


def test_fp16_within_half_a_point(digits: Digits, fp32_onnx: Path) -> None:
    report = to_fp16(fp32_onnx, fp32_onnx.with_name("digits.fp16.onnx"))
    fp32 = accuracy(fp32_onnx, digits.x_test, digits.y_test)
    fp16 = accuracy(Path(report.path), digits.x_test, digits.y_test)
    assert abs(fp16 - fp32) <= 0.005, (fp32, fp16)


@pytest.mark.parametrize("recipe", ["tensorrt", "cpu"])
def test_int8_within_one_point(digits: Digits, fp32_onnx: Path, recipe: str, tmp_path: Path) -> None:
    # Calibrated on the training split's image files, read and preprocessed by the toolkit.
    report = quantize_int8(
        fp32_onnx, tmp_path / f"digits.int8.{recipe}.onnx", digits.train_dir, recipe=recipe, method="entropy", count=512
    )
    assert report.extra["calibration"]["count"] == 512 and report.extra["calibration"]["skipped"] == 0
    fp32 = accuracy(fp32_onnx, digits.x_test, digits.y_test)
    int8 = accuracy(Path(report.path), digits.x_test, digits.y_test)
    assert abs(int8 - fp32) <= 0.01, (recipe, fp32, int8)
    ops = Counter(n.op_type for n in onnx.load(report.path).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]


def test_eval_command_on_every_artifact_kind(digits: Digits, fp32_onnx: Path, tmp_path: Path) -> None:
    import json

    import torch
    from typer.testing import CliRunner

    from resnet_deploy.cli import app

    runner = CliRunner()
    expected = accuracy(fp32_onnx, digits.x_test, digits.y_test)

    def run_eval(*args: str) -> dict[str, object]:
        result = runner.invoke(app, ["eval", *args, "--data", str(digits.test_dir), "--json"])
        assert result.exit_code == 0, result.stderr
        report: dict[str, object] = json.loads(result.stdout)
        return report

    onnx_report = run_eval(str(fp32_onnx), "--batch-size", "50")
    assert onnx_report["count"] == 360 and onnx_report["classes"] == 10 and onnx_report["skipped"] == 0
    assert onnx_report["top1"] == pytest.approx(expected)  # image files -> toolkit preprocessing -> ONNX Runtime
    assert onnx_report["top5"] >= onnx_report["top1"]  # type: ignore[operator]

    torch.save(digits.model.state_dict(), tmp_path / "digits.pth")
    pth_report = run_eval(str(tmp_path / "digits.pth"), "--depth", "20")  # widths and classes read from the file
    assert pth_report["top1"] == pytest.approx(digits.torch_accuracy)
    assert pth_report["runner"]["runner"] == "torch"  # type: ignore[index]

    int8 = quantize_int8(fp32_onnx, tmp_path / "digits.int8.onnx", digits.train_dir, count=256)
    int8_report = run_eval(int8.path, "--limit", "100")
    assert int8_report["count"] == 100 and abs(int8_report["top1"] - expected) <= 0.05  # type: ignore[operator]

    bad = runner.invoke(app, ["eval", str(fp32_onnx), "--data", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and bad.stderr.startswith("error: dataset folder does not exist")
