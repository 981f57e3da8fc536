"""FP16 and INT8 graphs: asserted on the ONNX itself, not only on outputs."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from PIL import Image

from resnet_deploy import ConfigError, DataError, create_model, export_onnx
from resnet_deploy.precision import (
    FP16_MAX,
    graph_precision,
    load_calibration,
    quantize_int8,
    run_onnx,
    to_fp16,
)
from tests.test_fold import randomize_bn


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "resnet20.onnx"
    export_onnx(randomize_bn(create_model("resnet20", weights="random", seed=3)), out)
    return out


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for i in range(24):
        small = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((40, 36), Image.BICUBIC).save(root / f"{i:02d}.png")
    (root / "nested").mkdir()
    Image.fromarray((rng.random((50, 50)) * 255).astype(np.uint8)).save(root / "nested" / "gray.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "readme.txt").write_text("not an image")
    return root


def nodes(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


# ------------------------------------------------------------------------------------------- FP16


@pytest.mark.parametrize("keep_io", [True, False])
def test_fp16_graph(fp32: Path, tmp_path: Path, keep_io: bool) -> None:
    report = to_fp16(fp32, tmp_path / "m.fp16.onnx", keep_io_types=keep_io)
    model = onnx.load(report.path)
    onnx.checker.check_model(model, full_check=True)
    inits = initializers(model)
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            assert all(inits[i].data_type == TensorProto.FLOAT16 for i in n.input[1:] if i in inits)
    assert not any(t.data_type == TensorProto.FLOAT for t in model.graph.initializer)
    io = TensorProto.FLOAT if keep_io else TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == io
    assert model.graph.output[0].type.tensor_type.elem_type == io
    assert nodes(model)["Cast"] == (2 if keep_io else 0)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert (
        meta["precision"] == "fp16"
        and meta["model"] == "resnet20"
        and meta["input_dtype"] == ("float32" if keep_io else "float16")
    )
    assert graph_precision(model) == "fp16"
    assert report.parity_passed and report.parity[0].cosine_min > 0.999 and report.parity[0].top1_agreement == 1.0
    assert Path(report.path).stat().st_size < 0.6 * fp32.stat().st_size


def test_fp16_clamps_and_counts_out_of_range_weights(tmp_path: Path) -> None:
    net = create_model("resnet20", weights="random")
    import torch

    with torch.no_grad():
        net.fc.bias[:3] = torch.tensor([1e6, -7e4, 5.0])
    export_onnx(net, tmp_path / "big.onnx")
    report = to_fp16(tmp_path / "big.onnx", tmp_path / "big.fp16.onnx", allow_mismatch=True)
    assert report.clamped_weights == 2 and any("clamped" in w for w in report.warnings)
    bias = next(numpy_helper.to_array(t) for t in onnx.load(report.path).graph.initializer if t.dims == [10])
    assert float(bias.max()) == FP16_MAX and float(bias.min()) == -FP16_MAX


def test_fp16_refuses_non_fp32_inputs(fp32: Path, tmp_path: Path) -> None:
    to_fp16(fp32, tmp_path / "a.fp16.onnx")
    with pytest.raises(ConfigError, match="already fp16"):
        to_fp16(tmp_path / "a.fp16.onnx", tmp_path / "b.onnx")
    with pytest.raises(ConfigError, match="file not found"):
        to_fp16(tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="would overwrite its source"):
        to_fp16(fp32, fp32)
    assert sorted(os.listdir(tmp_path)) == ["a.fp16.onnx", "a.fp16.onnx.parity.json"]


# ------------------------------------------------------------------------------------------- INT8


def test_int8_tensorrt_recipe_graph(fp32: Path, calib_dir: Path, tmp_path: Path) -> None:
    # The placement on every weighted layer, the classifier included and in fp32 between the pairs
    # (the default keeps fc float and the rest fp16: tests/test_int8_layout.py).
    report = quantize_int8(
        fp32,
        tmp_path / "m.int8.onnx",
        calib_dir,
        recipe="tensorrt",
        method="minmax",
        cache=False,
        quantize_classifier=True,
        high_precision="fp32",
    )
    model = onnx.load(report.path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 13
    inits, prod = initializers(model), producers(model)
    # No float weight left on any Conv/Gemm: each weight comes from an int8 initializer through
    # DequantizeLinear with per-output-channel scales on axis 0.
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        dq = prod[n.input[1]]
        assert dq.op_type == "DequantizeLinear"
        w, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert w.data_type == TensorProto.INT8
        assert list(scale.dims) == [w.dims[0]] and {a.name: a.i for a in dq.attribute}.get("axis", 1) == 0
        assert prod[n.input[0]].op_type == "DequantizeLinear"  # the activation is quantized too
        # Biases stay float: TensorRT has no INT32 DequantizeLinear and adds bias in float.
        assert len(n.input) < 3 or inits[n.input[2]].data_type == TensorProto.FLOAT
    # Every zero point is int8 and 0 (TensorRT rejects anything else).
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = numpy_helper.to_array(inits[n.input[2]])
            assert zp.dtype == np.int8 and not zp.any()
    # Each residual Add: the residual (skip) input is a dequantized int8 tensor, the other comes
    # straight from its Conv, so TensorRT fuses conv + add + relu (NVIDIA's Q/DQ placement guide).
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert len(adds) == 9
    for add in adds:
        assert sorted(prod[i].op_type for i in add.input) == ["Conv", "DequantizeLinear"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "int8" and meta["int8_recipe"] == "tensorrt" and meta["calibration_method"] == "minmax"
    assert graph_precision(model) == "int8"
    cal = report.extra["calibration"]
    assert cal["count"] == 25 and cal["skipped"] == 1 and cal["skipped_files"][0]["path"].endswith("broken.jpg")
    assert report.parity_passed and report.parity[0].cosine_min > 0.98


def test_int8_cpu_recipe_graph(fp32: Path, calib_dir: Path, tmp_path: Path) -> None:
    report = quantize_int8(fp32, tmp_path / "m.int8.onnx", calib_dir, recipe="cpu", method="percentile", cache=False)
    model = onnx.load(report.path)
    inits = initializers(model)
    act_zps = [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert act_zps and all(z.dtype == np.uint8 for z in act_zps)  # uint8 activations
    prod = producers(model)
    for n in model.graph.node:
        if n.op_type == "Conv":
            assert inits[prod[n.input[1]].input[0]].data_type == TensorProto.INT8  # int8 weights
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    a, b = run_onnx(fp32, x), run_onnx(Path(report.path), x)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.95


def test_calibration_cache_skips_calibration(
    fp32: Path, calib_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESNET_DEPLOY_CACHE", str(tmp_path / "cache"))
    first = quantize_int8(fp32, tmp_path / "a.onnx", calib_dir, method="entropy")
    second = quantize_int8(fp32, tmp_path / "b.onnx", calib_dir, method="entropy")
    assert first.extra["calibration"]["cache"] == "miss" and second.extra["calibration"]["cache"] == "hit"
    assert first.extra["calibration"]["cache_path"] == second.extra["calibration"]["cache_path"]
    assert Path(first.path).read_bytes() == Path(second.path).read_bytes()
    # Another method, recipe or image set is another key.
    other = quantize_int8(fp32, tmp_path / "c.onnx", calib_dir, method="minmax")
    assert other.extra["calibration"]["cache"] == "miss"
    fewer = quantize_int8(fp32, tmp_path / "d.onnx", calib_dir, method="entropy", count=10)
    assert fewer.extra["calibration"]["cache"] == "miss" and fewer.extra["calibration"]["count"] == 10
    assert len(list((tmp_path / "cache" / "calibration").glob("*.json"))) == 3


def test_random_calibration_is_explicit_and_loud(fp32: Path, tmp_path: Path) -> None:
    report = quantize_int8(fp32, tmp_path / "r.onnx", "random", cache=False)
    assert report.extra["calibration"]["source"] == "random"
    assert any("meaningless" in w for w in report.warnings)


def test_calibration_errors(fp32: Path, calib_dir: Path, tmp_path: Path) -> None:
    meta = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    with pytest.raises(DataError, match="image folder does not exist"):
        load_calibration(tmp_path / "nope", meta)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_calibration(tmp_path / "empty", meta)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_calibration(tmp_path / "junk", meta)
    assert load_calibration(calib_dir, meta, count=5).inputs.shape == (5, 3, 32, 32)
    for kwargs, message in (
        ({"recipe": "gpu"}, "unknown int8 recipe 'gpu'"),
        ({"method": "kl"}, "unknown calibration method 'kl'"),
        ({"method": "percentile", "percentile": 100.0}, "percentile 100.0"),
        ({"count": 0}, "calibration count must be a positive integer"),
    ):
        with pytest.raises(ConfigError, match=message):
            quantize_int8(fp32, tmp_path / "x.onnx", calib_dir, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x.onnx").exists()


def test_int8_refuses_quantized_and_fp16_inputs(fp32: Path, calib_dir: Path, tmp_path: Path) -> None:
    quantize_int8(fp32, tmp_path / "q.onnx", calib_dir, cache=False)
    with pytest.raises(ConfigError, match="already int8"):
        quantize_int8(tmp_path / "q.onnx", tmp_path / "qq.onnx", calib_dir)
    with pytest.raises(ConfigError, match="already int8"):
        to_fp16(tmp_path / "q.onnx", tmp_path / "qh.onnx")
    to_fp16(fp32, tmp_path / "h.onnx")
    with pytest.raises(ConfigError, match="already fp16"):
        quantize_int8(tmp_path / "h.onnx", tmp_path / "hq.onnx", calib_dir)
    assert sorted(os.listdir(tmp_path)) == ["h.onnx", "h.onnx.parity.json", "q.onnx", "q.onnx.parity.json"]


def test_projection_shortcuts_keep_the_shortcut_quantized(tmp_path: Path, calib_dir: Path) -> None:
    export_onnx("resnet18", tmp_path / "r18.onnx", weights="random", image_size=32)
    model = onnx.load(quantize_int8(tmp_path / "r18.onnx", tmp_path / "q.onnx", calib_dir, cache=False).path)
    prod = producers(model)
    for add in (n for n in model.graph.node if n.op_type == "Add"):
        kinds = {prod[i].op_type: prod[i] for i in add.input}
        assert set(kinds) == {"Conv", "DequantizeLinear"}
        conv = kinds["Conv"]
        # The fused conv is the main branch's last conv (fed by a ReLU), not the 1x1 projection.
        assert list(numpy_helper.to_array(initializers(model)[prod[conv.input[1]].input[0]]).shape[2:]) == [3, 3]


def test_tensorrt_placement_keeps_relus_fused_and_logits_float(fp32: Path, calib_dir: Path, tmp_path: Path) -> None:
    model = onnx.load(quantize_int8(fp32, tmp_path / "t.onnx", calib_dir, recipe="tensorrt", cache=False).path)
    prod = producers(model)
    # No Q/DQ between a Conv or Add and its ReLU: TensorRT fuses them and quantizes the fused output.
    for n in model.graph.node:
        if n.op_type == "Relu":
            assert prod[n.input[0]].op_type in ("Conv", "Add")
    # The logits come straight from the float classifier (then fp16 -> fp32 I/O), not through int8.
    assert prod["logits"].op_type == "Cast" and prod[prod["logits"].input[0]].op_type == "Gemm"
    cpu = onnx.load(quantize_int8(fp32, tmp_path / "c.onnx", calib_dir, recipe="cpu", cache=False).path)
    assert producers(cpu)["logits"].op_type == "Gemm"


def test_fixed_batch_models_quantize(tmp_path: Path, calib_dir: Path) -> None:
    export_onnx("resnet20", tmp_path / "b4.onnx", weights="random", batch=4)
    report = quantize_int8(tmp_path / "b4.onnx", tmp_path / "b4.int8.onnx", calib_dir, count=10, cache=False)
    assert report.extra["calibration"]["count"] == 8  # whole batches of 4
    model = onnx.load(report.path)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    fp16 = to_fp16(tmp_path / "b4.onnx", tmp_path / "b4.fp16.onnx")
    assert fp16.parity_passed and [r.batch_size for r in fp16.parity] == [4, 8]  # 8: judged across samples
    x = np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32)
    assert run_onnx(Path(report.path), x).shape == (6, 10)  # chunked and padded to the fixed batch


def test_calibration_samples_the_whole_tree(tmp_path: Path, fp32: Path) -> None:
    meta = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    for cls in ("a_first", "m_middle", "z_last"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(tmp_path / cls / f"{i}.png")
    cal = load_calibration(tmp_path, meta, count=9, seed=0)
    assert cal.inputs.shape[0] == 9 and cal.held_out is not None and len(cal.held_out) == 21
    # Not the first nine files in sorted order (all from a_first): the sample spans the classes.
    sorted_first = load_calibration(tmp_path / "a_first", meta, count=9, seed=0).inputs
    assert not np.array_equal(np.sort(cal.inputs.reshape(9, -1), 0), np.sort(sorted_first.reshape(9, -1), 0))


def test_corrupt_cache_entry_is_recomputed(
    fp32: Path, calib_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESNET_DEPLOY_CACHE", str(tmp_path / "cache"))
    first = quantize_int8(fp32, tmp_path / "a.onnx", calib_dir, method="minmax")
    entry = Path(first.extra["calibration"]["cache_path"])
    entry.write_text('{"bad')
    again = quantize_int8(fp32, tmp_path / "b.onnx", calib_dir, method="minmax")
    assert again.extra["calibration"]["cache"] == "miss" and any("unreadable" in w for w in again.warnings)
    assert Path(again.path).read_bytes() == Path(first.path).read_bytes()
    monkeypatch.setenv("RESNET_DEPLOY_CACHE", str(entry))  # a file, not a folder
    off = quantize_int8(fp32, tmp_path / "c.onnx", calib_dir, method="minmax")
    assert off.extra["calibration"]["cache"] == "off" and any("cache disabled" in w for w in off.warnings)
