"""export_onnx end to end: real exports, real ONNX checks, real ONNX Runtime sessions."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from resnet_deploy import ConfigError, ExportError, ParityError, create_model, export_onnx, list_models, read_metadata
from resnet_deploy.layer_names import recorded_layers
from resnet_deploy.parity import Tolerance
from resnet_deploy.weights import state_dict_sha256
from tests.test_fold import randomize_bn

REQUIRED_METADATA = {
    "model", "depth", "variant", "shortcut", "num_classes", "weights", "weights_source", "weights_trained",
    "weights_sha256", "image_size", "mean", "std", "toolkit_version", "torch_version", "opset", "batch",
}  # fmt: skip


def small_size(name: str) -> int:
    return 32 if name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110") else 64


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (out,) = sess.run(["logits"], {"input": x})
    return np.asarray(out)


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def assert_clean_graph(
    path: Path, num_classes: int, size: tuple[int, int], batch: int | str = "batch"
) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["BatchNormalization"] == 0 and ops["Identity"] == 0
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(model.graph.input[0]) == [batch, 3, *size]
    assert dims(model.graph.output[0]) == [batch, num_classes]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    return model


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_exports_and_matches_torch(name: str, tmp_path: Path) -> None:
    size = small_size(name)
    net = randomize_bn(create_model(name, weights="random", seed=1))
    report = export_onnx(net, tmp_path, image_size=size)
    path = tmp_path / f"{name}.onnx"
    assert report.path == str(path.resolve()) and path.is_file()
    assert report.parity_passed and [r.batch_size for r in report.parity] == [1, 8]
    assert all(r.diff_to_scale <= 1e-4 and r.top1_agreement == 1.0 for r in report.parity)
    num_classes = 10 if size == 32 else 1000
    model = assert_clean_graph(path, num_classes, (size, size))
    assert report.nodes_by_op == dict(Counter(n.op_type for n in model.graph.node))
    assert report.nodes_by_op["Conv"] == sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    # Every conv, the classifier and each block are named by their torchvision module names.
    layers = recorded_layers(model)
    convs = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert set(convs) | {"fc", "avgpool", "layer1.0", "layer3.1"} <= set(layers) and layers[-1] == "fc"
    assert {n.name for n in model.graph.node if n.op_type == "Conv"} == set(convs)
    assert report.file_size_bytes == path.stat().st_size

    # An independent check at a batch size the exporter never saw.
    x = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(42))
    with torch.no_grad():
        ref = net(x).numpy()
    out = ort_run(path, x.numpy())
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()

    meta = read_metadata(path)
    assert set(meta) >= REQUIRED_METADATA
    assert meta["model"] == name and meta["depth"] == name.removeprefix("resnet")
    # randomize_bn changed the weights after create_model: recorded as in-memory, by their hash.
    assert meta["weights_source"] == "in-memory" and meta["weights_trained"] == "true"
    assert meta["image_size"] == f"{size}x{size}" and meta["batch"] == "dynamic"
    assert meta["weights_sha256"] == report.weights.state_sha256 == state_dict_sha256(net.state_dict())
    # no temp files left behind; the parity record beside the artifact
    assert sorted(os.listdir(tmp_path)) == [f"{name}.onnx", f"{name}.onnx.parity.json"]


def test_resnet50_defaults_at_224(tmp_path: Path) -> None:
    report = export_onnx("resnet50", tmp_path / "r50.onnx", weights="random")
    model = assert_clean_graph(tmp_path / "r50.onnx", 1000, (224, 224))
    assert report.params == 25_557_032 and report.gmacs == pytest.approx(4.089, abs=1e-3)
    assert report.nodes_by_op["Conv"] == 53 and report.nodes_by_op["Add"] == 16
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["mean"] == "0.485,0.456,0.406" and meta["std"] == "0.229,0.224,0.225"
    assert meta["variant"] == "v1.5" and meta["shortcut"] == "B" and meta["resize_size"] == "256"
    assert model.opset_import[0].version == 18
    assert 95e6 < report.file_size_bytes < 110e6  # fp32 weights inside the file


@pytest.mark.parametrize(
    ("kwargs", "num_classes", "size"),
    [
        ({"model": "resnet50", "variant": "v1", "image_size": 64}, 1000, (64, 64)),
        ({"model": "resnet50", "shortcut": "A", "image_size": 64}, 1000, (64, 64)),
        ({"model": "resnet18", "shortcut": "C", "image_size": "96x64"}, 1000, (96, 64)),
        ({"model": "resnet20", "shortcut": "B", "num_classes": 100}, 100, (32, 32)),
        ({"model": 56, "image_size": 40}, 10, (40, 40)),
    ],
)
def test_variants_and_options(
    tmp_path: Path, kwargs: dict[str, object], num_classes: int, size: tuple[int, int]
) -> None:
    model = kwargs.pop("model")
    report = export_onnx(model, tmp_path / "m.onnx", weights="random", **kwargs)  # type: ignore[arg-type]
    assert report.parity_passed
    assert_clean_graph(tmp_path / "m.onnx", num_classes, size)
    meta = read_metadata(tmp_path / "m.onnx")
    for key in ("variant", "shortcut"):
        if key in kwargs:
            assert meta[key] == kwargs[key]


def test_fixed_batch(tmp_path: Path) -> None:
    report = export_onnx("resnet20", tmp_path / "b4.onnx", weights="random", batch=4)
    assert_clean_graph(tmp_path / "b4.onnx", 10, (32, 32), batch=4)
    assert [r.batch_size for r in report.parity] == [4, 8] and read_metadata(tmp_path / "b4.onnx")["batch"] == "4"
    with pytest.raises(Exception, match="(?i)dimension|shape|index"):
        ort_run(tmp_path / "b4.onnx", np.zeros((2, 3, 32, 32), np.float32))


def test_torchscript_exporter_for_old_opsets(tmp_path: Path) -> None:
    report = export_onnx("resnet18", tmp_path / "o13.onnx", weights="random", image_size=64, opset=13)
    assert report.exporter == "torchscript" and report.parity_passed
    model = assert_clean_graph(tmp_path / "o13.onnx", 1000, (64, 64))
    assert model.opset_import[0].version == 13
    # Both exporters compute the same function.
    export_onnx("resnet18", tmp_path / "o18.onnx", weights="random", image_size=64, exporter="dynamo")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    a, b = ort_run(tmp_path / "o13.onnx", x), ort_run(tmp_path / "o18.onnx", x)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


def test_trained_weights_file_is_recorded(tmp_path: Path) -> None:
    state = randomize_bn(create_model("resnet18", weights="random", seed=5)).state_dict()
    torch.save({"state_dict": state}, tmp_path / "trained.pth")
    export_onnx("resnet18", tmp_path / "t.onnx", weights=tmp_path / "trained.pth", image_size=64)
    meta = read_metadata(tmp_path / "t.onnx")
    assert meta["weights_source"] == "file" and meta["weights_trained"] == "true"
    assert meta["weights_file"] == "trained.pth" and len(meta["weights_file_sha256"]) == 64


def test_parity_failure_writes_nothing(tmp_path: Path) -> None:
    impossible = Tolerance(scale_rtol=0.0, min_cosine=1.0)  # bit-exact: ORT and PyTorch never are
    with pytest.raises(ParityError, match="ONNX Runtime output differs from PyTorch.*nothing was written") as exc:
        export_onnx("resnet20", tmp_path / "bad.onnx", weights="random", tolerance=impossible)
    assert exc.value.report is not None and exc.value.report.parity_passed is False
    assert os.listdir(tmp_path) == []

    report = export_onnx("resnet20", tmp_path / "bad.onnx", weights="random", tolerance=impossible, allow_mismatch=True)
    assert not report.parity_passed and (tmp_path / "bad.onnx").exists()
    assert any("--allow-mismatch" in w for w in report.warnings)


def test_failed_export_keeps_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous artifact")
    with pytest.raises(ParityError):
        export_onnx("resnet20", target, weights="random", tolerance=Tolerance(scale_rtol=0.0, min_cosine=1.0))
    assert target.read_bytes() == b"previous artifact"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 16}, "image size 16x16 is too small for resnet18: .* at least 32"),
        ({"image_size": "64x8"}, "too small"),
        ({"image_size": "big"}, "image size 'big' is not a number"),
        ({"batch": 0}, "batch 0: a fixed batch size must be a positive integer"),
        ({"batch": "lots"}, "batch 'lots'"),
        ({"opset": 9}, "opset 9 is not supported"),
        ({"opset": 16, "exporter": "dynamo"}, "dynamo exporter emits opset >= 18"),
        ({"exporter": "tf2onnx"}, "unknown exporter"),
    ],
)
def test_bad_export_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        export_onnx("resnet18", tmp_path / "m.onnx", weights="random", **kwargs)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_bad_output_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="output folder does not exist"):
        export_onnx("resnet20", tmp_path / "missing" / "m.onnx", weights="random")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="output folder is not a folder"):
        export_onnx("resnet20", tmp_path / "file" / "m.onnx", weights="random")
    unwritable = Path("/sys") if os.geteuid() == 0 else tmp_path / "ro"
    if unwritable != Path("/sys"):
        unwritable.mkdir()
        unwritable.chmod(0o500)
    with pytest.raises(ConfigError, match="output folder is not writable"):
        export_onnx("resnet20", unwritable / "m.onnx", weights="random")


def test_model_objects_record_what_is_exported(tmp_path: Path) -> None:
    net = create_model("resnet20", weights="random", seed=4)
    first = export_onnx(net, tmp_path / "a.onnx")
    meta = read_metadata(tmp_path / "a.onnx")
    assert meta["weights_source"] == "random" and meta["weights_seed"] == "4" and meta["weights_trained"] == "false"

    net.train()
    with torch.no_grad():
        net.fc.bias.add_(1.0)  # "fine-tuned" in memory
    report = export_onnx(net, tmp_path / "b.onnx")
    meta = read_metadata(tmp_path / "b.onnx")
    assert meta["weights_source"] == "in-memory" and meta["weights_trained"] == "true"
    assert meta["weights_sha256"] == report.weights.state_sha256 == state_dict_sha256(net.state_dict())
    assert meta["weights_sha256"] != first.weights.state_sha256
    assert net.training  # the caller's mode is restored
    with pytest.raises(ConfigError, match="weights, num_classes: pass these to create_model"):
        export_onnx(net, tmp_path / "c.onnx", weights="random", num_classes=100)


def test_non_finite_weights_are_named(tmp_path: Path) -> None:
    net = create_model("resnet20", weights="random")
    with torch.no_grad():
        net.fc.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match=r"NaN or Inf \(in fc.weight\)"):
        export_onnx(net, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 32.0}, "image size 32.0 is not a number"),
        ({"batch": 2.7}, "batch 2.7"),
        ({"batch": True}, "batch True"),
        ({"batch": 100_000}, "at most 4096"),
        ({"opset": 23}, "opset 23 is not supported: choose 13-22"),
        ({"opset": "x"}, "opset 'x' must be an integer"),
        ({"verify_batch_sizes": ()}, "give at least one batch size"),
        ({"verify_batch_sizes": (0,)}, "give at least one batch size"),
        ({"num_classes": 10**9}, "num_classes 1000000000 is too large"),
        ({"image_size": 5000}, "too large"),
    ],
)
def test_api_arguments_are_validated(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        export_onnx("resnet20", tmp_path / "m.onnx", **kwargs)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("opset", [17, 22])
def test_opset_range_edges_run_in_onnxruntime(tmp_path: Path, opset: int) -> None:
    report = export_onnx("resnet20", tmp_path / "m.onnx", weights="random", opset=opset)
    assert report.parity_passed and onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == opset


def test_output_folder_with_trailing_slash_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="output folder does not exist"):
        export_onnx("resnet20", f"{tmp_path}/newdir/", weights="random")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write read-only files")
def test_read_only_output_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep me")
    target.chmod(0o444)
    with pytest.raises(ConfigError, match="read-only"):
        export_onnx("resnet20", target, weights="random")
    assert target.read_bytes() == b"keep me"
