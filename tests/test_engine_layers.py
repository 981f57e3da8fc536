"""The engine's layer report on the CPU: TensorRT's layer-information JSON, parsed and judged.

The fixtures are shaped as TensorRT writes it (``IEngineInspector.get_engine_information(
LayerInformationFormat.JSON)`` with ``ProfilingVerbosity.DETAILED``, the same JSON ``trtexec
--exportLayerInfo`` writes and NVIDIA's trex reads): ``{"Layers": [{"Name", "LayerType", "Inputs":
[{"Name", "Location", "Dimensions", "Format/Datatype"}], "Outputs", "ParameterType", "Weights",
"TacticName", "TacticValue", "StreamId", "Metadata"}], "Bindings"}``, with the format strings and
fused names of trex's sample engines (QAT ResNet-18, A100) and of TensorRT 10's ``Metadata``
(``[ONNX Layer: ...]`` joined by ``\\x1e``), here for a resnet20 int8 engine whose nodes carry the
module names export gives. ``build_engine`` itself runs against a stand-in TensorRT (mocks) to show
the order of writes; the real build is in tests/test_gpu.py (marked tensorrt).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from resnet_deploy import EngineError, export_onnx
from resnet_deploy.engine import BuildReport, RuntimeEnv, build_engine, sidecar_path, verify_plan
from resnet_deploy.engine_layers import (
    DETAILED_NOTE,
    check_int8,
    datatype,
    int8_convolutions,
    layers_path,
    onnx_ops,
    parse_layer_information,
)
from resnet_deploy.layer_names import module_of
from tests.helpers import assert_one_line_error
from tests.test_engine import make_sidecar

INT8_32 = "Thirty-two wide channel vectorized row major Int8 format"
INT8_4 = "Four wide channel vectorized row major Int8 format"
FP16_NHWC8 = "Channel major FP16 format where channel % 8 == 0"
FP32 = "Row major linear FP32"
BLOCKS = [f"layer{s}.{b}" for s in (1, 2, 3) for b in (0, 1, 2)]
CONVS = ["conv1"] + [f"{blk}.conv{k}" for blk in BLOCKS for k in (1, 2)]


def tensor(name: str, fmt: str, channels: int = 16) -> dict[str, Any]:
    return {"Name": name, "Location": "Device", "Dimensions": [8, channels, 32, 32], "Format/Datatype": fmt}


def meta(*nodes: str) -> str:
    return "\x1e".join(f"[ONNX Layer: {n}]" for n in nodes)


def conv_layer(nodes: list[str], fmt: str, out_fmt: str, weights: str, *, extra_input: str | None = None) -> dict:
    inputs = [tensor("x", fmt)] + ([tensor("residual", extra_input)] if extra_input else [])
    i8 = weights == "Int8"
    return {
        "Name": " + ".join(nodes),
        "LayerType": "CaskConvolution",
        "Inputs": inputs,
        "Outputs": [tensor("y", out_fmt)],
        "ParameterType": "Convolution",
        "Kernel": [3, 3],
        "OutMaps": 16,
        "Groups": 1,
        "Weights": {"Type": weights, "Count": 2304},
        "Bias": {"Type": "Float", "Count": 16},
        "HasReLU": 1,
        "TacticName": "sm90_xmma_fprop_implicit_gemm_" + ("i8i8_i8i32_f32" if i8 else "f16f16_f16f16_f16") + "_nhwc",
        "TacticValue": "0x9d2a56f1c4e2b0a1",
        "StreamId": 0,
        "Metadata": meta(*nodes),
    }


def reformat(name: str, fmt: str, out_fmt: str, origin: str, metadata: str = "") -> dict:
    return {
        "Name": name,
        "LayerType": "Reformat",
        "Inputs": [tensor("a", fmt)],
        "Outputs": [tensor("b", out_fmt)],
        "ParameterType": "Reformat",
        "Origin": origin,
        "TacticValue": "0x00000000000003e8",
        "StreamId": 0,
        "Metadata": metadata,
    }


def resnet20_engine(fp16: tuple[str, ...] = ("layer3.2.conv2",), fp32: tuple[str, ...] = ()) -> dict[str, Any]:
    """A strongly typed resnet20 int8 engine: Q/DQ fused into every conv except those in ``fp16`` /
    ``fp32``, a reformat copy, the pooling as a Myelin kernel named only in Metadata, fc in fp16."""
    layers: list[dict] = [
        reformat(
            "input_to_fp16 + input_QuantizeLinear", FP32, INT8_4, "QDQ", meta("input_to_fp16", "input_QuantizeLinear")
        )
    ]
    layers.append(
        conv_layer(
            ["conv1.weight_DequantizeLinear", "input_DequantizeLinear", "conv1", "relu/Relu_0", "relu_QuantizeLinear"],
            INT8_4,
            INT8_32,
            "Int8",
        )
    )
    k = 0
    for blk in BLOCKS:
        if blk == "layer3.0":  # TensorRT copies between formats before this block
            layers.append(
                reformat(
                    "Reformatting CopyNode for Input Tensor 0 to layer3.0.conv1 + layer3.0.relu/Relu_0",
                    INT8_32,
                    "Channel major INT8 format where channel % 16 == 0",
                    "REFORMAT",
                )
            )
        for conv in (f"{blk}.conv1", f"{blk}.conv2"):
            k += 1
            tail = [f"{blk}.relu/Relu_0", f"relu_{k}_QuantizeLinear"] if conv.endswith("1") else [f"{blk}/Add_0", blk]
            nodes = [f"{conv}.weight_DequantizeLinear", f"relu_{k - 1}_DequantizeLinear", conv, *tail]
            residual = INT8_32 if conv.endswith("2") else None
            if conv in fp16:  # kept out of int8: a DQ copy to fp16 in front, fp16 weights
                layers.append(reformat(f"relu_{k - 1}_DequantizeLinear", INT8_32, FP16_NHWC8, "QDQ"))
                layers.append(conv_layer([conv, *tail], FP16_NHWC8, FP16_NHWC8, "Half", extra_input=residual))
            elif conv in fp32:  # Q/DQ left unfused: the conv runs on dequantized fp32
                layers.append(reformat(f"relu_{k - 1}_DequantizeLinear", INT8_32, FP32, "QDQ"))
                layers.append(conv_layer(nodes[2:], FP32, FP32, "Float", extra_input=residual))
            else:
                layers.append(conv_layer(nodes, INT8_32, INT8_32, "Int8", extra_input=residual))
        if blk in ("layer2.0", "layer3.0"):  # the parameter-free shortcut: slices and a pad
            layers.append(
                {
                    "Name": f"{blk}.downsample/Slice_0 + {blk}.downsample/Slice_1 + {blk}.downsample",
                    "LayerType": "Slice",
                    "Inputs": [tensor("s", INT8_32)],
                    "Outputs": [tensor("p", INT8_32)],
                    "TacticValue": "0x0000000000000000",
                    "Metadata": meta(f"{blk}.downsample/Slice_0", f"{blk}.downsample/Slice_1", f"{blk}.downsample"),
                }
            )
    layers.append(
        {  # a Myelin kernel: the name says nothing, Metadata names the ONNX nodes
            "Name": "__myl_ReduMeanResh_myl0_3",
            "LayerType": "kgen",
            "Inputs": [{"Name": "relu_18", "Dimensions": [8, 64, 8, 8], "Format/Datatype": "Half"}],
            "Outputs": [{"Name": "view", "Dimensions": [8, 64], "Format/Datatype": "Half"}],
            "TacticName": "__myl_ReduMeanResh_0x5f1e",
            "StreamId": 0,
            "Metadata": "[ONNX Layer: avgpool]\x1f[ONNX Layer: graph/Reshape_0]",
        }
    )
    fc = conv_layer(["fc"], FP16_NHWC8, FP32, "Half")  # TensorRT runs a Gemm as a 1x1 convolution
    fc["Name"] = "fc + (Unnamed Layer* 171) [Shuffle] + copied_squeeze_after_fc + logits_to_fp32"
    fc["Metadata"] = meta("fc", "logits_to_fp32")
    layers.append(fc)
    return {"Layers": layers, "Bindings": ["input", "logits"]}


def resnet20_nodes() -> dict[str, str]:
    """The int8 resnet20 ONNX's node names -> op types, as export and ONNX Runtime's quantizer name them."""
    ops: dict[str, str] = {"input_QuantizeLinear": "QuantizeLinear", "input_DequantizeLinear": "DequantizeLinear"}
    ops.update({"input_to_fp16": "Cast", "logits_to_fp32": "Cast"})  # the fp16 remainder's io casts
    for conv in CONVS:
        ops[conv] = "Conv"
        ops[f"{conv}.weight_DequantizeLinear"] = "DequantizeLinear"
    ops["relu/Relu_0"] = "Relu"
    for k in range(19):
        ops[f"relu_{k}_QuantizeLinear"] = "QuantizeLinear"
        ops[f"relu_{k}_DequantizeLinear"] = "DequantizeLinear"
    for blk in BLOCKS:
        ops.update({f"{blk}.relu/Relu_0": "Relu", f"{blk}/Add_0": "Add", blk: "Relu"})
    for blk in ("layer2.0", "layer3.0"):
        ops.update({f"{blk}.downsample/Slice_0": "Slice", f"{blk}.downsample/Slice_1": "Slice"})
        ops[f"{blk}.downsample"] = "Pad"
    ops.update({"avgpool": "ReduceMean", "graph/Reshape_0": "Reshape", "fc": "Gemm"})
    return ops


# ------------------------------------------------------------------------------------------ parsing


def test_fixture_names_are_the_names_export_and_quantize_give(tmp_path: Path) -> None:
    """The fixture's node names are a real int8 export's (every conv, the block outputs, the io
    casts, fc, pooling), and ``int8_convolutions`` finds the quantized convs of a real int8 ONNX."""
    from resnet_deploy.precision import quantize_int8

    export_onnx("resnet20", tmp_path / "m.onnx", weights="random")
    done = quantize_int8(tmp_path / "m.onnx", calibration="random", count=8, cache=False, exclude=["layer3.2.conv2"])
    model = onnx.load(done.path, load_external_data=False)
    real = onnx_ops(model)
    fixture = {n: op for n, op in resnet20_nodes().items() if op not in ("QuantizeLinear", "DequantizeLinear")}
    assert sorted(n for n, op in real.items() if op == "Conv") == sorted(CONVS)
    assert {n: real.get(n) for n in fixture} == fixture
    assert int8_convolutions(model) == set(CONVS) - {"layer3.2.conv2"}
    report = parse_layer_information(json.dumps(resnet20_engine()), onnx_nodes=real)
    assert (
        report.module_precisions()
        == parse_layer_information(json.dumps(resnet20_engine()), onnx_nodes=resnet20_nodes()).module_precisions()
    )


@pytest.mark.parametrize(
    ("fmt", "precision"),
    [
        (INT8_32, "int8"),
        ("Row major Int8 format", "int8"),
        ("Row major INT8 format where column stride % 64 == 0", "int8"),
        (FP16_NHWC8, "fp16"),
        ("Half", "fp16"),
        (FP32, "fp32"),
        ("Float", "fp32"),
        ("Row major linear BFloat16 format", "bf16"),
        ("Row major linear FP8 format", "fp8"),
        ("Row major linear Int32", "int32"),
        ("N/A due to dynamic shapes", "unknown"),
        ("", "unknown"),
    ],
)
def test_format_strings_name_their_datatype(fmt: str, precision: str) -> None:
    assert datatype(fmt) == precision


def test_detailed_layers_by_module() -> None:
    report = parse_layer_information(json.dumps(resnet20_engine()), onnx_nodes=resnet20_nodes())
    assert report.detailed and report.notes == []
    by_name = {layer.name: layer for layer in report.layers}
    first = report.layers[1]  # the Q/DQ node names are in the fused name and the Metadata: not modules
    assert first.modules == ("conv1", "relu") and first.convolutions == ("conv1",)
    assert (first.precision, first.output_precision, first.type) == ("int8", "int8", "CaskConvolution")
    assert "i8i8" in first.tactic
    block = next(x for x in report.layers if "layer1.0.conv2" in x.modules)
    assert block.modules == ("layer1.0.conv2", "layer1.0") and block.precision == "int8"
    for qdq in ("input_to_fp16 + input_QuantizeLinear", "relu_17_DequantizeLinear"):  # standalone Q/DQ: helpers
        assert by_name[qdq].helper and by_name[qdq].modules == ()
    copy = next(x for x in report.layers if x.name.startswith("Reformatting CopyNode"))
    assert copy.helper and copy.convolutions == ()  # its name lists another layer's nodes: not its modules
    pool = by_name["__myl_ReduMeanResh_myl0_3"]
    assert pool.modules == ("avgpool",) and pool.precision == "fp16"  # from Metadata; 'graph' is no module
    fc = report.layers[-1]
    assert fc.modules == ("fc",) and fc.convolutions == () and (fc.precision, fc.output_precision) == ("fp16", "fp32")
    kept = next(x for x in report.layers if "layer3.2.conv2" in x.modules)
    assert kept.precision == "fp16" and kept.convolutions == ("layer3.2.conv2",)
    precisions = report.module_precisions()
    assert [m for m in CONVS if precisions[m] != "int8"] == ["layer3.2.conv2"]
    assert report.precision_counts() == {"int8": 20, "fp16": 3}  # 18 convs + 2 shortcuts; 1 conv, pool, fc
    row = report.to_dict()["layers"][1]
    assert {"name", "type", "modules", "precision"} <= set(row) and row["modules"] == ["conv1", "relu"]


def test_without_the_onnx_names_are_judged_by_form() -> None:
    """No ONNX at hand: Q/DQ, weights and TensorRT's made-up names are dropped by their form; the
    convolutions are torchvision's conv names (TensorRT's Gemm-as-conv fc is named fc: flagged only
    by its layer type, which a 1x1 conv in TensorRT is)."""
    report = parse_layer_information(json.dumps(resnet20_engine()))
    assert report.layers[1].modules == ("conv1", "relu") and report.layers[1].convolutions == ("conv1",)
    assert report.layers[-1].modules == ("fc",)
    check = check_int8(report)
    assert [c.module for c in check.non_int8] == ["layer3.2.conv2", "fc"]


def test_trex_style_names() -> None:
    """Older fused names: weight initializers, PWN(...) pointwise groups, Myelin foreign nodes,
    profile suffixes."""
    text = json.dumps(
        {
            "Layers": [
                {"Name": "layer1.0.conv1.weight + QuantizeLinear_20 + Conv_22", "LayerType": "CaskConvolution"},
                {"Name": "PWN(PWN(layer1.0.relu/Relu_0), layer1.0/Add_0)", "LayerType": "PointWiseV2"},
                {"Name": "{ForeignNode[layer2.0.conv1...layer2.0]}", "LayerType": "Myelin"},
                {"Name": "layer4.0.conv1 [profile 1]", "LayerType": "CaskConvolution"},
            ]
        }
    )
    modules = [layer.modules for layer in parse_layer_information(text).layers]
    assert modules == [("Conv_22",), ("layer1.0.relu", "layer1.0"), ("layer2.0.conv1", "layer2.0"), ("layer4.0.conv1",)]


# ---------------------------------------------------------------------------------- the int8 check


def test_an_int8_engine_with_every_conv_int8_passes() -> None:
    report = parse_layer_information(json.dumps(resnet20_engine(fp16=())), onnx_nodes=resnet20_nodes())
    check = check_int8(report, intended=set(CONVS), strict=True)
    assert check.non_int8 == [] and check.unchecked == [] and check.warnings == []


def test_a_conv_kept_out_of_int8_in_the_onnx_is_noted_not_refused() -> None:
    report = parse_layer_information(json.dumps(resnet20_engine()), onnx_nodes=resnet20_nodes())
    check = check_int8(report, intended=set(CONVS) - {"layer3.2.conv2"}, strict=True)
    assert [(c.module, c.precision, c.excluded) for c in check.non_int8] == [("layer3.2.conv2", "fp16", True)]
    assert check.warnings == [] and check.notes == ["kept out of int8 in the ONNX: layer3.2.conv2 (fp16)"]


def test_a_quantized_conv_tensorrt_runs_in_fp32_is_flagged_and_strict_refuses() -> None:
    """The ONNX quantizes every conv, TensorRT left layer2.1.conv1's Q/DQ unfused (fp32) and ran
    layer3.2.conv2 in fp16: a warning naming both; strict, one line naming both."""
    engine = resnet20_engine(fp16=("layer3.2.conv2",), fp32=("layer2.1.conv1",))
    report = parse_layer_information(json.dumps(engine), onnx_nodes=resnet20_nodes())
    check = check_int8(report, intended=set(CONVS))
    assert [(c.module, c.precision, c.excluded) for c in check.unexpected] == [
        ("layer2.1.conv1", "fp32", False),
        ("layer3.2.conv2", "fp16", False),
    ]
    assert len(check.warnings) == 1 and "layer2.1.conv1 (fp32), layer3.2.conv2 (fp16)" in check.warnings[0]
    with pytest.raises(EngineError, match=r"refused \(--strict-precision\): 2 convolution\(s\) .*layer2.1.conv1") as e:
        check_int8(report, intended=set(CONVS), strict=True)
    assert "\n" not in str(e.value)
    assert check_int8(report).unexpected == check.unexpected  # without ONNX facts every non-int8 conv counts


def test_a_conv_no_layer_names_and_unknown_datatypes_are_unchecked() -> None:
    engine = resnet20_engine(fp16=())
    engine["Layers"] = [x for x in engine["Layers"] if "layer2.2.conv1" not in x["Name"]]
    for tensor_ in engine["Layers"][3]["Inputs"]:  # layer1.0.conv2: format not shown
        tensor_["Format/Datatype"] = "N/A"
    report = parse_layer_information(json.dumps(engine), onnx_nodes=resnet20_nodes())
    assert any("no datatype for 1 layer" in note for note in report.notes)
    check = check_int8(report, intended=set(CONVS))
    assert check.non_int8 == [] and check.unchecked == ["layer1.0.conv2", "layer2.2.conv1"]
    assert "precision of 2 convolution(s) is unchecked" in check.warnings[0]
    with pytest.raises(EngineError, match="cannot be checked: layer1.0.conv2, layer2.2.conv1"):
        check_int8(report, intended=set(CONVS), strict=True)


def test_layer_names_only_give_the_clear_note() -> None:
    names = {"Layers": [x["Name"] for x in resnet20_engine()["Layers"]], "Bindings": ["input", "logits"]}
    report = parse_layer_information(json.dumps(names), onnx_nodes=resnet20_nodes())
    assert not report.detailed and report.notes == [DETAILED_NOTE]
    assert report.layers[1].modules == ("conv1", "relu") and report.layers[1].precision == "unknown"
    assert "ProfilingVerbosity.DETAILED" in DETAILED_NOTE
    check = check_int8(report, intended=set(CONVS))
    assert check.non_int8 == [] and len(check.unchecked) == len(CONVS)
    assert check.warnings == ["the int8 precision of the convolutions is unchecked: " + DETAILED_NOTE]
    with pytest.raises(EngineError, match="layer names only"):
        check_int8(report, intended=set(CONVS), strict=True)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"Layers": [{"Name": "conv1"', "is not JSON"),
        ("", "is not JSON"),
        ('["conv1"]', "no 'Layers' list"),
        ('{"Layers": "conv1"}', "no 'Layers' list"),
        ('{"Layers": [{"Name": "conv1"}, 7]}', "layer 1 is a JSON int"),
    ],
)
def test_malformed_layer_information_is_one_line(text: str, needle: str) -> None:
    with pytest.raises(EngineError, match=needle) as e:
        parse_layer_information(text, source="m.int8.plan.layers.json")
    assert "\n" not in str(e.value) and str(e.value).startswith("m.int8.plan.layers.json")


def test_onnx_facts_from_a_graph(tmp_path: Path) -> None:
    """Which convs the ONNX quantizes: those a DequantizeLinear feeds (the other was excluded)."""
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s"], ["q"], name="input_QuantizeLinear"),
        helper.make_node("DequantizeLinear", ["q", "s"], ["dq"], name="input_DequantizeLinear"),
        helper.make_node("Conv", ["dq", "w"], ["a"], name="layer1.0.conv1"),
        helper.make_node("Relu", ["a"], ["b"], name="layer1.0.relu/Relu_0"),
        helper.make_node("Conv", ["b", "w2"], ["logits"], name="layer1.0.conv2"),
    ]
    w2 = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w2")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 4, 4, 4])],
        [w, w2, s],
    )
    model = helper.make_model(graph)
    assert int8_convolutions(model) == {"layer1.0.conv1"}
    assert onnx_ops(model)["layer1.0.conv2"] == "Conv" and module_of("layer1.0.relu/Relu_0") == "layer1.0.relu"
    assert layers_path("out/resnet20.int8.plan") == Path("out/resnet20.int8.plan.layers.json")


# ------------------------------------------------------------------- build_engine on a mock TensorRT


def quantized_resnet20(tmp_path: Path, exclude: tuple[str, ...] = ("layer3.2.conv2",)) -> Path:
    """A resnet20 ONNX with a Q/DQ pair in front of every conv but ``exclude`` (structure only: the
    mock TensorRT never runs it), named as ONNX Runtime's quantizer names them."""
    export_onnx("resnet20", tmp_path / "m.onnx", weights="random")
    model = onnx.load(tmp_path / "m.onnx")
    graph = model.graph
    nodes = []
    for node in graph.node:
        if node.op_type == "Conv" and node.name not in exclude:
            x = node.input[0]
            graph.initializer.append(numpy_helper.from_array(np.array(0.05, np.float32), f"{x}_scale"))
            nodes.append(helper.make_node("QuantizeLinear", [x, f"{x}_scale"], [f"{x}_q"], name=f"{x}_QuantizeLinear"))
            nodes.append(
                helper.make_node(
                    "DequantizeLinear", [f"{x}_q", f"{x}_scale"], [f"{x}_dq"], name=f"{x}_DequantizeLinear"
                )
            )
            node.input[0] = f"{x}_dq"
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    out = tmp_path / "m.int8.onnx"
    onnx.save(model, out)
    return out


def mock_tensorrt(monkeypatch: pytest.MonkeyPatch, info: str | Exception) -> MagicMock:
    """A stand-in for the tensorrt module: builds a fixed plan; its inspector returns ``info``."""
    import resnet_deploy.engine as engine_mod

    trt = MagicMock(name="tensorrt")
    trt.__version__ = "10.13.3.9"
    builder = trt.Builder.return_value
    network = builder.create_network.return_value
    network.get_input.return_value.name = "input"
    network.get_output.return_value.name = "logits"
    trt.OnnxParser.return_value.parse_from_file.return_value = True
    builder.build_serialized_network.return_value = b"\x00mock-plan" * 64
    config = builder.create_builder_config.return_value
    config.set_timing_cache.return_value = True
    engine = trt.Runtime.return_value.deserialize_cuda_engine.return_value
    engine.create_execution_context.return_value.set_input_shape.return_value = True
    inspect = engine.create_engine_inspector.return_value.get_engine_information
    if isinstance(info, Exception):
        inspect.side_effect = info
    else:
        inspect.return_value = info
    monkeypatch.setattr(engine_mod, "_tensorrt", lambda: trt)
    monkeypatch.setattr(engine_mod, "runtime_env", lambda: RuntimeEnv("10.13.3.9", "NVIDIA H200", "9.0"))
    return trt


def test_build_saves_the_layer_information_beside_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = quantized_resnet20(tmp_path)
    text = json.dumps(resnet20_engine(fp16=("layer3.2.conv2",), fp32=("layer2.1.conv1",)))
    trt = mock_tensorrt(monkeypatch, text)
    report = build_engine(src, tmp_path / "m.int8.plan", min_batch=1, opt_batch=4, max_batch=8)
    config = trt.Builder.return_value.create_builder_config.return_value
    assert config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED
    engine = trt.Runtime.return_value.deserialize_cuda_engine.return_value
    engine.create_execution_context.return_value.set_input_shape.assert_called_once_with("input", [4, 3, 32, 32])
    inspector = engine.create_engine_inspector.return_value
    assert inspector.execution_context is engine.create_execution_context.return_value
    inspector.get_engine_information.assert_called_once_with(trt.LayerInformationFormat.JSON)
    saved = tmp_path / "m.int8.plan.layers.json"
    assert report.layers_path == str(saved) and json.loads(saved.read_text()) == json.loads(text)
    data, sidecar = verify_plan(report.path, None)  # the plan still matches its sidecar's sha and size
    assert data == b"\x00mock-plan" * 64 and sidecar.precision == "int8"
    assert report.int8_check is not None
    assert [(c.module, c.excluded) for c in report.int8_check.non_int8] == [
        ("layer2.1.conv1", False),
        ("layer3.2.conv2", True),
    ]
    assert any("layer2.1.conv1 (fp32)" in w and "layer3.2.conv2" not in w for w in report.warnings)
    assert report.notes == ["kept out of int8 in the ONNX: layer3.2.conv2 (fp16)"]
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["non_int8_convolutions"][0] == {
        "module": "layer2.1.conv1",
        "precision": "fp32",
        "layer": "layer2.1.conv1 + layer2.1.relu/Relu_0 + relu_9_QuantizeLinear",
        "excluded": False,
    }
    layer = next(x for x in as_json["layers"] if "layer1.0.conv1" in x["modules"])
    assert (
        layer["precision"] == "int8"
        and layer["type"] == "CaskConvolution"
        and layer["name"].endswith("Relu_0 + relu_1_QuantizeLinear")
    )
    assert as_json["precision_counts"]["int8"] == 19


def test_strict_precision_refuses_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = quantized_resnet20(tmp_path)
    mock_tensorrt(monkeypatch, json.dumps(resnet20_engine(fp32=("layer2.1.conv1",))))
    before = set(tmp_path.iterdir())
    with pytest.raises(
        EngineError, match=r"refused \(--strict-precision\): 1 convolution\(s\) .*layer2.1.conv1 \(fp32\)"
    ):
        build_engine(src, tmp_path / "m.int8.plan", strict_precision=True, timing_cache=tmp_path / "t.cache")
    assert set(tmp_path.iterdir()) == before  # no plan, sidecar, layer information or timing cache
    mock_tensorrt(monkeypatch, json.dumps(resnet20_engine()))  # only the excluded conv is not int8
    report = build_engine(src, tmp_path / "m.int8.plan", strict_precision=True)
    assert Path(report.path).is_file() and report.warnings == []


def test_no_layer_information_keeps_the_plan_and_drops_a_stale_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = quantized_resnet20(tmp_path)
    stale = layers_path(tmp_path / "m.int8.plan")
    stale.write_text('{"Layers": []}')
    mock_tensorrt(monkeypatch, RuntimeError("inspector unavailable"))
    report = build_engine(src, tmp_path / "m.int8.plan")
    assert Path(report.path).is_file() and sidecar_path(report.path).is_file() and not stale.exists()
    assert report.layers is None and report.layers_path is None and report.to_dict()["non_int8_convolutions"] is None
    assert "layer information is unavailable (RuntimeError: inspector unavailable)" in report.warnings[0]
    Path(report.path).unlink()
    with pytest.raises(EngineError, match="layer precisions cannot be read"):
        build_engine(src, tmp_path / "m.int8.plan", strict_precision=True)
    assert not Path(report.path).exists()


# ------------------------------------------------------------------------------------------- the CLI


def test_cli_shows_the_layers_and_strict_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import resnet_deploy.engine as engine_mod
    from resnet_deploy.cli import app

    layers = parse_layer_information(json.dumps(resnet20_engine(fp32=("layer2.1.conv1",))), onnx_nodes=resnet20_nodes())
    check = check_int8(layers, intended=set(CONVS) - {"layer3.2.conv2"})
    built = BuildReport(
        str(tmp_path / "m.int8.plan"),
        make_sidecar(b"x"),
        None,
        list(check.warnings),
        layers=layers,
        int8_check=check,
        layers_path=str(tmp_path / "m.int8.plan.layers.json"),
        notes=check.notes,
    )
    calls: list[dict[str, Any]] = []

    def fake_build(*args: Any, **kwargs: Any) -> BuildReport:
        calls.append(kwargs)
        if kwargs["strict_precision"]:
            check_int8(layers, intended=set(CONVS) - {"layer3.2.conv2"}, strict=True)
        return built

    monkeypatch.setattr(engine_mod, "build_engine", fake_build)
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(tmp_path / "m.int8.onnx")])
    assert result.exit_code == 0, result.output
    assert "layer2.1.conv1" in result.stdout and "not int8" in result.stdout and "fp32" in result.stdout
    assert "kept out of int8 in the ONNX" in result.stdout and "m.int8.plan.layers.json" in result.stdout
    assert "warning:" in result.stderr and "layer2.1.conv1 (fp32)" in result.stderr
    result = runner.invoke(app, ["build", str(tmp_path / "m.int8.onnx"), "--json"])
    as_json = json.loads(result.stdout)
    assert {"name", "modules", "precision", "type"} <= set(as_json["layers"][0])
    assert [c["module"] for c in as_json["non_int8_convolutions"]] == ["layer2.1.conv1", "layer3.2.conv2"]
    result = runner.invoke(app, ["build", str(tmp_path / "m.int8.onnx"), "--strict-precision"])
    assert calls[-1]["strict_precision"] is True
    assert_one_line_error(result.exit_code, result.stderr, "--strict-precision", "layer2.1.conv1 (fp32)", exit_code=1)
