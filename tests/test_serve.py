"""serve: a real Triton Inference Server (PyTriton) on loopback, real tritonclient over HTTP and gRPC.

The server runs as a subprocess exactly as a user starts it (``python -m resnet_deploy serve``);
the tests check its answers against the Predictor's, its refusals of bad requests, a bounded load
test through the dynamic batcher, and clean shutdown (exit 0, no orphaned tritonserver).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.serve_load import Server, alive, free_ports, metrics, run_load, start_server, stop_server
from resnet_deploy import Predictor
from resnet_deploy.data import list_images
from resnet_deploy.pixels import add_pixel_input
from resnet_deploy.serve import busy_ports, fix_libpython_path
from tests.helpers import assert_one_line_error

pytest.importorskip("pytriton", reason='needs the serve extra: pip install "resnet-deploy[serve]"')
tg = pytest.importorskip("tritonclient.grpc")
th = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.serve
MAX_BATCH = 16


@pytest.fixture(scope="module")
def images(digits: Any) -> list[Path]:
    return list_images(digits.test_dir)[:48]


@pytest.fixture(scope="module")
def server(digits_onnx: Path) -> Iterator[Server]:
    s = start_server(digits_onnx, "--name", "digits", "--max-batch", str(MAX_BATCH), "--max-queue-delay-us", "2000")
    try:
        yield s
    finally:
        code, _, orphans = stop_server(s, signal.SIGTERM)
        assert code == 0 and not orphans, (code, orphans, "".join(s.stderr_lines)[-1000:])
        assert "stopped (SIGTERM)" in "".join(s.stderr_lines)
        assert s.proc.stdout is not None and s.proc.stdout.read() == ""  # --json: one line, nothing else


def infer(client: Any, mod: Any, x: np.ndarray, name: str = "digits", dtype: str = "FP32") -> np.ndarray:
    inp = mod.InferInput("input", list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    kwargs = {"client_timeout": 30} if mod is tg else {}
    return np.asarray(client.infer(name, [inp], **kwargs).as_numpy("logits"))


def test_ready_metadata_and_config(server: Server) -> None:
    info = server.info
    assert info["model"] == "digits" and info["max_batch_size"] == MAX_BATCH and info["libpython"]
    assert info["input"] == {"name": "input", "dtype": "float32", "shape": [-1, 3, 32, 32], "format": "float32-nchw"}
    h = th.InferenceServerClient(server.http)
    assert h.is_server_live() and h.is_server_ready() and h.is_model_ready("digits")
    meta = h.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    config = h.get_model_config("digits")
    assert config["max_batch_size"] == MAX_BATCH and config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    g = tg.InferenceServerClient(server.grpc)
    assert g.is_server_ready() and g.is_model_ready("digits")
    ready = urllib.request.urlopen(f"{info['http']}/v2/health/ready", timeout=10)
    assert ready.status == 200
    text = urllib.request.urlopen(info["metrics"], timeout=10).read().decode()
    assert 'nv_inference_request_success{model="digits"' in text


def test_answers_equal_the_predictor(server: Server, digits_onnx: Path, images: list[Path]) -> None:
    with Predictor.from_artifact(digits_onnx) as p:
        x = np.stack([p.preprocess(f) for f in images[:12]])
        want = p.logits(x)
        preds = p.predict(images[:12])
    for mod, url in ((th, server.http), (tg, server.grpc)):
        client = mod.InferenceServerClient(url)
        got = np.concatenate([infer(client, mod, x[:5]), infer(client, mod, x[5:6]), infer(client, mod, x[6:])])
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5), np.abs(got - want).max()
        assert [int(i) for i in got.argmax(1)] == [pr.indices[0] for pr in preds]


def test_bad_requests_get_errors_and_the_server_keeps_serving(server: Server) -> None:
    h = th.InferenceServerClient(server.http)
    g = tg.InferenceServerClient(server.grpc)
    good = np.zeros((1, 3, 32, 32), np.float32)
    cases = [
        (np.zeros((1, 3, 31, 32), np.float32), "FP32", "unexpected shape"),
        (np.zeros((1, 3, 32, 32), np.float64), "FP64", "data-type is 'FP64'"),
        (np.zeros((1, 3, 32, 32), np.int32), "INT32", "data-type is 'INT32'"),
        (np.zeros((MAX_BATCH + 1, 3, 32, 32), np.float32), "FP32", f"batch-size must be <= {MAX_BATCH}"),
    ]
    for client, mod in ((h, th), (g, tg)):
        for x, dtype, message in cases:
            with pytest.raises(InferenceServerException, match=message):
                infer(client, mod, x, dtype=dtype)
        with pytest.raises(InferenceServerException, match="unknown model|not found"):
            infer(client, mod, good, name="nope")
    for body in (b"\x00\xffgarbage bytes\x13", b"{not json", b"{}"):
        req = urllib.request.Request(
            f"{server.info['http']}/v2/models/digits/infer", data=body, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert 400 <= e.value.code < 600
    assert h.is_server_live() and h.is_model_ready("digits")
    assert infer(h, th, good).shape == (1, 10) and infer(g, tg, good).shape == (1, 10)


def test_bounded_load_batches_requests(server: Server, digits_onnx: Path, images: list[Path]) -> None:
    with Predictor.from_artifact(digits_onnx) as p:
        x = np.stack([p.preprocess(f) for f in images])
    result = run_load(server, x, clients=8, requests=200, protocol="grpc")
    assert result.failed == 0 and result.ok == 1600, result.errors
    assert result.inferences == 1600
    assert result.mean_batch > 1.0, result  # the dynamic batcher merged concurrent requests
    assert max(result.batch_stats) > 1 and sum(b * n for b, n in result.batch_stats.items()) >= 1600
    assert result.p50_ms > 0 and result.p99_ms >= result.p50_ms and result.requests_per_s > 0
    after = metrics(server.info["metrics"], "digits")
    assert after.get("nv_inference_request_failure[BACKEND]", 0) == 0


def test_pixel_model_sigint_and_no_orphans(digits_onnx: Path, images: list[Path], tmp_path: Path) -> None:
    px = Path(add_pixel_input(digits_onnx, tmp_path / "digits.px.onnx").path)
    workspace_root = Path(os.environ.get("PYTRITON_HOME", Path.home() / ".cache" / "pytriton"))
    before = set(workspace_root.glob("workspace_*")) if workspace_root.exists() else set()
    s = start_server(px, "--instances", "2", "--threads", "1")
    try:
        assert s.info["input"] == {"name": "input", "dtype": "uint8", "shape": [-1, 32, 32, 3], "format": "uint8-nhwc"}
        kids = s.children()
        assert kids and all(alive(k) for k in kids)  # tritonserver runs as our child
        with Predictor.from_artifact(px) as p:
            pixels = np.stack([p.preprocess(f) for f in images[:8]])
            want = p.logits(pixels)
        got = infer(th.InferenceServerClient(s.http), th, pixels, name="resnet20", dtype="UINT8")
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5)
    finally:
        code, seconds, orphans = stop_server(s, signal.SIGINT)
    assert code == 0 and not orphans and seconds < 30
    assert "stopped (SIGINT)" in "".join(s.stderr_lines)
    after = set(workspace_root.glob("workspace_*")) if workspace_root.exists() else set()
    assert after == before  # PyTriton's workspace was removed


def test_busy_port_and_bad_artifact_are_one_line_errors(digits_onnx: Path, tmp_path: Path) -> None:
    http, grpc, metrics_port = free_ports(3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", http))
        s.listen()
        assert busy_ports("127.0.0.1", [http, grpc]) == [http]
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "resnet_deploy", "serve", str(digits_onnx)]
        ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics_port)]
        r = subprocess.run(cmd + ports, capture_output=True, text=True, timeout=120)
        assert_one_line_error(r.returncode, r.stderr, f"port {http}", "in use", exit_code=2)
        assert time.perf_counter() - t0 < 60  # not PyTriton's 120 s readiness poll
    r = subprocess.run(
        [sys.executable, "-m", "resnet_deploy", "serve", str(tmp_path / "missing.onnx"), *ports],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(r.returncode, r.stderr, "not found", exit_code=2)
    r = subprocess.run(
        [sys.executable, "-m", "resnet_deploy", "serve", str(digits_onnx), "--http-port", "1", "--grpc-port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(r.returncode, r.stderr, "distinct ports", exit_code=2)


def test_libpython_goes_first_on_the_library_path() -> None:
    env = {"LD_LIBRARY_PATH": "/opt/x:/opt/y"}
    libdir = fix_libpython_path(env)
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        assert libdir is None
        return
    assert libdir == sysconfig.get_config_var("LIBDIR")
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x:/opt/y"
    fix_libpython_path(env)  # idempotent
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x:/opt/y"
    assert fix_libpython_path({}) == libdir


def test_model_id_name_fp16_io_and_interrupted_start(tmp_path: Path, digits_onnx: Path) -> None:
    from resnet_deploy.precision import to_fp16

    s = start_server("resnet20", "--backend", "torch")  # a zoo id: served under its own name
    try:
        assert s.info["model"] == "resnet20" and s.info["runner"]["runner"] == "torch"
    finally:
        assert stop_server(s)[0] == 0
    half = Path(to_fp16(digits_onnx, tmp_path / "half.onnx", keep_io_types=False).path)
    s = start_server(half)
    try:  # fp16 in, fp16 out: the same types as the shipped repository declares
        assert s.info["input"]["dtype"] == "float16" and s.info["output"]["dtype"] == "float16"
        x = np.zeros((2, 3, 32, 32), np.float16)
        got = infer(th.InferenceServerClient(s.http), th, x, name="resnet20", dtype="FP16")
        assert got.dtype == np.float16 and got.shape == (2, 10)
    finally:
        assert stop_server(s)[0] == 0
    http, grpc, metrics_port = free_ports(3)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics_port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "resnet_deploy", "serve", str(digits_onnx), *ports],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # Ctrl-C while Triton is starting
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert_one_line_error(proc.returncode, err, "interrupted", exit_code=130)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(f"--http-port {http}" in c for c in _cmdlines()):
        time.sleep(0.2)
    assert not any(f"--http-port {http}" in c for c in _cmdlines())  # no tritonserver left behind


def _cmdlines() -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return out


def test_unusable_address_is_a_one_line_error(digits_onnx: Path) -> None:
    for address, needle in (("nosuch.invalid", "--address nosuch.invalid"), ("10.255.255.1", "cannot listen")):
        r = subprocess.run(
            [sys.executable, "-m", "resnet_deploy", "serve", str(digits_onnx), "--address", address],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_one_line_error(r.returncode, r.stderr, needle, exit_code=2)
