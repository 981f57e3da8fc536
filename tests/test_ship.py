"""ship: Triton model repositories, validated with Triton's own model-config schema."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from resnet_deploy import ConfigError, EngineError, create_model, export_onnx
from resnet_deploy.cli import app
from resnet_deploy.engine import sidecar_path
from resnet_deploy.pixels import add_pixel_input
from resnet_deploy.records import read_record, record_path, write_record
from resnet_deploy.ship import ShipRefused, ship
from resnet_deploy.weights import sha256_file
from tests.helpers import assert_one_line_error
from tests.test_engine import make_sidecar


def parse(path: Path) -> Any:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


@pytest.fixture()
def artifact(digits_onnx: Path, tmp_path: Path) -> Path:
    """A private copy of the trained, verified digits ONNX and its parity record."""
    dst = tmp_path / "digits.onnx"
    dst.write_bytes(digits_onnx.read_bytes())
    record_path(dst).write_text(record_path(digits_onnx).read_text())
    return dst


def test_onnx_model_repository(artifact: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    report = ship(artifact, repo, preferred_batch="4,8", max_batch=16, instances=2, kind="cpu")
    model = repo / "resnet20"
    assert report.validated_with.endswith("ModelConfig") and not report.forced
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*")) == [
        "1",
        "1/model.onnx",
        "1/model.onnx.parity.json",
        "config.pbtxt",
        "labels.txt",
    ]
    assert (model / "1" / "model.onnx").read_bytes() == artifact.read_bytes()
    c = parse(model / "config.pbtxt")
    assert c.name == "resnet20" and c.platform == "onnxruntime_onnx" and c.max_batch_size == 16
    (inp,) = c.input
    assert inp.name == "input" and inp.data_type == model_config_pb2.TYPE_FP32 and list(inp.dims) == [3, 32, 32]
    assert inp.format == model_config_pb2.ModelInput.FORMAT_NCHW
    (out,) = c.output
    assert out.name == "logits" and list(out.dims) == [10] and out.label_filename == "labels.txt"
    assert list(c.dynamic_batching.preferred_batch_size) == [4, 8]
    assert c.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = c.instance_group
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    labels = (model / "labels.txt").read_text().splitlines()
    assert len(labels) == 10 and labels[0] == "airplane"  # resnet20's CIFAR-10 names
    onnx.checker.check_model(str(model / "1" / "model.onnx"))


def test_pixel_model_and_accelerator(artifact: Path, tmp_path: Path) -> None:
    px = Path(add_pixel_input(artifact, tmp_path / "px.onnx").path)
    labels = tmp_path / "digits.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    ship(px, tmp_path / "repo", name="digits-px", accelerator="fp16", labels=labels)
    model = tmp_path / "repo" / "digits-px"
    c = parse(model / "config.pbtxt")
    (inp,) = c.input
    assert inp.data_type == model_config_pb2.TYPE_UINT8 and list(inp.dims) == [32, 32, 3]
    assert inp.format == model_config_pb2.ModelInput.FORMAT_NHWC
    assert c.max_batch_size == 64 and c.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    (acc,) = c.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"
    assert (model / "labels.txt").read_text().splitlines()[3] == "digit 3"


def test_refuses_without_evidence(artifact: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    rec = record_path(artifact)
    saved = rec.read_text()
    rec.unlink()
    with pytest.raises(ShipRefused, match="has no parity record"):
        ship(artifact, repo)
    data = json.loads(saved)
    rec.write_text(json.dumps({**data, "sha256": "0" * 64}))
    with pytest.raises(ShipRefused, match="for other bytes"):
        ship(artifact, repo)
    rec.write_text(json.dumps({**data, "passed": False}))
    with pytest.raises(ShipRefused, match="failed its last parity check"):
        ship(artifact, repo)
    assert not repo.exists()  # nothing written by a refusal
    report = ship(artifact, repo, force=True)
    assert report.forced and "SHIPPED WITH --force" in (repo / "resnet20" / "config.pbtxt").read_text()


def test_refuses_random_weights(tmp_path: Path) -> None:
    out = tmp_path / "r.onnx"
    export_onnx("resnet20", out, weights="random")
    assert read_record(out) is not None and read_record(out).passed  # type: ignore[union-attr]
    with pytest.raises(ShipRefused, match="random"):
        ship(out, tmp_path / "repo")


def test_versions_replace_and_fixed_batch(artifact: Path, digits: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ship(artifact, repo, name="m")
    with pytest.raises(ConfigError, match="exists"):
        ship(artifact, repo, name="m")
    ship(artifact, repo, name="m", version=2)
    ship(artifact, repo, name="m", replace=True)
    assert sorted(p.name for p in (repo / "m").iterdir()) == ["1", "2", "config.pbtxt", "labels.txt"]
    with pytest.raises(ConfigError, match="preferred"):
        ship(artifact, repo, name="n", max_batch=8, preferred_batch="4,16")
    with pytest.raises(ConfigError, match="model name"):
        ship(artifact, repo, name="../escape")
    fixed = tmp_path / "b4.onnx"
    export_onnx(digits.model, fixed, batch=4)
    report = ship(fixed, repo, name="fixed")
    c = parse(repo / "fixed" / "config.pbtxt")
    assert c.max_batch_size == 0 and list(c.input[0].dims) == [4, 3, 32, 32] and list(c.output[0].dims) == [4, 10]
    assert not c.HasField("dynamic_batching") and report.warnings
    with pytest.raises(ConfigError, match="fixed batch"):
        ship(fixed, repo, name="fixed2", max_batch=8)


def fake_plan(tmp_path: Path, onnx_path: Path, min_b: int = 1, max_b: int = 32) -> Path:
    """An opaque blob with a consistent sidecar: ship never deserializes plans, so its logic is
    testable without TensorRT (the bytes only have to match the sidecar's sha256)."""
    plan = tmp_path / "digits.plan"
    data = b"not really a TensorRT plan" * 10
    plan.write_bytes(data)
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    sidecar = make_sidecar(
        data,
        tensorrt_version="10.13.0",
        precision="fp32",
        profile={"min": [min_b, 3, 32, 32], "opt": [8, 3, 32, 32], "max": [max_b, 3, 32, 32]},
        source_onnx=str(onnx_path),
        source_onnx_sha256=sha256_file(onnx_path),
        metadata=meta,
    )
    sidecar_path(plan).write_text(json.dumps(sidecar.to_dict()))
    return plan


def test_engine_repository(artifact: Path, tmp_path: Path) -> None:
    plan = fake_plan(tmp_path, artifact)
    repo = tmp_path / "repo"
    with pytest.raises(ShipRefused, match="check .*--reference"):
        ship(plan, repo)  # built, never checked against its ONNX
    write_record(plan, sha256=sha256_file(plan), passed=True, step="check", reference="x", tolerance="t", results=[])
    with pytest.raises(ConfigError, match="exceeds the engine's profile"):
        ship(plan, repo, max_batch=64)
    with pytest.raises(ConfigError, match="GPU instances only"):
        ship(plan, repo, kind="cpu")
    report = ship(plan, repo)
    assert report.max_batch_size == 32
    model = repo / "resnet20"
    assert sorted(p.name for p in (model / "1").iterdir()) == [
        "model.plan",
        "model.plan.json",
        "model.plan.parity.json",
    ]
    c = parse(model / "config.pbtxt")
    assert c.platform == "tensorrt_plan" and c.max_batch_size == 32 and list(c.input[0].dims) == [3, 32, 32]
    assert "TensorRT 10.13.0" in (model / "config.pbtxt").read_text()
    plan.write_bytes(plan.read_bytes() + b"x")  # altered after its sidecar was written
    with pytest.raises(EngineError, match="does not match its sidecar"):
        ship(plan, repo, name="other")
    (tmp_path / "min2").mkdir()
    min2 = fake_plan(tmp_path / "min2", artifact, min_b=2)
    write_record(min2, sha256=sha256_file(min2), passed=True, step="check", reference="x", tolerance="t", results=[])
    with pytest.raises(ConfigError, match="--min-batch 1"):
        ship(min2, repo, name="min2")


def test_ship_cli(artifact: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    repo = tmp_path / "repo"
    result = runner.invoke(app, ["ship", str(artifact), "--repo", str(repo), "--name", "digits", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["platform"] == "onnxruntime_onnx" and data["name"] == "digits" and data["max_batch_size"] == 64
    result = runner.invoke(app, ["ship", str(artifact), "--repo", str(repo), "--name", "digits"])
    assert_one_line_error(result.exit_code, result.stderr, "exists", exit_code=2)
    record_path(artifact).unlink()
    result = runner.invoke(app, ["ship", str(artifact), "--repo", str(repo), "--name", "d2"])
    assert_one_line_error(result.exit_code, result.stderr, "no parity record", exit_code=1)
    result = runner.invoke(app, ["ship", str(tmp_path / "nope.onnx"), "--repo", str(repo)])
    assert_one_line_error(result.exit_code, result.stderr, "not found", exit_code=2)
    random = tmp_path / "random.onnx"
    export_onnx(create_model("resnet20", weights="random"), random)
    result = runner.invoke(app, ["ship", str(random), "--repo", str(repo), "--name", "r", "--force"])
    assert result.exit_code == 0 and "shipped with --force" in result.stderr


def test_one_config_serves_every_version(artifact: Path, tmp_path: Path) -> None:
    """Triton reads one config.pbtxt for all versions of a model: a version that would change the
    platform, input, output or batch limit of the others is refused, whichever number it has."""
    repo = tmp_path / "repo"
    ship(artifact, repo, name="m", version=2)
    px = Path(add_pixel_input(artifact, tmp_path / "px.onnx").path)
    with pytest.raises(ConfigError, match="another --name"):
        ship(px, repo, name="m", version=1)  # uint8 NHWC beside a float NCHW version 2
    with pytest.raises(ConfigError, match="another --name"):
        ship(artifact, repo, name="m", version=3, max_batch=8)
    ship(artifact, repo, name="m", version=3, instances=4)  # serving settings may change
    assert "count: 4" in (repo / "m" / "config.pbtxt").read_text()
    with pytest.raises(ConfigError, match="another --name"):
        ship(px, repo, name="m", version=2, replace=True)  # version 3 stays float
    assert sorted(p.name for p in (repo / "m").iterdir()) == ["2", "3", "config.pbtxt", "labels.txt"]
    (repo / "m" / "3").rename(repo / "m" / "old3")  # leave version 2 alone: it may be replaced
    import shutil

    shutil.rmtree(repo / "m" / "old3")
    ship(px, repo, name="m", version=2, replace=True)
    assert "TYPE_UINT8" in (repo / "m" / "config.pbtxt").read_text()


def test_bad_values_never_reach_the_repository(artifact: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with pytest.raises(ConfigError, match="--version"):
        ship(artifact, repo, version=2**63)  # Triton's stoll would abort the server
    with pytest.raises(ConfigError, match="--no-dynamic-batching"):
        ship(artifact, repo, preferred_batch="8", max_queue_delay_us=None)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("\n".join(f"caf\xe9 {i}" for i in range(10)).encode("latin-1"))
    with pytest.raises(ConfigError, match="UTF-8"):
        ship(artifact, repo, labels=bad)
    assert not repo.exists()
    odd = tmp_path / 'evil"\nmax_batch_size: 7\n#.onnx'
    odd.write_bytes(artifact.read_bytes())
    ship(odd, repo, name="odd", force=True)  # no record for this copy
    c = parse(repo / "odd" / "config.pbtxt")
    assert c.max_batch_size == 64  # the file name stayed inside a comment


def test_a_self_check_is_no_evidence(artifact: Path, tmp_path: Path) -> None:
    from resnet_deploy.parity import compare

    copy = tmp_path / "copy.onnx"
    copy.write_bytes(artifact.read_bytes())
    with pytest.raises(ConfigError, match="is the candidate itself"):
        compare(copy, artifact)
    runner = CliRunner()
    result = runner.invoke(app, ["check", str(copy), "--reference", str(copy)])
    assert_one_line_error(result.exit_code, result.stderr, "candidate itself", exit_code=2)
    assert not record_path(copy).exists()
    px = Path(add_pixel_input(artifact, tmp_path / "px.onnx").path)
    result = runner.invoke(app, ["check", str(px), "--reference", str(artifact)])
    assert result.exit_code == 0, result.stderr
    record = read_record(px)
    assert record is not None and record.step == "check" and str(artifact.resolve()) in record.reference


@pytest.mark.serve
def test_triton_itself_validates_the_repository(artifact: Path, digits: Any, tmp_path: Path) -> None:
    """The tritonserver binary PyTriton bundles (Triton's own core) polls the repository: every
    config we write passes its model-config validation and fails only where this CPU-only build has
    no onnxruntime / tensorrt backend library. A broken config in the same repository is the
    control: Triton rejects that one at poll time."""
    import re
    import subprocess

    pytriton = pytest.importorskip("pytriton", reason="needs the serve extra (it bundles tritonserver)")
    from benchmarks.serve_load import free_ports

    root = Path(pytriton.__file__).parent / "tritonserver"
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    repo = tmp_path / "repo"
    ship(artifact, repo, name="float", kind="cpu", preferred_batch="4,8", instances=2)
    ship(Path(add_pixel_input(artifact, tmp_path / "px.onnx").path), repo, name="pixels", kind="cpu")
    ship(artifact, repo, name="accelerated", accelerator="fp16")
    fixed = tmp_path / "b4.onnx"
    export_onnx(digits.model, fixed, batch=4)
    ship(fixed, repo, name="fixed", kind="cpu")
    plan = fake_plan(tmp_path, artifact)
    write_record(plan, sha256=sha256_file(plan), passed=True, step="check", reference="x", tolerance="t", results=[])
    ship(plan, repo, name="engine")
    bad = repo / "broken"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text(
        (repo / "float" / "config.pbtxt")
        .read_text()
        .replace('"float"', '"broken"')
        .replace("[ 3, 32, 32 ]", "[ 3, 32 ]")
    )
    http, grpc, metrics = free_ports(3)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    r = subprocess.run(
        [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={root / 'backends'}",
            f"--http-port={http}",
            f"--grpc-port={grpc}",
            f"--metrics-port={metrics}",
            "--exit-on-error=true",
            "--disable-auto-complete-config",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    log = r.stdout + r.stderr
    assert re.search(r"Poll failed for model directory 'broken': model input NHWC/NCHW require 3 dims", log), log
    for name, backend in (
        ("float", "onnxruntime"),
        ("pixels", "onnxruntime"),
        ("accelerated", "onnxruntime"),
        ("fixed", "onnxruntime"),
        ("engine", "tensorrt"),
    ):
        assert f"Poll failed for model directory '{name}'" not in log
        assert (
            f"failed to load '{name}' version 1: Invalid argument: unable to find backend library for backend '{backend}'"
            in log
        ), log
