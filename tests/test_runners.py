"""Runners on this machine (torch CPU options, ONNX Runtime providers) and, marked gpu, on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnet_deploy import ConfigError, EngineError, create_model, export_onnx
from resnet_deploy.runtime import open_runner
from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner, providers_for
from resnet_deploy.runtime.pyt import TorchRunner
from tests.helpers import assert_one_line_error
from tests.test_fold import randomize_bn

X = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


@pytest.fixture(scope="module")
def net():  # type: ignore[no-untyped-def]
    return randomize_bn(create_model("resnet20", weights="random", seed=1))


def test_torch_runner_cpu_options(net) -> None:  # type: ignore[no-untyped-def]
    with TorchRunner(net) as r:
        ref = r.infer(X)
    with TorchRunner(net, channels_last=True) as r:
        assert np.abs(r.infer(X) - ref).max() <= 1e-4 * np.abs(ref).max()
    with TorchRunner(net, dtype="bf16") as r:
        out = r.infer(X)
        assert out.dtype == np.float32 and cosine(out, ref) > 0.999
    assert next(net.parameters()).dtype.is_floating_point and str(next(net.parameters()).dtype) == "torch.float32"


@pytest.mark.slow
def test_torch_compile_on_cpu(net) -> None:  # type: ignore[no-untyped-def]
    with TorchRunner(net) as r:
        ref = r.infer(X)
    with TorchRunner(net, compile=True) as r:
        assert np.abs(r.infer(X) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_runner_spec_and_warmup(tmp_path: Path, net) -> None:  # type: ignore[no-untyped-def]
    export_onnx(net, tmp_path / "b2.onnx", batch=2)
    with open_runner(tmp_path / "b2.onnx") as r:
        assert r.input_spec == {
            "name": "input",
            "dtype": "float32",
            "format": "float32-nchw",
            "shape": [2, 3, 32, 32],
            "max_batch": None,
        }
        r.warmup(batch_size=5)  # a fixed-batch artifact warms up at its own batch
    with TorchRunner(net) as t:
        assert t.input_spec["shape"] == [None, 3, 32, 32]
        t.warmup()


def test_torch_runner_bad_options(net) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="fp16 runs on CUDA"):
        TorchRunner(net, dtype="fp16")
    with pytest.raises(ConfigError, match="CUDA graphs need --device cuda"):
        TorchRunner(net, cuda_graphs=True)
    with pytest.raises(ConfigError, match="unknown device"):
        TorchRunner(net, device="tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU is visible"):
            TorchRunner(net, device="cuda").__enter__()
    with pytest.raises(RuntimeError, match="outside its 'with' block"):
        TorchRunner(net).infer(X)
    with TorchRunner(net) as r, pytest.raises(ConfigError, match=r"expected input \[n, 3, 32, 32\]"):
        r.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_onnxruntime_gpu_providers_never_fall_back(tmp_path: Path, net) -> None:  # type: ignore[no-untyped-def]
    import torch

    export_onnx(net, tmp_path / "m.onnx")
    with OnnxRuntimeRunner(tmp_path / "m.onnx") as r:
        assert r.infer(X).shape == (4, 10)
    assert providers_for("tensorrt") == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    with pytest.raises(ConfigError, match="unknown provider 'gpu'"):
        providers_for("gpu")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA provider may legitimately start")
    for name in ("cuda", "tensorrt"):
        with pytest.raises(EngineError, match="could not start .*running only CPUExecutionProvider"):
            OnnxRuntimeRunner(tmp_path / "m.onnx", providers=providers_for(name)).__enter__()
    from typer.testing import CliRunner

    from resnet_deploy.cli import app

    result = CliRunner().invoke(
        app,
        ["check", str(tmp_path / "m.onnx"), "--reference", str(tmp_path / "m.onnx"), "--provider", "cuda", "--json"],
    )
    assert_one_line_error(result.exit_code, result.stderr, "could not start CUDAExecutionProvider")
    assert result.stdout == ""  # onnxruntime's own fallback chatter is kept off stdout


def test_open_runner_dispatch(tmp_path: Path, net) -> None:  # type: ignore[no-untyped-def]
    export_onnx(net, tmp_path / "m.onnx")
    assert open_runner(tmp_path / "m.onnx").name == "onnxruntime"
    assert open_runner("resnet20", weights="random").name == "torch"
    with pytest.raises(ConfigError, match="engine not found"):
        open_runner(tmp_path / "m.plan")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an artifact this toolkit runs"):
        open_runner(tmp_path / "notes.txt")


def test_export_engine_format_fails_early_without_tensorrt(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed")
    from typer.testing import CliRunner

    from resnet_deploy.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", "-d", "20", "--format", "engine", "-o", str(tmp_path)])
    assert_one_line_error(result.exit_code, result.stderr, 'pip install "resnet-deploy[tensorrt]"')
    result = runner.invoke(app, ["export", "-d", "20", "--format", "engine", "--batch", "4", "-o", str(tmp_path)])
    assert_one_line_error(result.exit_code, result.stderr, "--format engine needs --batch dynamic", exit_code=2)
    result = runner.invoke(app, ["export", "-d", "20", "--format", "engine", "--min-batch", "9", "-o", str(tmp_path)])
    assert_one_line_error(result.exit_code, result.stderr, "1 <= min <= opt <= max", exit_code=2)
    assert list(tmp_path.iterdir()) == []  # nothing exported before the check


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("options", "min_cosine"),
    [
        ({}, 0.99999),
        ({"dtype": "fp16"}, 0.999),
        ({"dtype": "fp16", "channels_last": True}, 0.999),
        ({"dtype": "fp16", "channels_last": True, "cuda_graphs": True}, 0.999),
        ({"dtype": "bf16"}, 0.99),
    ],
)
def test_torch_cuda_runner_matches_cpu_reference(options: dict[str, object], min_cosine: float) -> None:
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = randomize_bn(create_model("resnet50", weights="random", seed=2))
    x = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    with TorchRunner(model) as cpu:
        ref = cpu.infer(x)
    with TorchRunner(model, device="cuda", **options) as gpu:  # type: ignore[arg-type]
        out = gpu.infer(x)
        again = gpu.infer(x)  # a CUDA graph replays with new data copied in
    assert cosine(out, ref) >= min_cosine and np.array_equal(out, again)
    if not options:
        assert np.abs(out - ref).max() <= 1e-3 * np.abs(ref).max()
