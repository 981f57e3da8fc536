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
