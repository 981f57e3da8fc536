"""compare_layers and `resnet-deploy check --layers`: real exports, real ONNX Runtime sessions and
real PyTorch, on CIFAR-size ResNet-20s with fixed random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from resnet_deploy import ConfigError, create_model, export_onnx
from resnet_deploy.cli import app
from resnet_deploy.layer_names import recorded_layers
from resnet_deploy.layers import _Accumulator, _results, compare_layers
from resnet_deploy.metrics import sqnr_db
from resnet_deploy.pixels import add_pixel_input
from resnet_deploy.precision import quantize_int8, to_fp16
from tests.helpers import assert_one_line_error, write_blob_images

runner = CliRunner()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BROKEN_CONV = "layer2.1.conv1"  # its output channel 3 is scaled up by SCALE...
BROKEN_NEXT = "layer2.1.conv2"  # ...and its reader's input-channel-3 weights scaled down by SCALE
SCALE = 1000.0


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blob_images(tmp_path_factory.mktemp("imgs"), 16)


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory, images: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layers")
    export_onnx("resnet20", root / "r20.onnx", weights="random", seed=3)
    to_fp16(root / "r20.onnx", root / "r20.fp16.onnx")
    quantize_int8(root / "r20.onnx", root / "r20.int8.onnx", images, cache=False)
    return {"fp32": root / "r20.onnx", "fp16": root / "r20.fp16.onnx", "int8": root / "r20.int8.onnx"}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, images: Path) -> dict[str, Path]:
    """A resnet20 whose fp32 function is unchanged but whose int8 breaks at one layer.

    Channel 3 of ``layer2.1.conv1`` (its BN's gamma and beta, so the folded conv's weights and bias)
    is scaled by 1000 and the input-channel-3 weights of ``layer2.1.conv2`` divided by 1000: ReLU is
    positively homogeneous, so the fp32 logits are the same. int8 breaks at ``layer2.1.conv2``, not
    before: ``layer2.1.conv1``'s own output is fine (its weights are quantized per output channel,
    so the scaled channel gets its own scale, and its output is read before any activation Q/DQ),
    but the one per-tensor scale of the Q/DQ on its ReLU output is set by the 1000x channel, which
    rounds the other 31 channels to zero, and channel 3's weights in ``layer2.1.conv2`` are 1000x
    smaller than the rest of each output channel's weights, so they round to zero too: that conv
    loses nearly all of its input (measured: 22 dB at ``layer2.1.conv1``, -3 dB at
    ``layer2.1.conv2``, every layer before it at 22-42 dB as in the unbroken model)."""
    root = tmp_path_factory.mktemp("broken")
    net = create_model("resnet20", weights="random", seed=1).eval()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = net(x)
        block = net.layer2[1]
        block.bn1.weight[3] *= SCALE
        block.bn1.bias[3] *= SCALE
        block.conv2.weight[:, 3] /= SCALE
        assert torch.allclose(net(x), before, rtol=1e-4, atol=1e-5)  # the same function in fp32
    export_onnx(net, root / "bad.onnx")
    # the conversion's own gate would refuse it: kept, to be diagnosed
    quantize_int8(root / "bad.onnx", root / "bad.int8.onnx", images, cache=False, allow_mismatch=True)
    return {"fp32": root / "bad.onnx", "int8": root / "bad.int8.onnx"}


def _module_names() -> set[str]:
    return {name for name, _ in create_model("resnet20", weights="random").named_modules()}


def test_fp32_matches_torch_at_every_layer(art: dict[str, Path]) -> None:
    report = compare_layers(art["fp32"], "torch")
    layers = recorded_layers(onnx.load(art["fp32"], load_external_data=False))
    assert [r.module for r in report.layers] == layers and len(layers) == 32
    assert [r.index for r in report.layers] == list(range(32))
    assert report.first_divergent is None and report.passed and report.ok
    assert all(r.sqnr_db is not None and r.sqnr_db > 90 for r in report.layers), [r.sqnr_db for r in report.layers]
    assert all(r.cosine_min > 0.999999 and not r.diverged for r in report.layers)
    assert report.threshold_db == 60.0 and report.samples == 8 and report.reference["batchnorm"] == "folded"
    by_name = {r.module: r for r in report.layers}
    assert by_name["layer1.0.conv1"].shape == [16, 32, 32] and by_name["fc"].shape == [10]
    assert by_name["layer2.0.downsample"].shape == [32, 16, 16]  # resnet20's option-A shortcut
    data = report.to_dict()
    assert data["first_divergent"] is None and data["passed"] is True
    assert data["output"]["passed"] and data["output"]["batch_size"] == 8


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_converted_models_are_compared_by_module_name(art: dict[str, Path], images: Path, precision: str) -> None:
    report = compare_layers(art[precision], art["fp32"], images=images)
    assert report.precision == precision and report.samples == 16
    assert [r.module for r in report.layers] == recorded_layers(onnx.load(art["fp32"], load_external_data=False))
    assert {r.module for r in report.layers} <= _module_names()
    assert report.first_divergent is None and report.passed
    sqnr = [r.sqnr_db for r in report.layers if r.sqnr_db is not None]
    assert len(sqnr) == 32
    # measured: fp16 42-70 dB, int8 (images) 11-42 dB, falling with depth
    floor = {"fp16": 35.0, "int8": 8.0}[precision]
    assert min(sqnr) > floor and report.threshold_db == {"fp16": 25.0, "int8": 5.0}[precision]
    assert report.layers[0].sqnr_db is not None and report.layers[0].sqnr_db > min(sqnr)
    assert report.largest_drop is not None and report.largest_drop.drop_db is not None


def test_int8_breaking_at_one_layer_is_found_there(broken: dict[str, Path], images: Path) -> None:
    report = compare_layers(broken["int8"], broken["fp32"], images=images)
    first = report.first_divergent
    assert first is not None and first.module == BROKEN_NEXT, [(r.module, r.sqnr_db) for r in report.layers]
    by_name = {r.module: r for r in report.layers}
    before = report.layers[: first.index]
    assert before and all(not r.diverged and (r.sqnr_db or 0) > 15 for r in before)
    assert (by_name[BROKEN_CONV].sqnr_db or 0) > 15  # the scaled conv itself is fine
    assert first.sqnr_db is not None and first.sqnr_db < 5.0 and first.diverged
    assert report.largest_drop is not None and report.largest_drop.module == BROKEN_NEXT
    assert first.drop_db is not None and first.drop_db > 15
    assert not report.passed  # the logits fail too: nothing after the broken conv recovers


def test_a_candidate_on_mirrored_inputs_diverges_at_the_first_layer(art: dict[str, Path], tmp_path: Path) -> None:
    """The fp32 graph with a horizontal flip inserted before it: same weights, same names, wrong input."""
    model = onnx.load(art["fp32"])
    source = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["input_mirrored" if name == source else name for name in node.input]
    consts = {"mirror_starts": [-1], "mirror_ends": [-(2**63)], "mirror_axes": [3], "mirror_steps": [-1]}
    model.graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in consts.items())
    flip = helper.make_node("Slice", [source, *consts], ["input_mirrored"], name="graph/Slice_mirror")
    model.graph.node.insert(0, flip)
    mirrored = tmp_path / "mirrored.onnx"
    onnx.save(model, mirrored)
    report = compare_layers(mirrored, art["fp32"])
    assert report.first_divergent is not None and report.first_divergent.module == "conv1"
    assert report.layers[0].sqnr_db is not None and report.layers[0].sqnr_db < 3
    assert not report.passed  # retrieval tells the logits apart too


def test_streamed_sums_give_the_whole_set_sqnr() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((21, 4, 3, 3)) * 3 + 5  # a large common mode: the spread is what counts
    cand = ref + rng.standard_normal(ref.shape) * 0.05
    acc = _Accumulator()
    for start in range(0, 21, 8):  # 8 + 8 + 5 samples
        acc.add(ref[start : start + 8], cand[start : start + 8])
    assert acc.n == 21 and acc.sqnr_db() == pytest.approx(sqnr_db(ref, cand), abs=1e-3)
    flat_r, flat_c = ref.reshape(21, -1), cand.reshape(21, -1)
    cos = (flat_r * flat_c).sum(1) / np.linalg.norm(flat_r, axis=1) / np.linalg.norm(flat_c, axis=1)
    assert acc.cos_min == pytest.approx(cos.min()) and acc.cos_sum / 21 == pytest.approx(cos.mean())
    assert acc.max_abs == pytest.approx(np.abs(cand - ref).max())
    exact = _Accumulator()
    exact.add(ref, ref)
    assert exact.sqnr_db() == 200.0
    overflow = _Accumulator()  # an fp16 layer that overflowed: diverged, whatever its other samples
    overflow.add(ref, np.where(ref > 9, np.inf, cand))
    (row,) = _results(["layer1.0.conv1"], {"layer1.0.conv1": overflow}, {"layer1.0.conv1": [4, 3, 3]}, 25.0)
    assert row.diverged and not row.finite and row.sqnr_db == -200.0 and row.max_abs_diff == np.inf


def test_a_pixel_input_candidate_gets_the_pixels_and_its_reference_the_floats(
    art: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    add_pixel_input(art["fp16"], tmp_path / "r20.fp16.pixels.onnx")
    report = compare_layers(tmp_path / "r20.fp16.pixels.onnx", art["fp32"], images=images)
    assert report.ok and min(r.sqnr_db or 0 for r in report.layers) > 35


def _plan(tmp_path: Path) -> Path:
    plan = tmp_path / "r20.int8.plan"
    plan.write_bytes(b"not really an engine")
    return plan


def _no_layers(art: dict[str, Path], tmp_path: Path) -> Path:
    model = onnx.load(art["fp32"])
    kept = [p for p in model.metadata_props if p.key != "layers"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    path = tmp_path / "nolayers.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def others(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models a resnet20 must not be compared with (exported quickly: TorchScript, one verify batch)."""
    root = tmp_path_factory.mktemp("others")
    quick = {"opset": 17, "verify_batch_sizes": (8,)}
    export_onnx("resnet32", root / "r32.onnx", weights="random", seed=3, **quick)
    export_onnx("resnet20", root / "r20_40px.onnx", weights="random", seed=3, image_size=40, **quick)
    export_onnx(create_model("resnet20", weights="random", widths=(8, 16, 32)), root / "narrow.onnx", **quick)
    return {"r32": root / "r32.onnx", "40px": root / "r20_40px.onnx", "narrow": root / "narrow.onnx"}


@pytest.mark.parametrize(
    "case, needle",
    [
        ("other-architecture", "another architecture than r20.onnx (resnet32 vs resnet20)"),
        ("other-size", "reference input (40, 40) and candidate input (32, 32) differ"),
        ("other-widths", "in the candidate and [16, 32, 32] in the reference"),
        ("plan", "--layers needs an ONNX candidate: r20.int8.plan is a TensorRT plan"),
        ("no-layers", "records no layer names"),
        ("int8-on-noise", "give --images DIR"),
        ("too-few-samples", "at least 8 samples"),
        ("plot-without-layers", "--plot draws the per-layer comparison: add --layers"),
    ],
)
def test_bad_inputs_are_one_line_errors_and_write_nothing(
    art: dict[str, Path], others: dict[str, Path], tmp_path: Path, case: str, needle: str
) -> None:
    fp32 = str(art["fp32"])
    args = {
        "other-architecture": [fp32, "--reference", str(others["r32"]), "--layers"],
        "other-size": [fp32, "--reference", str(others["40px"]), "--layers"],
        "other-widths": [str(others["narrow"]), "--reference", fp32, "--layers"],
        "plan": [str(_plan(tmp_path)), "--reference", fp32, "--layers"],
        "no-layers": [str(_no_layers(art, tmp_path)), "--layers"],
        "int8-on-noise": [str(art["int8"]), "--reference", fp32, "--layers"],
        "too-few-samples": [fp32, "--layers", "--batch-sizes", "1,4"],
        "plot-without-layers": [fp32],
    }[case]
    plot = tmp_path / "layers.png"
    before = {p: p.stat().st_mtime_ns for p in (*art.values(), *others.values())}
    listing = sorted(art["fp32"].parent.iterdir())
    result = runner.invoke(app, ["check", *args, "--plot", str(plot)])
    assert_one_line_error(result.exit_code, result.stderr, needle, exit_code=2)
    assert not plot.exists() and result.stdout == ""
    assert sorted(art["fp32"].parent.iterdir()) == listing  # no parity record, no temp file
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_the_library_refuses_the_same(art: dict[str, Path], others: dict[str, Path], tmp_path: Path) -> None:
    for candidate, reference, needle in [
        (art["fp32"], others["r32"], "another architecture"),
        (others["narrow"], "torch", None),  # its own PyTorch model: the same widths
        (others["narrow"], art["fp32"], "not the same model"),
        (_plan(tmp_path), "torch", "TensorRT plan"),
        (art["fp32"], _plan(tmp_path), "--layers needs an ONNX reference"),
        (_no_layers(art, tmp_path), "torch", "re-export it with 'resnet-deploy export'"),
        (art["fp32"], art["fp32"], "is the candidate itself"),
    ]:
        if needle is None:
            assert compare_layers(candidate, reference).ok
            continue
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("-", r"\-")):
            compare_layers(candidate, reference)


def test_cli_json_and_plot_for_a_passing_model(art: dict[str, Path], images: Path, tmp_path: Path) -> None:
    record = Path(str(art["fp16"]) + ".parity.json")
    record_before = record.read_bytes() if record.exists() else None
    plot = tmp_path / "fp16.png"
    args = ["check", str(art["fp16"]), "--reference", str(art["fp32"]), "--layers", "--images", str(images)]
    result = runner.invoke(app, [*args, "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["first_divergent"] is None and data["passed"] is True and data["precision"] == "fp16"
    assert [e["module"] for e in data["layers"]][:3] == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert all(e["sqnr_db"] > 25 and not e["diverged"] for e in data["layers"])
    assert {"candidate", "reference", "inputs", "threshold_db", "output", "largest_drop"} <= set(data)
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert (record.read_bytes() if record.exists() else None) == record_before  # a diagnosis: no record


def test_cli_names_the_broken_layer_and_exits_1(broken: dict[str, Path], images: Path, tmp_path: Path) -> None:
    plot = tmp_path / "broken.png"
    args = ["check", str(broken["int8"]), "--reference", str(broken["fp32"]), "--layers", "--images", str(images)]
    result = runner.invoke(app, [*args, "--json", "--plot", str(plot)])
    assert_one_line_error(result.exit_code, result.stderr, f"diverges from the reference at {BROKEN_NEXT}", exit_code=1)
    data = json.loads(result.stdout)
    assert data["first_divergent"]["module"] == BROKEN_NEXT and data["first_divergent"]["diverged"] is True
    assert data["passed"] is False and data["largest_drop"]["module"] == BROKEN_NEXT
    assert plot.read_bytes()[:8] == PNG_SIGNATURE  # drawn for a failure too: that is when it helps
    table = runner.invoke(app, args)
    assert table.exit_code == 1
    assert "FIRST DIVERGENT" in table.stdout and f"first divergent layer: {BROKEN_NEXT}" in table.stdout
