"""export --input-format uint8-nhwc through the CLI: names, reports, records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from resnet_deploy.cli import app
from tests.helpers import assert_one_line_error

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_export_pixel_input_human_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("export", "-d", "20", "-w", "random", "--input-format", "uint8-nhwc")
    assert code == 0, err
    assert "input uint8 [batch, 32, 32, 3] pixels" in out and "max diff / max|logit| 0.00e+00" in out
    assert sorted(os.listdir(tmp_path)) == [
        "resnet20.onnx",
        "resnet20.onnx.parity.json",
        "resnet20.uint8-nhwc.onnx",
        "resnet20.uint8-nhwc.onnx.parity.json",
    ]
    code, out, err = run(
        "export",
        "-d",
        "20",
        "-w",
        "random",
        "--input-format",
        "uint8-nhwc",
        "--precision",
        "fp16",
        "-o",
        "m.onnx",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"export", "precision", "pixel_input"}
    assert report["pixel_input"]["path"].endswith("/m.onnx") and report["pixel_input"]["parity"]["passed"]
    assert report["precision"]["path"].endswith("/m.fp16.onnx") and report["export"]["path"].endswith("/m.fp32.onnx")
    model = onnx.load("m.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "fp16" and meta["input_format"] == "uint8-nhwc"
    code, _, err = run("export", "-d", "20", "--input-format", "rgb")
    assert_one_line_error(code, err, "--input-format", exit_code=2)
