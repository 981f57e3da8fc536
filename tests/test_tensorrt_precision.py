"""On a machine with TensorRT 10/11 and a GPU: the fp16 and int8 ONNX build strongly typed engines.

Skips here (no TensorRT, no GPU) and runs unchanged through scripts/gpu_check.sh.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_deploy import export_onnx
from resnet_deploy.precision import quantize_int8, to_fp16


def _build_strongly_typed(path: Path, size: int) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10: opt in to strong typing; TensorRT 11: always strongly typed (the flag is ignored).
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise AssertionError(f"TensorRT cannot parse {path.name}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, size, size), (4, 3, size, size), (8, 3, size, size))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, f"TensorRT could not build {path.name}"
    return bytes(plan)


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_strongly_typed_engine_builds(precision: str, tmp_path: Path) -> None:
    export_onnx("resnet20", tmp_path / "m.onnx", weights="random")
    if precision == "fp16":
        out = to_fp16(tmp_path / "m.onnx").path
    else:
        out = quantize_int8(tmp_path / "m.onnx", calibration="random", recipe="tensorrt", cache=False).path
    assert len(_build_strongly_typed(Path(out), 32)) > 10_000
