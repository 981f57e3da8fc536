"""On a GPU machine: the exported ONNX computes what the PyTorch model computes on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from resnet_deploy import create_model, export_onnx
from tests.test_fold import randomize_bn


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["resnet50", "resnet20"])
def test_onnx_matches_torch_on_cuda(name: str, tmp_path: Path) -> None:
    net = randomize_bn(create_model(name, weights="random", seed=2))
    size = 224 if name == "resnet50" else 32
    import importlib.util

    opset = 18 if importlib.util.find_spec("onnxscript") else 17  # GPU images may lack onnxscript
    export_onnx(net, tmp_path / "m.onnx", image_size=size, opset=opset)
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    torch.backends.cudnn.allow_tf32 = False  # compare true fp32 arithmetic
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        ref = net.cuda()(x.cuda()).float().cpu().numpy()
    net.cpu()
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (out,) = sess.run(["logits"], {"input": x.numpy()})
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (out.argmax(1) == ref.argmax(1)).all()


@pytest.mark.tensorrt
def test_int8_engine_reports_its_layers(tmp_path: Path) -> None:
    """A real int8 resnet20 engine: TensorRT's layer information is saved beside the plan, names
    every convolution by its module, and every conv runs in int8 except the one the ONNX keeps out
    (where quantize_int8 can exclude modules)."""
    import inspect

    import onnx

    from resnet_deploy.engine import build_engine
    from resnet_deploy.engine_layers import int8_convolutions, layers_path, onnx_ops, parse_layer_information
    from resnet_deploy.precision import quantize_int8

    export_onnx("resnet20", tmp_path / "m.onnx", weights="random")
    excluded = {"layer3.2.conv2"} if "exclude" in inspect.signature(quantize_int8).parameters else set()
    options = {"exclude": sorted(excluded)} if excluded else {}
    src = Path(quantize_int8(tmp_path / "m.onnx", calibration="random", cache=False, **options).path)
    model = onnx.load(src, load_external_data=False)
    convs = {n.name for n in model.graph.node if n.op_type == "Conv"}
    assert len(convs) == 19 and int8_convolutions(model) == convs - excluded
    report = build_engine(src, tmp_path / "m.int8.plan", min_batch=1, opt_batch=4, max_batch=8)
    saved = layers_path(report.path)
    assert report.layers_path == str(saved) and saved.stat().st_size > 0
    layers = parse_layer_information(saved.read_text(), onnx_nodes=onnx_ops(model))
    assert layers.detailed and layers.notes == [], layers.notes
    ran: dict[str, str] = {}
    for layer in layers.layers:
        for module in layer.convolutions:
            ran.setdefault(module, layer.precision)
    assert set(ran) == convs, sorted(convs - set(ran))  # every conv is named by a layer
    assert {m for m, p in ran.items() if p == "int8"} == convs - excluded, ran
    check = report.int8_check
    assert check is not None and check.unexpected == [] and check.unchecked == [], check.to_dict()
    assert [c.module for c in check.non_int8] == sorted(excluded)
