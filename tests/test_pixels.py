"""uint8 NHWC pixel input inside the graph: the graph itself, its parity and its use everywhere."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from resnet_deploy import ConfigError, create_model, export_onnx
from resnet_deploy.data import Preprocess, load_image
from resnet_deploy.parity import compare
from resnet_deploy.pixels import add_pixel_input
from resnet_deploy.precision import quantize_int8, run_onnx, to_fp16
from resnet_deploy.records import read_record, record_path
from resnet_deploy.weights import sha256_file
from tests.test_fold import randomize_bn


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("px") / "r20.onnx"
    export_onnx(randomize_bn(create_model("resnet20", weights="random", seed=5)), out)
    return out


def test_graph_takes_uint8_nhwc_and_normalises_inside(fp32: Path) -> None:
    report = add_pixel_input(fp32)
    out = Path(report.path)
    assert out.name == "r20.uint8-nhwc.onnx" and report.parity_passed
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    (inp,) = model.graph.input
    t = inp.type.tensor_type
    assert t.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in t.shape.dim] == ["batch", 32, 32, 3]
    ops = [n.op_type for n in model.graph.node[:4]]
    assert ops == ["Cast", "Transpose", "Mul", "Add"]
    src_ops = Counter(n.op_type for n in onnx.load(str(fp32)).graph.node)
    new_ops = Counter(n.op_type for n in model.graph.node)
    assert new_ops - src_ops == Counter({"Cast": 1, "Transpose": 1, "Mul": 1, "Add": 1})
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["input_format"] == "uint8-nhwc" and meta["input_layout"] == "NHWC"
    assert meta["pixel_source_sha256"] == sha256_file(fp32)


def test_outputs_equal_the_float_path_on_real_image_pixels(fp32: Path, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    files = []
    for i in range(6):  # different sizes and aspect ratios: resize + crop happen on the client
        arr = rng.integers(0, 256, (20 + 7 * i, 50 - 3 * i, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    px = Path(add_pixel_input(fp32, tmp_path / "px.onnx").path)
    pre = Preprocess.from_metadata(
        {p.key: p.value for p in onnx.load(str(px), load_external_data=False).metadata_props}
    )
    assert pre.pixels
    pixels = np.stack([pre(load_image(f)) for f in files])
    assert pixels.dtype == np.uint8 and pixels.shape == (6, 32, 32, 3)
    floats = np.stack([pre.as_float()(load_image(f)) for f in files])  # the float path's own transform
    a, b = run_onnx(px, pixels), run_onnx(fp32, floats)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()
    assert (a.argmax(1) == b.argmax(1)).all()
    # the in-graph arithmetic is the numpy one bit for bit
    assert np.array_equal(run_onnx(px, pixels), run_onnx(fp32, pre.normalize(pixels)))


def test_record_and_check_against_torch(fp32: Path, tmp_path: Path) -> None:
    px = Path(add_pixel_input(fp32, tmp_path / "px.onnx").path)
    record = read_record(px)
    assert record is not None and record.passed and record.step == "pixel-input"
    assert record.sha256 == sha256_file(px)
    # check vs an fp32 artifact: random pixels, normalised for the float reference
    report = compare(px, fp32, batch_sizes=(1, 4))
    assert report.passed and [r.inputs for r in report.rows] == ["random pixels, batch 1", "random pixels, batch 4"]
    assert all(r.result.max_abs_diff == 0.0 for r in report.rows)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_any_precision_takes_pixels(fp32: Path, tmp_path: Path, precision: str) -> None:
    if precision == "fp16":
        src = Path(to_fp16(fp32, tmp_path / "m.fp16.onnx", keep_io_types=False).path)  # fp16 input: a Cast added
    else:
        src = Path(quantize_int8(fp32, tmp_path / "m.int8.onnx", "random", count=16).path)
    report = add_pixel_input(src)
    assert report.parity_passed and report.precision == precision
    from resnet_deploy.metrics import FP32_TOLERANCE
    from resnet_deploy.precisions import precision_spec

    fp16_gate = precision_spec("fp16").gate("random", trained=False)
    want = fp16_gate if precision == "fp16" else FP32_TOLERANCE
    assert report.tolerance == want.describe()  # fp16 input: ORT may fuse the fp16 Cast (one fp16 rounding apart)
    model = onnx.load(report.path)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    if precision == "fp16":
        assert model.graph.node[4].op_type == "Cast"  # to fp16 after the fp32 normalisation


def test_refusals(fp32: Path, tmp_path: Path) -> None:
    px = Path(add_pixel_input(fp32, tmp_path / "px.onnx").path)
    with pytest.raises(ConfigError, match="already takes uint8-nhwc"):
        add_pixel_input(px, tmp_path / "again.onnx")
    with pytest.raises(ConfigError, match="convert its float-input model"):
        to_fp16(px, tmp_path / "px.fp16.onnx")
    with pytest.raises(ConfigError, match="overwrite its source"):
        add_pixel_input(fp32, fp32)


def test_record_is_rewritten_by_a_new_export(fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    export_onnx(create_model("resnet20", weights="random", seed=1), out)
    first = json.loads(record_path(out).read_text())
    assert first["passed"] is True and first["step"] == "export" and first["weights_trained"] is False
    export_onnx(create_model("resnet20", weights="random", seed=2), out)
    second = json.loads(record_path(out).read_text())
    assert second["sha256"] == sha256_file(out) != first["sha256"]


def test_check_against_torch_and_eval_on_real_images(digits: Any, digits_onnx: Path, tmp_path: Path) -> None:
    from resnet_deploy.evaluation import evaluate

    px = Path(add_pixel_input(digits_onnx, tmp_path / "digits.px.onnx").path)
    from resnet_deploy.runtime import TorchRunner

    # the PyTorch model itself (in memory: "torch" cannot rebuild it from metadata), fed floats
    report = compare(px, TorchRunner(digits.model), batch_sizes=(1, 8), images=digits.test_dir, max_images=64)
    assert report.passed, [r.to_dict() for r in report.rows]
    assert report.rows[0].inputs == "random pixels, batch 1" and report.rows[-1].inputs.startswith("images (64")
    assert all(r.result.diff_to_scale < 1e-5 for r in report.rows)
    a, b = evaluate(px, digits.test_dir), evaluate(digits_onnx, digits.test_dir)
    assert a.top1 == b.top1 >= 0.95
