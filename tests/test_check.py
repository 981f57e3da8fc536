"""compare() and `resnet-deploy check`: real runners on the same inputs, real verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from resnet_deploy import ConfigError, create_model, export_onnx
from resnet_deploy.cli import app
from resnet_deploy.parity import Tolerance, compare
from resnet_deploy.precision import quantize_int8, to_fp16
from tests.helpers import assert_one_line_error, write_blob_images
from tests.test_fold import randomize_bn

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_images(tmp_path_factory.mktemp("imgs"), 12)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, images: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("art")
    export_onnx("resnet20", root / "r20.onnx", weights="random", seed=3)
    to_fp16(root / "r20.onnx", root / "r20.fp16.onnx")
    quantize_int8(root / "r20.onnx", root / "r20.int8.onnx", images, cache=False)
    return {"fp32": root / "r20.onnx", "fp16": root / "r20.fp16.onnx", "int8": root / "r20.int8.onnx"}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_precision_passes_against_the_rebuilt_torch_model(
    artifacts: dict[str, Path], images: Path, precision: str
) -> None:
    report = compare(artifacts[precision], "torch", batch_sizes=(1, 8), images=images)
    assert report.passed and report.precision == precision
    assert [r.inputs.split(" (")[0] for r in report.rows] == ["random, batch 1", "random, batch 8", "images"]
    assert report.reference["runner"] == "torch" and report.candidate["runner"] == "onnxruntime"
    if precision == "fp32":
        assert all(r.result.diff_to_scale <= 1e-4 for r in report.rows)


def test_tolerance_overrides_fail_for_real(artifacts: dict[str, Path]) -> None:
    tight = compare(artifacts["int8"], artifacts["fp32"], tolerance=Tolerance(scale_rtol=None, min_cosine=0.99999))
    assert not tight.passed and tight.reference["runner"] == "onnxruntime"
    assert not compare(artifacts["fp16"], "torch", tolerance=Tolerance(scale_rtol=1e-6)).passed


def test_reference_rebuild_is_checked_against_the_weights_hash(tmp_path: Path) -> None:
    net = randomize_bn(create_model("resnet20", weights="random", seed=5))
    torch.save(net.state_dict(), tmp_path / "w.pth")
    export_onnx("resnet20", tmp_path / "f.onnx", weights=tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="pass --weights PATH"):
        compare(tmp_path / "f.onnx")
    assert compare(tmp_path / "f.onnx", weights=str(tmp_path / "w.pth")).passed
    other = randomize_bn(create_model("resnet20", weights="random", seed=6))
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not the ones the artifact was exported from"):
        compare(tmp_path / "f.onnx", weights=str(tmp_path / "other.pth"))
    export_onnx(net, tmp_path / "m.onnx")  # changed in memory after create_model
    with pytest.raises(ConfigError, match="--reference PATH"):
        compare(tmp_path / "m.onnx")
    assert compare(tmp_path / "m.onnx", tmp_path / "f.onnx").passed  # same weights, other artifact


def test_narrow_and_fixed_batch_artifacts(tmp_path: Path) -> None:
    net = create_model("resnet20", weights="random", widths=(8, 16, 32))
    export_onnx(net, tmp_path / "n.onnx")
    assert compare(tmp_path / "n.onnx").passed  # widths recorded in the metadata, reference rebuilt narrow
    export_onnx("resnet20", tmp_path / "b4.onnx", weights="random", batch=4)
    report = compare(tmp_path / "b4.onnx", batch_sizes=(1, 8))
    assert report.passed and any("fixed batch of 4" in n for n in report.notes or [])


def test_check_command(artifacts: dict[str, Path], images: Path) -> None:
    result = runner.invoke(app, ["check", str(artifacts["fp16"]), "--images", str(images), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["precision"] == "fp16" and len(report["results"]) == 3
    for row in report["results"]:
        assert {
            "max_abs_diff",
            "max_rel_diff",
            "mean_abs_diff",
            "cosine_min",
            "top1_agreement",
            "top5_agreement",
        } <= set(row)
    result = runner.invoke(
        app, ["check", str(artifacts["int8"]), "--reference", str(artifacts["fp32"]), "--min-cosine", "0.99999"]
    )
    assert_one_line_error(result.exit_code, result.stderr, "differs from the reference beyond tolerance", exit_code=1)
    assert "FAIL" in result.stdout
    for args, needle in (
        (["--batch-sizes", "0,2"], "--batch-sizes"),
        (["--batch-sizes", "x"], "--batch-sizes"),
        (["--images", "/nonexistent"], "image folder does not exist"),
    ):
        result = runner.invoke(app, ["check", str(artifacts["fp32"]), *args])
        assert_one_line_error(result.exit_code, result.stderr, needle)
    result = runner.invoke(app, ["check", "/nonexistent.onnx"])
    assert_one_line_error(result.exit_code, result.stderr, "file not found")
