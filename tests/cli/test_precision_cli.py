"""export --precision, convert and their bad inputs through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from resnet_deploy.cli import app
from tests.helpers import assert_one_line_error

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P", "CMYK", "I;16"]
    for i in range(12):
        arr = (rng.random((5, 5, 3)) * 255).astype(np.uint8)
        img = Image.fromarray(arr).resize((48, 40), Image.BICUBIC)
        mode = modes[i % len(modes)]
        if mode == "I;16":
            img = Image.fromarray((np.asarray(img.convert("L"), np.uint16) * 257).astype(np.uint16))
        elif mode != "RGB":
            img = img.convert(mode)
        img.save(root / f"{i:02d}.{'jpg' if mode == 'CMYK' else 'png'}")
    Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(root / "tiny.webp")  # smaller than the crop
    (root / "notes.jpg").write_text("not an image")
    return root


def test_export_fp16_keeps_fp32_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run("export", "-d", "20", "-w", "random", "--precision", "fp16", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["precision"] == "fp16" and report["io_dtype"] == "float32" and report["parity"]["passed"]
    assert report["export"]["parity"]["passed"] and report["path"].endswith("resnet20.fp16.onnx")
    assert sorted(os.listdir(tmp_path)) == [
        "resnet20.fp16.onnx",
        "resnet20.fp16.onnx.parity.json",
        "resnet20.onnx",
        "resnet20.onnx.parity.json",
    ]
    code, out, err = run("export", "-d", "20", "-w", "random", "--precision", "fp16", "--fp16-io", "-o", "half.onnx")
    assert code == 0, err
    model = onnx.load("half.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert (tmp_path / "half.fp32.onnx").exists()


def test_export_int8_with_real_image_folder(tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_DEPLOY_CACHE", str(tmp_path / "cache"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(
        "export",
        "-d",
        "20",
        "-w",
        "random",
        "--precision",
        "int8",
        "--calib",
        str(images),
        "--calib-method",
        "minmax",
        "-o",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    cal = report["calibration"]
    assert report["recipe"] == "tensorrt" and cal["count"] == 13 and cal["skipped"] == 1 and cal["cache"] == "miss"
    assert "skipped 1 unreadable calibration file" in err
    assert sorted(os.listdir(out_dir)) == [
        "resnet20.int8.onnx",
        "resnet20.int8.onnx.parity.json",
        "resnet20.onnx",
        "resnet20.onnx.parity.json",
    ]
    code, out, err = run(
        "convert",
        str(out_dir / "resnet20.onnx"),
        "--precision",
        "int8",
        "--calib",
        str(images),
        "--calib-method",
        "minmax",
        "-o",
        str(out_dir / "again.onnx"),
        "--json",
    )
    assert code == 0 and json.loads(out)["calibration"]["cache"] == "hit"


@pytest.mark.parametrize(
    ("args", "needles", "exit_code"),
    [
        (["--precision", "int8"], ["--precision int8 needs calibration images", "--calib random"], 2),
        (["--precision", "int8", "--calib", "/nonexistent/dir"], ["image folder does not exist"], 1),
        (["--precision", "fp16", "--calib", "random"], ["--calib goes with --precision int8"], 2),
        (["--fp16-io"], ["--fp16-io goes with --precision fp16"], 2),
        (["--precision", "int8", "--calib", "random", "--int8-recipe", "gpu"], ["--int8-recipe"], 2),
        (["--precision", "int8", "--calib", "random", "--calib-method", "kl"], ["--calib-method"], 2),
        (["--precision", "int8", "--calib", "random", "--calib-count", "0"], ["--calib-count 0"], 2),
        (["--precision", "bf16"], ["--precision"], 2),
    ],
)
def test_bad_precision_arguments(tmp_path: Path, args: list[str], needles: list[str], exit_code: int) -> None:
    code, _, err = run("export", "-d", "20", "-w", "random", *args, "-o", str(tmp_path / "m.onnx"))
    assert_one_line_error(code, err, *needles, exit_code=exit_code)
    # at most the verified fp32 model and its record
    assert [p for p in os.listdir(tmp_path) if p not in ("m.onnx", "m.onnx.parity.json")] == []


def test_convert_refuses_converted_models(tmp_path: Path) -> None:
    run("export", "-d", "20", "-w", "random", "-o", str(tmp_path / "m.onnx"))
    code, _, err = run("convert", str(tmp_path / "m.onnx"), "--precision", "fp16")
    assert code == 0, err
    code, _, err = run("convert", str(tmp_path / "m.fp16.onnx"), "--precision", "fp16")
    assert_one_line_error(code, err, "already fp16", exit_code=2)
    code, _, err = run("convert", str(tmp_path / "m.fp16.onnx"), "--precision", "int8", "--calib", "random")
    assert_one_line_error(code, err, "already fp16", exit_code=2)
    code, _, err = run("convert", str(tmp_path / "missing.onnx"), "--precision", "fp16")
    assert_one_line_error(code, err, "file not found", exit_code=2)
    code, _, err = run("convert", str(tmp_path / "m.onnx"), "--precision", "int8", "--calib", "random")
    assert code == 0 and "meaningless" in err
    assert sorted(p for p in os.listdir(tmp_path) if not p.endswith(".parity.json")) == [
        "m.fp16.onnx",
        "m.int8.onnx",
        "m.onnx",
    ]
    assert len([p for p in os.listdir(tmp_path) if p.endswith(".parity.json")]) == 3


def test_calibration_problems_fail_before_the_export(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_text("nope")
    out = tmp_path / "out"
    out.mkdir()
    for calib, needle in ((tmp_path / "empty", "no images"), (tmp_path / "bad", "none of the 1 image files")):
        code, _, err = run(
            "export", "-d", "20", "-w", "random", "--precision", "int8", "--calib", str(calib), "-o", str(out)
        )
        assert_one_line_error(code, err, needle, exit_code=1)
    code, _, err = run(
        "export",
        "-d",
        "20",
        "--precision",
        "int8",
        "--calib",
        "random",
        "--calib-method",
        "percentile",
        "--percentile",
        "50",
        "-o",
        str(out),
    )
    assert_one_line_error(code, err, "--percentile 50.0 must be in [90, 100)", exit_code=2)
    assert os.listdir(out) == []  # nothing was exported


def test_trailing_slash_and_foreign_onnx(tmp_path: Path) -> None:
    import onnx.helper as oh

    code, _, err = run("export", "-d", "20", "-w", "random", "-o", f"{tmp_path}/newdir/")
    assert_one_line_error(code, err, "output folder does not exist", exit_code=2)
    code, _, err = run("export", "-d", "20", "-w", "random", "--precision", "fp16", "-o", f"{tmp_path}/newdir/")
    assert_one_line_error(code, err, "output folder does not exist", exit_code=2)
    assert not (tmp_path / "newdir").exists()
    graph = oh.make_graph(
        [oh.make_node("Relu", ["input"], ["logits"])],
        "g",
        [oh.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 3, 8, 8])],
        [oh.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [None, 3, 8, 8])],
    )
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8), tmp_path / "foreign.onnx")
    for precision in ("fp16", "int8"):
        code, _, err = (
            run("convert", str(tmp_path / "foreign.onnx"), "--precision", precision, "--calib", "random")
            if precision == "int8"
            else run("convert", str(tmp_path / "foreign.onnx"), "--precision", precision)
        )
        assert_one_line_error(code, err, "was not exported by resnet-deploy", exit_code=2)
