"""Every file the toolkit reads is a regular file under a size cap, checked before it is read.

Devices, FIFOs and links to them are refused with one line instead of being read until memory runs
out (``/dev/zero``) or waiting forever (a FIFO); oversized ONNX models, checkpoints that inflate past
what their architecture could need, decompression-bomb images and broken external data each get a
one-line error naming the file. Anything that could exhaust memory on a regression runs in a
subprocess under an address-space limit and a timeout, so a failure fails instead of killing the
machine; a FIFO read in-process is unblocked by a writer thread, so a regression fails, not hangs.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from resnet_deploy.cli import app
from resnet_deploy.errors import ConfigError, DataError, EngineError, WeightsError
from tests.helpers import assert_one_line_error

GiB = 1 << 30
MEMORY_LIMIT = 6 * GiB  # torch + onnx + onnxruntime take ~3.3 GB of address space on their own
ROOT = Path(__file__).resolve().parents[1]


# -- helpers ---------------------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 120, memory: int = MEMORY_LIMIT) -> tuple[int, str, str]:
    """The real entry point in a subprocess, with an address-space limit and a timeout."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "resnet_deploy", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
            cwd=ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"resnet-deploy {' '.join(args)} did not finish in {timeout} s")
    return done.returncode, done.stdout, done.stderr


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO named ``x.onnx``; should the code under test open it and block, a writer opens and
    closes it after a few seconds, so the reader sees end-of-file and the test fails instead of hanging."""
    path = tmp_path / "x.onnx"
    os.mkfifo(path)
    stop = threading.Event()

    def unblock() -> None:
        while not stop.wait(3.0):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only while a reader waits
            except OSError:
                continue
            os.close(fd)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join(timeout=10)


def tiny_model(inputs: bool = True, outputs: bool = True) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])] if inputs else [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])] if outputs else [],
        [w],
    )
    return helper.make_model(graph)


def save_external(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.data", size_threshold=0
    )
    return path.parent / "w.data"


def write_zip(path: Path, members: list[tuple[str, bytes | tuple[bytes, int, int]]]) -> None:
    """A zip written by hand: stored members (bytes), or pre-deflated ones (raw deflate, crc, size)."""
    central = b""
    with open(path, "wb") as f:
        for name, body in members:
            raw = name.encode()
            if isinstance(body, bytes):
                method, data, crc, size = 0, body, zlib.crc32(body), len(body)
            else:
                method, (data, crc, size) = 8, body
            offset = f.tell()
            f.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 33, crc, len(data), size, len(raw), 0))
            f.write(raw)
            f.write(data)
            entry = (20, 20, 0, method, 0, 33, crc, len(data), size, len(raw), 0, 0, 0, 0, 0, offset)
            central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", *entry)
            central += raw
        start = f.tell()
        f.write(central)
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), start, 0))


def deflated_zeros(size: int) -> tuple[bytes, int, int]:
    """Raw deflate of ``size`` zero bytes, built from one full-flushed 16 MiB segment repeated
    (each segment is independent and byte-aligned), with its CRC: a 1.5 GiB member in a 1.5 MB file."""
    chunk = 16 << 20
    assert size % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush(zlib.Z_FINISH)
    crc = 0
    zeros = bytes(chunk)
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    return segment * (size // chunk) + tail, crc, size


# -- D4: non-regular and oversized paths -----------------------------------------------------------


def test_info_refuses_dev_zero_without_reading_it() -> None:
    code, _, err = run_cli("info", "/dev/zero")
    assert_one_line_error(code, err, "/dev/zero", "is a device, not a regular file", exit_code=2)


def test_a_link_to_a_device_is_refused_and_named(tmp_path: Path) -> None:
    link = tmp_path / "model.onnx"
    link.symlink_to("/dev/zero")
    code, _, err = run_cli("info", str(link))
    assert_one_line_error(code, err, "model.onnx", "/dev/zero", "is a device, not a regular file", exit_code=2)


def test_a_fifo_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.onnx"
    os.mkfifo(path)
    code, _, err = run_cli("info", str(path), timeout=60)
    assert_one_line_error(code, err, "x.onnx", "is a FIFO", exit_code=2)


def test_an_onnx_over_protobufs_limit_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:  # sparse: no disk used
        f.truncate(3 * GiB)
    code, _, err = run_cli("info", str(big))
    assert_one_line_error(code, err, "big.onnx", "is 3 GiB, over the 2 GiB limit for an ONNX model", exit_code=2)


def test_library_readers_refuse_a_fifo(fifo: Path, tmp_path: Path) -> None:
    from resnet_deploy.data import image_folder, load_image
    from resnet_deploy.models.labels import class_names
    from resnet_deploy.onnx_io import load_onnx
    from resnet_deploy.sidecar import Sidecar
    from resnet_deploy.weights import read_state_dict

    with pytest.raises(ConfigError, match="is a FIFO"):
        load_onnx(fifo)
    with pytest.raises(WeightsError, match="is a FIFO"):
        read_state_dict(fifo)
    with pytest.raises(DataError, match="is a FIFO"):
        load_image(fifo)
    with pytest.raises(ConfigError, match="is a FIFO"):
        class_names({"num_classes": "2"}, fifo)
    (tmp_path / "data" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="is a FIFO"):
        image_folder(tmp_path / "data", fifo)
    with pytest.raises(EngineError, match="is a FIFO"):
        Sidecar.from_file(fifo)


def test_library_readers_refuse_a_device(tmp_path: Path) -> None:
    from resnet_deploy.data import load_image
    from resnet_deploy.models.labels import class_names
    from resnet_deploy.sidecar import verify_plan

    with pytest.raises(DataError, match="is a device, not a regular file"):
        load_image("/dev/zero")
    with pytest.raises(ConfigError, match="is a device, not a regular file"):
        class_names({"num_classes": "2"}, "/dev/zero")
    plan = tmp_path / "m.plan"
    plan.symlink_to("/dev/zero")
    with pytest.raises(EngineError, match="is a device, not a regular file"):
        verify_plan(plan, None)


def test_weights_dev_zero_says_it_is_not_a_regular_file() -> None:
    """D19(c): it used to say the file 'holds pickled Python objects'."""
    from resnet_deploy.weights import read_state_dict

    with pytest.raises(WeightsError, match="/dev/zero is a device, not a regular file") as info:
        read_state_dict("/dev/zero")
    assert "pickled" not in str(info.value)
    code, _, err = invoke("export", "--depth", "20", "--weights", "/dev/zero", "-o", "/tmp/never.onnx")
    assert_one_line_error(code, err, "/dev/zero", "is a device, not a regular file")


def test_a_plan_that_is_not_its_sidecars_size_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from resnet_deploy import sidecar as sc

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x" * 100)
    fields = {f: "" for f in sc.Sidecar.__dataclass_fields__}
    fields.update(schema=sc.SIDECAR_SCHEMA, plan_size_bytes=10, metadata={}, version_compatible=False)
    fields.update(profile={"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [8, 3, 32, 32]})
    fields.update(build_seconds=0.0)
    sc.sidecar_path(plan).write_text(json.dumps(fields))
    calls: list[int] = []
    real = sc.read_bytes_capped

    def spy(path: object, kind: str, max_bytes: int, **kw: object) -> bytes:
        calls.append(max_bytes)
        return real(path, kind, max_bytes, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sc, "read_bytes_capped", spy)
    with pytest.raises(EngineError, match="does not match its sidecar"):
        sc.verify_plan(plan, None)
    assert all(c < 100 for c in calls)  # the plan's 100 bytes were never read


def test_small_json_and_text_files_have_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_deploy import records, sidecar
    from resnet_deploy.models import labels

    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"")
    records.record_path(artifact).write_text("{" + " " * 300 + "}")
    monkeypatch.setattr(records, "RECORD_MAX_BYTES", 100)
    assert records.read_record(artifact) is None  # too big: unreadable, like a corrupt record

    side = tmp_path / "m.plan.json"
    side.write_text("{" + " " * 300 + "}")
    monkeypatch.setattr(sidecar, "SIDECAR_MAX_BYTES", 100)
    with pytest.raises(EngineError, match="over the 100 B limit"):
        sidecar.Sidecar.from_file(side)

    names = tmp_path / "labels.txt"
    names.write_text("cat\n" * 100)
    monkeypatch.setattr(labels, "LABELS_MAX_BYTES", 100)
    with pytest.raises(ConfigError, match="over the 100 B limit for a labels file"):
        labels.class_names({"num_classes": "100"}, names)


# -- D16: an ONNX with no graph, inputs or outputs -------------------------------------------------


def test_a_zero_byte_onnx_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    code, _, err = invoke("info", str(empty))
    assert_one_line_error(code, err, "empty.onnx", "empty", exit_code=2)


@pytest.mark.parametrize("inputs, outputs, needle", [(False, True, "no inputs"), (True, False, "no outputs")])
def test_an_onnx_without_inputs_or_outputs_is_refused(tmp_path: Path, inputs: bool, outputs: bool, needle: str) -> None:
    from resnet_deploy.onnx_io import load_onnx

    path = tmp_path / "m.onnx"
    onnx.save_model(tiny_model(inputs, outputs), str(path))
    with pytest.raises(ConfigError, match=needle):
        load_onnx(path)
    code, _, err = invoke("info", str(path))
    assert_one_line_error(code, err, "m.onnx", needle, exit_code=2)


# -- D19(d): external data -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "breakage, needle",
    [
        ("missing", "not found"),
        ("folder", "is a folder"),
        ("fifo", "is a FIFO"),
        ("device", "is a device, not a regular file"),
        ("short", "too short"),
        ("long", "more than"),
    ],
)
def test_unreadable_external_data_is_named(tmp_path: Path, breakage: str, needle: str) -> None:
    from resnet_deploy.onnx_io import load_onnx

    path = tmp_path / "m.onnx"
    data = save_external(tiny_model(), path)
    assert load_onnx(path).graph.initializer[0].raw_data  # intact: loads
    good = data.read_bytes()
    data.unlink()
    if breakage == "folder":
        data.mkdir()
    elif breakage == "fifo":
        os.mkfifo(data)
    elif breakage == "device":
        data.symlink_to("/dev/zero")
    elif breakage == "short":
        data.write_bytes(good[:-4])
    elif breakage == "long":
        data.write_bytes(good + bytes(1 << 20))
    if breakage == "long":  # the tensor records no length: onnx would read the whole file
        t = onnx.load(str(path), load_external_data=False)
        entries = [(e.key, e.value) for e in t.graph.initializer[0].external_data if e.key != "length"]
        del t.graph.initializer[0].external_data[:]
        for k, v in entries:
            t.graph.initializer[0].external_data.add(key=k, value=v)
        onnx.save_model(t, str(path))
    with pytest.raises(ConfigError, match=needle) as info:
        load_onnx(path)
    assert "w.data" in str(info.value) and "m.onnx" in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    load_onnx(path, load_weights=False)  # the graph alone still reads


# -- D11: checkpoints that inflate -----------------------------------------------------------------


def _bomb_checkpoint(tmp_path: Path, inflated: int) -> Path:
    """A real torch.save'd resnet20 checkpoint whose largest storage record is replaced by
    ``inflated`` bytes of zeros, deflated (a few MB on disk)."""
    from resnet_deploy import create_model

    net = create_model("resnet20")
    good = tmp_path / "good.pth"
    torch.save(net.state_dict(), good)
    with zipfile.ZipFile(good) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    biggest = max((m for m in members if "/data/" in m[0]), key=lambda m: len(m[1]))[0]
    bomb = tmp_path / "bomb.pth"
    write_zip(bomb, [(n, deflated_zeros(inflated) if n == biggest else b) for n, b in members])
    assert bomb.stat().st_size < 8 << 20
    return bomb


def test_a_zip_checkpoint_that_inflates_past_the_architecture_is_refused(tmp_path: Path) -> None:
    bomb = _bomb_checkpoint(tmp_path, 1536 << 20)
    code, _, err = run_cli("export", "--depth", "20", "--weights", str(bomb), "-o", str(tmp_path / "o.onnx"))
    assert_one_line_error(code, err, "bomb.pth", "inflates to 1.5 GiB", "resnet20")
    assert not (tmp_path / "o.onnx").exists()


def test_checkpoint_caps_without_an_architecture(tmp_path: Path) -> None:
    from resnet_deploy.weights import read_state_dict

    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(1000)}, legacy, _use_new_zipfile_serialization=False)
    assert read_state_dict(legacy)["w"].shape == (1000,)
    with pytest.raises(WeightsError, match="over the 1000 B limit"):
        read_state_dict(legacy, max_bytes=1000)  # the legacy format: bounded by its file size
    bomb = _bomb_checkpoint(tmp_path, 16 << 20)  # 16 MiB inflated from a few KB
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(WeightsError, match=r"inflates to 1[67](\.\d)? MiB .*, over the 8 MiB limit for a checkpoint"):
        read_state_dict(bomb, max_bytes=8 << 20)


def test_a_checkpoint_within_budget_still_loads(tmp_path: Path) -> None:
    from resnet_deploy import create_model
    from resnet_deploy.models.weights import checkpoint_budget, load_weights

    net = create_model("resnet20")
    budget = checkpoint_budget(net)
    params = sum(t.numel() for t in net.state_dict().values())
    assert params * 8 < budget < 256 << 20
    path = tmp_path / "r20.pth"
    torch.save({"model": net.state_dict(), "optimizer": {"a": torch.zeros(params, dtype=torch.float64)}}, path)
    assert load_weights(create_model("resnet20"), str(path)).source == "file"


# -- D19(a): decompression bombs -------------------------------------------------------------------


@pytest.mark.parametrize("megapixels", [90, 180])
def test_an_image_over_the_pixel_cap_is_refused_without_a_warning(tmp_path: Path, megapixels: int) -> None:
    from PIL import Image

    from resnet_deploy.data import load_image

    side = int((megapixels * 1e6) ** 0.5) + 1
    path = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="over the .* pixel limit") as info:
            load_image(path)
    assert not [w for w in seen if "DecompressionBomb" in type(w.message).__name__ or "bomb" in str(w.message)]
    assert "huge.png" in str(info.value) and len(str(info.value).splitlines()) == 1


# -- safeio itself ---------------------------------------------------------------------------------


def test_safeio_messages(tmp_path: Path) -> None:
    from resnet_deploy import safeio

    f = tmp_path / "a.bin"
    f.write_bytes(b"12345")
    assert safeio.read_bytes_capped(f, "thing", 5, error=DataError) == b"12345"
    assert safeio.check_readable(f, "thing", 5, error=DataError) == f
    with pytest.raises(DataError, match=r"a\.bin is 5 B, over the 4 B limit for a thing$"):
        safeio.read_bytes_capped(f, "thing", 4, error=DataError)
    with pytest.raises(EngineError, match="thing not found"):
        safeio.check_readable(tmp_path / "nope", "thing", 5, error=EngineError)
    with pytest.raises(EngineError, match="custom"):
        safeio.check_readable(tmp_path / "nope", "thing", 5, error=EngineError, missing="custom")
    with pytest.raises(DataError, match="is a folder"):
        safeio.check_readable(tmp_path, "thing", 5, error=DataError)
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="not UTF-8 text"):
        safeio.read_text_capped(tmp_path / "bad.txt", "thing", 5, error=DataError)
    assert safeio.human_size(2 * GiB) == "2 GiB" and safeio.human_size(1536 << 20) == "1.5 GiB"
    assert safeio.human_size((1 << 31) - 1) == "2 GiB"


# -- the readers that hand a path to another library: TensorRT, onnxruntime, the calibration cache --


def test_timing_cache_reads_are_checked(tmp_path: Path, fifo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_deploy import engine

    assert engine.read_timing_cache(None) == b"" and engine.read_timing_cache(tmp_path / "new.cache") == b""
    with pytest.raises(EngineError, match="timing cache .* is a FIFO"):
        engine.read_timing_cache(fifo)
    link = tmp_path / "zero.cache"
    link.symlink_to("/dev/zero")
    with pytest.raises(EngineError, match="is a device, not a regular file"):
        engine.read_timing_cache(link)
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"x" * 200)
    assert engine.read_timing_cache(cache) == b"x" * 200
    monkeypatch.setattr(engine, "TIMING_CACHE_MAX_BYTES", 100)
    with pytest.raises(EngineError, match="over the 100 B limit for a timing cache"):
        engine.read_timing_cache(cache)


def test_external_data_is_checked_before_onnxruntime_or_tensorrt_open_it(tmp_path: Path) -> None:
    from resnet_deploy.engine import onnx_profile
    from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner

    path = tmp_path / "m.onnx"
    data = save_external(tiny_model(), path)
    data.unlink()
    os.mkfifo(data)
    with pytest.raises(ConfigError, match="w.data is a FIFO"):
        OnnxRuntimeRunner(path)
    with pytest.raises(ConfigError, match="w.data is a FIFO"):
        onnx_profile(path, 1, 1, 1)


def test_an_unreadable_calibration_cache_entry_is_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_deploy import calibration

    monkeypatch.setenv(calibration.CACHE_ENV, str(tmp_path))
    folder = tmp_path / "calibration"
    folder.mkdir()
    os.mkfifo(folder / "k.json")
    path, state, note = calibration.prepare_cache(True, "k")
    assert state == "miss" and note is not None and "is a FIFO" in note and not path.exists()
    (folder / "k.json").write_text("{}")
    assert calibration.prepare_cache(True, "k")[1] == "hit"
