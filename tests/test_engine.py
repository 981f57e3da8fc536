"""Engine logic that needs no GPU: sidecars, compatibility rules, plan integrity, profiles, errors.

The plans here are byte strings standing in for TensorRT's serialized engines: verify_plan only
hashes and compares them (it never deserializes), so that is the real code path. The build and
deserialization themselves are in the tensorrt-marked tests at the end.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from resnet_deploy import ConfigError, EngineError, MissingDependencyError, export_onnx
from resnet_deploy.engine import (
    Profile,
    RuntimeEnv,
    Sidecar,
    build_engine,
    build_mode,
    compatibility_problems,
    load_engine,
    onnx_profile,
    parse_version,
    sidecar_path,
    verify_plan,
)

H200 = RuntimeEnv("10.13.3.9", "NVIDIA H200", "9.0")


def make_sidecar(plan: bytes, **changes: object) -> Sidecar:
    base = Sidecar(
        tensorrt_version="10.13.3.9",
        cuda_version="12.8",
        gpu_name="NVIDIA H200",
        compute_capability="9.0",
        hardware_compat="none",
        version_compatible=False,
        build_mode="strongly-typed",
        precision="int8",
        profile={"min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [64, 3, 224, 224]},
        input_name="input",
        output_name="logits",
        source_onnx="/x/resnet50.int8.onnx",
        source_onnx_sha256="ab" * 32,
        plan_sha256=hashlib.sha256(plan).hexdigest(),
        plan_size_bytes=len(plan),
        build_seconds=61.0,
        metadata={
            "model": "resnet50",
            "image_size": "224x224",
            "resize_size": "256",
            "mean": "0.485,0.456,0.406",
            "std": "0.229,0.224,0.225",
        },
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def write_plan(tmp_path: Path, plan: bytes = b"\x00plan-bytes" * 100, **changes: object) -> Path:
    path = tmp_path / "resnet50.int8.plan"
    path.write_bytes(plan)
    sidecar_path(path).write_text(json.dumps(make_sidecar(plan, **changes).to_dict()))
    return path


def test_names_and_versions() -> None:
    assert sidecar_path("out/resnet50.int8.plan") == Path("out/resnet50.int8.plan.json")
    assert parse_version("10.12.0.36") == (10, 12, 0, 36) and parse_version("11.0.0a") == (11, 0, 0)
    assert build_mode("10.11.0.33") == "weakly-typed"
    assert build_mode("10.12.0.36") == build_mode("10.13.3.9") == build_mode("11.0.0") == "strongly-typed"
    with pytest.raises(ConfigError):
        parse_version("beta")


def test_profile_rules() -> None:
    p = Profile(1, 8, 64, (3, 224, 224))
    assert p.shapes()["opt"] == [8, 3, 224, 224] and p.contains(64) and not p.contains(65) and not p.contains(0)
    for bad in ((0, 1, 1), (4, 2, 8), (1, 9, 8)):
        with pytest.raises(ConfigError, match="1 <= min <= opt <= max"):
            Profile(*bad, (3, 224, 224))


def test_compatibility_rules() -> None:
    sc = make_sidecar(b"x")
    assert compatibility_problems(sc, H200) == []
    assert "built with 10.13.3.9" in compatibility_problems(sc, replace(H200, tensorrt_version="10.14.1.48"))[0]
    assert "built for NVIDIA H200 (9.0)" in compatibility_problems(sc, RuntimeEnv("10.13.3.9", "NVIDIA A100", "8.0"))[0]
    assert compatibility_problems(sc, replace(H200, tensorrt_version="10.13.3.10"))  # even another build
    vc = replace(sc, version_compatible=True)
    assert compatibility_problems(vc, replace(H200, tensorrt_version="10.14.1.48")) == []  # newer
    assert compatibility_problems(vc, replace(H200, tensorrt_version="11.0.0.1")) == []  # the next major too
    assert "10.x and 11.x only" in compatibility_problems(vc, replace(H200, tensorrt_version="12.0.0.1"))[0]
    assert "older than 10.13.3.9" in compatibility_problems(vc, replace(H200, tensorrt_version="10.9.0.34"))[0]
    # Same compute capability, another GPU model: only a same-cc (or ampere-plus) plan may run.
    h100 = RuntimeEnv("10.13.3.9", "NVIDIA H100 80GB HBM3", "9.0")
    assert "only for the GPU model that built it" in compatibility_problems(sc, h100)[0]
    assert compatibility_problems(replace(sc, hardware_compat="same-cc"), h100) == []
    ampere = replace(sc, hardware_compat="ampere-plus")
    assert compatibility_problems(ampere, RuntimeEnv("10.13.3.9", "NVIDIA A10", "8.6")) == []
    assert "older than Ampere" in compatibility_problems(ampere, RuntimeEnv("10.13.3.9", "Tesla T4", "7.5"))[0]


def test_verify_plan_accepts_the_real_thing(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    data, sidecar = verify_plan(plan, H200)
    assert data == plan.read_bytes() and sidecar.precision == "int8"


def test_truncated_or_altered_plans_are_refused(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    data = plan.read_bytes()
    plan.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineError, match="truncated or altered"):
        verify_plan(plan, H200)
    plan.write_bytes(data[:-1] + b"X")
    with pytest.raises(EngineError, match="truncated or altered"):
        verify_plan(plan, H200)


def test_sidecar_problems(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    with pytest.raises(EngineError, match="cannot run here: .*A100.*Rebuild it on this machine.*--hardware-compat"):
        verify_plan(plan, RuntimeEnv("10.13.3.9", "NVIDIA A100", "8.0"))
    with pytest.raises(EngineError, match="TensorRT 10.14.1.48 here, built with 10.13.3.9"):
        verify_plan(plan, replace(H200, tensorrt_version="10.14.1.48"))
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(EngineError, match="unreadable"):
        verify_plan(plan, H200)
    sidecar_path(plan).unlink()
    with pytest.raises(EngineError, match="no sidecar"):
        verify_plan(plan, H200)
    with pytest.raises(EngineError, match="engine not found"):
        verify_plan(tmp_path / "missing.plan", H200)


def test_onnx_profile_and_build_preconditions(tmp_path: Path) -> None:
    export_onnx("resnet20", tmp_path / "d.onnx", weights="random")
    profile, meta, precision = onnx_profile(tmp_path / "d.onnx", 1, 4, 16)
    assert profile.input_shape == (3, 32, 32) and meta["model"] == "resnet20" and precision == "fp32"
    export_onnx("resnet20", tmp_path / "f.onnx", weights="random", batch=2)
    with pytest.raises(ConfigError, match="fixed batch of 2: engines need a dynamic batch axis"):
        build_engine(tmp_path / "f.onnx")
    with pytest.raises(ConfigError, match="unknown hardware compat"):
        build_engine(tmp_path / "d.onnx", hardware_compat="turing")
    with pytest.raises(ConfigError, match="--opt-level 7"):
        build_engine(tmp_path / "d.onnx", opt_level=7)


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_missing_tensorrt_is_one_clear_error(tmp_path: Path) -> None:
    export_onnx("resnet20", tmp_path / "d.onnx", weights="random")
    with pytest.raises(MissingDependencyError, match=r'pip install "resnet-deploy\[tensorrt\]"'):
        build_engine(tmp_path / "d.onnx")
    with pytest.raises(MissingDependencyError, match="tensorrt is not installed"):
        load_engine(write_plan(tmp_path))
    assert not (tmp_path / "d.plan").exists()


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_load_and_check_engines(tmp_path: Path, precision: str) -> None:
    from resnet_deploy.parity import compare
    from resnet_deploy.precision import quantize_int8, to_fp16

    export_onnx("resnet20", tmp_path / "m.onnx", weights="random")
    src = tmp_path / "m.onnx"
    if precision == "fp16":
        src = Path(to_fp16(src).path)
    elif precision == "int8":
        src = Path(quantize_int8(src, calibration="random", cache=False).path)
    report = build_engine(
        src,
        tmp_path / f"m.{precision}.plan",
        min_batch=1,
        opt_batch=4,
        max_batch=16,
        timing_cache=tmp_path / "timing.cache",
    )
    assert report.sidecar.precision == precision and (tmp_path / "timing.cache").stat().st_size > 0
    engine, sidecar = load_engine(report.path)
    assert (
        engine.num_io_tensors == 2 and sidecar.plan_sha256 == hashlib.sha256(Path(report.path).read_bytes()).hexdigest()
    )
    check = compare(report.path, src, batch_sizes=(1, 16))
    assert check.passed, check.to_dict()


@pytest.mark.tensorrt
def test_engine_deploy_chain_check_ship_predict(tmp_path: Path) -> None:
    """build -> check (writes the engine's parity record) -> ship (tensorrt_plan) -> Predictor on
    TensorRT, whose answers equal ONNX Runtime's; a pixel-input engine takes uint8 NHWC."""
    from google.protobuf import text_format

    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from resnet_deploy import Predictor, create_model
    from resnet_deploy.parity import compare
    from resnet_deploy.pixels import add_pixel_input
    from resnet_deploy.records import record_check
    from resnet_deploy.ship import ship

    export_onnx(create_model("resnet20", weights="random", seed=4), tmp_path / "m.onnx")  # in-memory: ships
    for src in (tmp_path / "m.onnx", Path(add_pixel_input(tmp_path / "m.onnx").path)):
        plan = Path(build_engine(src, src.with_suffix(".plan"), min_batch=1, opt_batch=4, max_batch=16).path)
        checked = compare(plan, src, batch_sizes=(1, 4))
        assert checked.passed
        record_check(plan, checked)
        report = ship(plan, tmp_path / "repo", name=src.stem.replace(".", "_"))
        config = model_config_pb2.ModelConfig()
        text_format.Parse((Path(report.model_dir) / "config.pbtxt").read_text(), config)
        assert config.platform == "tensorrt_plan" and config.max_batch_size == 16
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for _ in range(20)]
        with Predictor.from_artifact(plan, backend="tensorrt") as trt_p, Predictor.from_artifact(src) as ort_p:
            assert trt_p.batch_size == 16
            a, b = trt_p.predict(images), ort_p.predict(images)
        assert [x.indices[0] for x in a] == [x.indices[0] for x in b]
        assert np.allclose([x.probabilities for x in a], [x.probabilities for x in b], atol=1e-3)
