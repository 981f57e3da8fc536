"""Issue 12's smaller promises, each reproduced first (every test here failed before its fix):
symlinked outputs (D3), shipped external data (D5), escaped output (D7), an interrupt inside torch's
exporter (D8), stale temps swept (D9), the record written before the rename (D10), whole-name
checks (D12), bounded batch sizes (D13), meaningful tolerances (D14), clear errors for bad seeds,
counts, repositories and full disks (D15), long names (D17), a closed stdout (D18) and host code
as an explicit opt-in.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from resnet_deploy.cli import app
from resnet_deploy.errors import ConfigError, EngineError
from resnet_deploy.records import read_record, record_path, record_problem
from resnet_deploy.reports import sha256_file, sweep_stale_temps
from tests.helpers import assert_one_line_error

cli = CliRunner()
EXE = Path(sys.executable).parent / "resnet-deploy"
CMD = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "resnet_deploy.cli"]


def run(*args: str) -> tuple[int, str, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_proc(*args: str, cwd: Path | None = None, **popen: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.update(popen.pop("env", {}))  # type: ignore[call-overload]
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*CMD, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, **popen
    )


@pytest.fixture(scope="module")
def r20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified random-weight ResNet-20 (with its parity record)."""
    out = tmp_path_factory.mktemp("r20") / "r20.onnx"
    code, _, err = run("export", "--depth", "20", "--weights", "random", "-o", str(out))
    assert code == 0, err
    return out


# ------------------------------------------------------------------------------ D3: symlinked -o


def test_convert_through_a_symlink_names_the_path_given(r20: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    target = other / "target.bin"
    target.write_bytes(b"not a model")
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    code, out, err = run("convert", str(r20), "--precision", "fp16", "-o", str(link), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["path"] == str(link)  # the path the user gave, not the link's target
    assert not link.is_symlink() and link.is_file()  # the link was replaced; its target never written
    assert target.read_bytes() == b"not a model" and sorted(p.name for p in other.iterdir()) == ["target.bin"]
    record = read_record(link)
    assert record is not None and record.passed and record_problem(link, sha256_file(link)) is None


def test_export_through_a_symlink_names_the_path_given(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "model.onnx"
    link.symlink_to(tmp_path / "elsewhere" / "untouched.onnx")
    code, out, err = run("export", "--depth", "20", "-w", "random", "-o", str(link), "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == str(link)
    assert link.is_file() and not link.is_symlink() and not (tmp_path / "elsewhere" / "untouched.onnx").exists()


# ------------------------------------------------------------------------------ D5: external data


def test_ship_copies_external_data(r20: Path, tmp_path: Path) -> None:
    src = tmp_path / "ext" / "model.onnx"
    (src.parent / "weights").mkdir(parents=True)
    onnx.save(onnx.load(str(r20)), str(src), save_as_external_data=True, location="weights/model.data")
    assert (src.parent / "weights" / "model.data").is_file()
    code, _, err = run("check", str(src), "--reference", str(r20), "--batch-sizes", "1")  # a passing record
    assert code == 0, err
    repo = tmp_path / "repo"
    code, out, err = run("ship", str(src), "--repo", str(repo), "--kind", "cpu", "--force", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert "1/weights/model.data" in report["files"]
    shipped = Path(report["version_dir"]) / "model.onnx"
    session = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])  # loads its weights
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ref = ort.InferenceSession(str(r20), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], ref.run(None, {"input": x})[0], rtol=0, atol=0)


# ------------------------------------------------------------------------------ D7: control characters


def test_info_escapes_control_characters(r20: Path, tmp_path: Path) -> None:
    model = onnx.load(str(r20))
    model.metadata_props.add(key="note\x1b[2J", value="x\nerror: forged\x1b[31m\r")
    evil = tmp_path / "evil.onnx"
    onnx.save(model, str(evil))
    code, out, err = run("info", str(evil))
    assert code == 0, err
    assert "\x1b" not in out and "\r" not in out
    assert not any(line.startswith("error:") for line in out.splitlines())
    assert "x\\nerror: forged\\x1b[31m\\r" in out


def test_a_path_with_a_newline_stays_one_error_line(tmp_path: Path) -> None:
    code, _, err = run("info", str(tmp_path / "a\nerror: b.onnx"))
    assert_one_line_error(code, err, "a\\nerror: b.onnx")


# ------------------------------------------------------------------------------ D8: interrupt in the exporter


def test_an_interrupt_inside_torch_export_is_an_interrupt() -> None:
    """torch.export wraps a KeyboardInterrupt raised while it traces in its own error; the toolkit
    looks through the chain (a SIGTERM landing there said 'export failed', exit 1)."""
    import torch

    from resnet_deploy.export import _interrupted

    class Stopped(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyboardInterrupt

    with pytest.raises(BaseException) as caught:
        torch.onnx.export(Stopped(), (torch.zeros(1, 3),), dynamo=True)
    assert _interrupted(caught.value)
    assert not _interrupted(ValueError("an ordinary failure"))


# ------------------------------------------------------------------------------ D9: stale temps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temps_of_dead_processes_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / f".r20.onnx.{_dead_pid()}.abcd1234.tmp"
    alive = tmp_path / ".r20.onnx.1.abcd1234.tmp"  # pid 1 runs: never ours to remove
    foreign = tmp_path / ".other-tool.tmp"
    staging = tmp_path / f".resnet20.{_dead_pid()}.zz99yy88.tmp"  # ship's staging folder
    for p in (dead, alive, foreign):
        p.write_bytes(b"x" * 1000)
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"x")
    code, _, err = run("export", "--depth", "20", "-w", "random", "-o", str(tmp_path / "r20.onnx"))
    assert code == 0, err
    assert not dead.exists() and not staging.exists()
    assert alive.exists() and foreign.exists()
    assert sweep_stale_temps(tmp_path) == []


def test_quantizer_scratch_is_ours_and_swept_after_sigkill(r20: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "RESNET_DEPLOY_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["RESNET_DEPLOY_CACHE"] = str(tmp_path / "cache")  # no calibration cache hit: the quantizer calibrates
    args = [*CMD, "convert", str(r20), "--precision", "int8", "--calib", "random", "--calib-count", "64"]
    proc = subprocess.Popen([*args, "-o", str(tmp_path / "a.onnx")], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith("ort.quant.") for p in scratch.rglob("ort.quant.*")):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.skip("the quantizer finished before its scratch folder was seen")
    proc.kill()
    proc.wait()
    assert not any(p.name.startswith("ort.quant.") for p in scratch.iterdir())  # inside a folder of ours
    done = subprocess.run([*args, "-o", str(tmp_path / "b.onnx")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ours = [p.name for p in scratch.iterdir() if p.name.startswith((".resnet-deploy-scratch.", "ort.quant."))]
    assert ours == []  # the killed run's scratch swept, this run's removed


# ------------------------------------------------------------------------------ D10: record before rename


def test_a_record_that_cannot_be_written_leaves_no_artifact(r20: Path, tmp_path: Path) -> None:
    out = tmp_path / "r20.fp16.onnx"
    record_path(out).mkdir()  # the record cannot be written (as on a full disk): a folder is in its way
    code, _, err = run("convert", str(r20), "--precision", "fp16", "-o", str(out))
    assert code != 0 and "Traceback" not in err
    assert not out.exists()  # never an artifact without its record
    assert [p.name for p in tmp_path.iterdir()] == [record_path(out).name]


# ------------------------------------------------------------------------------ D12-D15: argument checks


def test_model_name_must_match_whole(r20: Path, tmp_path: Path) -> None:
    from resnet_deploy.triton import check_model_name

    with pytest.raises(ConfigError):
        check_model_name("resnet20\n")
    code, _, err = run("ship", str(r20), "--repo", str(tmp_path / "repo"), "--kind", "cpu", "--force", "--name", "r\n")
    assert_one_line_error(code, err, "model name", exit_code=2)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("command", ["check", "bench"])
def test_batch_sizes_are_bounded(r20: Path, command: str) -> None:
    code, _, err = run(command, str(r20), "--batch-sizes", "100000000")
    assert_one_line_error(code, err, "100000000", "4096", exit_code=2)


@pytest.mark.parametrize(
    "option", [("--rtol", "-1"), ("--min-cosine", "5"), ("--min-top1", "2"), ("--rtol", "nan"), ("--rtol", "1")]
)
def test_nonsensical_tolerances_are_usage_errors_and_keep_the_record(r20: Path, option: tuple[str, str]) -> None:
    before = record_path(r20).read_bytes()
    code, _, err = run("check", str(r20), "--reference", "torch", *option, "--batch-sizes", "1")
    assert_one_line_error(code, err, option[0], exit_code=2)
    assert record_path(r20).read_bytes() == before  # the passing record stays


@pytest.mark.parametrize(
    ("needle", "args"),
    [
        ("--seed", ("check", "--seed", "-1")),
        ("--seed", ("check", "--seed", "123456789012345678901234567890")),
        ("--seed", ("convert", "--precision", "fp16", "--seed", "-1")),
        ("--max-images", ("check", "--max-images", "-3", "--images", ".")),
        ("--max-images", ("check", "--max-images", "0", "--images", ".")),
    ],
)
def test_bad_counts_and_seeds_are_usage_errors(r20: Path, tmp_path: Path, needle: str, args: tuple[str, ...]) -> None:
    command, *rest = args
    extra = ["-o", str(tmp_path / "x.onnx")] if command == "convert" else []
    code, _, err = run(command, str(r20), *rest, *extra)
    assert_one_line_error(code, err, needle, exit_code=2)
    assert "unexpected" not in err and "could not be read" not in err


def test_library_checks_seed_and_images() -> None:
    from resnet_deploy.metrics import Tolerance, check_batch_sizes, check_seed

    for bad in (-1, 2**32, 10**30, True):
        with pytest.raises(ConfigError):
            check_seed(bad)
    with pytest.raises(ConfigError):
        check_batch_sizes([1, 4097])
    with pytest.raises(ConfigError):
        Tolerance(scale_rtol=float("inf"))
    assert check_batch_sizes([1, 4096]) == [1, 4096] and check_seed(2**32 - 1) == 2**32 - 1


def test_dangling_symlink_repo(r20: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.symlink_to(tmp_path / "gone")
    code, _, err = run("ship", str(r20), "--repo", str(repo), "--kind", "cpu", "--force")
    assert_one_line_error(code, err, "broken symbolic link", exit_code=2)


def _file_size_limit(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "r20.onnx"
    done = run_proc(
        "export", "--depth", "20", "-w", "random", "-o", str(out), preexec_fn=lambda: _file_size_limit(200_000)
    )
    assert_one_line_error(done.returncode, done.stderr, f"cannot write {out}", "File too large")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ D17, D18


def test_long_valid_output_names(r20: Path, tmp_path: Path) -> None:
    name = "a" * 238 + ".onnx"  # 243 characters: its record's name is 255, the most a name may have
    code, _, err = run("convert", str(r20), "--precision", "fp16", "-o", str(tmp_path / name), "--json")
    assert code == 0, err
    assert (tmp_path / name).is_file() and record_path(tmp_path / name).is_file()
    too_long = "b" * 256 + ".onnx"
    code, _, err = run("convert", str(r20), "--precision", "fp16", "-o", str(tmp_path / too_long))
    assert code != 0 and "Traceback" not in err


def test_closed_stdout() -> None:
    def closed(*args: str) -> subprocess.CompletedProcess[str]:  # as a shell's '>&-' starts it
        env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1"}
        shell = ["bash", "-c", 'exec "$@" >&-', "resnet-deploy", *CMD, *args]
        return subprocess.run(shell, stderr=subprocess.PIPE, text=True, env=env, timeout=120)

    shown = closed("models")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    as_json = closed("models", "--json")
    assert_one_line_error(as_json.returncode, as_json.stderr, "standard output is closed", exit_code=2)
    for args in (["models"], ["models", "--json"]):  # a reader that went away ('| head'): quiet
        read, write = os.pipe()
        proc = subprocess.Popen([*CMD, *args], stdout=write, stderr=subprocess.PIPE, text=True)
        os.close(write)
        os.close(read)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 and err.strip() == "", err


# ------------------------------------------------------------------------------ host code


def test_host_code_is_an_explicit_opt_in(tmp_path: Path) -> None:
    from resnet_deploy.engine import load_engine, set_host_code_default
    from resnet_deploy.runtime.trt import TensorRTRunner
    from tests.test_engine import write_plan

    plan = write_plan(tmp_path, version_compatible=True)
    for open_ in (lambda: TensorRTRunner(plan), lambda: load_engine(plan)):
        with pytest.raises(EngineError, match="--allow-host-code"):
            open_()
    runner = TensorRTRunner(plan, allow_host_code=True)  # opened (not activated: no TensorRT here)
    assert runner.describe()["allow_host_code"] is True and runner.describe()["version_compatible"] is True
    set_host_code_default(True)
    try:
        assert TensorRTRunner(plan).allow_host_code is True
    finally:
        set_host_code_default(False)
    plain = write_plan(tmp_path / "plain" if (tmp_path / "plain").mkdir() is None else tmp_path)
    assert TensorRTRunner(plain).describe()["allow_host_code"] is False  # an ordinary plan needs no opt-in
    code, _, err = run("bench", str(plan), "--iters", "1")
    assert_one_line_error(code, err, "--allow-host-code")
    shutil.rmtree(tmp_path / "plain")


# ------------------------------------------------------------------------------ D15: malformed sidecars


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: [], "a JSON list"),
        (lambda d: {**d, "profile": "x"}, "'profile'"),
        (lambda d: {**d, "profile": {}}, "'profile'"),
        (lambda d: {**d, "profile": {**d["profile"], "max": [10**12, 3, 224, 224]}}, "<= 4096"),
        (lambda d: {**d, "tensorrt_version": 10}, "'tensorrt_version'"),
        (lambda d: {**d, "metadata": []}, "'metadata'"),
        (lambda d: {k: v for k, v in d.items() if k != "plan_sha256"}, "'plan_sha256'"),
    ],
)
@pytest.mark.parametrize("command", ["bench", "ship"])
def test_malformed_sidecars_are_one_line_errors(tmp_path: Path, change: object, needle: str, command: str) -> None:
    from resnet_deploy.engine import sidecar_path
    from tests.test_engine import write_plan

    plan = write_plan(tmp_path)
    data = json.loads(sidecar_path(plan).read_text())
    sidecar_path(plan).write_text(json.dumps(change(data)))  # type: ignore[operator]
    extra = ["--iters", "1"] if command == "bench" else ["--repo", str(tmp_path / "repo")]
    code, _, err = run(command, str(plan), *extra)
    assert_one_line_error(code, err, "sidecar", needle)
    assert "unexpected" not in err


def test_a_thin_strip_image_is_refused_before_resizing(r20: Path, tmp_path: Path) -> None:
    from PIL import Image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 40000)).save(strip)  # 40 kpx on disk, 32 x 1.28 M = 41 Mpx resized: fine
    Image.new("RGB", (1, 3_000_000)).save(tmp_path / "huge.png")  # resized to 32 x 96 M: over the limit
    code, _, err = run("predict", str(r20), str(strip), "--json")
    assert code == 0, err
    code, _, err = run("predict", str(r20), str(tmp_path / "huge.png"))
    assert_one_line_error(code, err, "resizes to", "pixel limit")


def test_labels_without_a_class_count(r20: Path) -> None:
    from resnet_deploy.models.labels import class_names

    with pytest.raises(ConfigError, match="no num_classes"):
        class_names({})
    assert class_names({"num_classes": "10", "labels": "cifar10"})[0] == "airplane"


# ------------------------------------------------------------------------------ found by scripts/bad_input_sweep.py

BIG = "1" + "0" * 30


@pytest.mark.parametrize(
    "args",
    [
        ("bench", "--duration-s", "nan"),
        ("bench", "--duration-s", "inf"),
        ("bench", "--duration-s", "1e30"),
        ("bench", "--warmup-s", "inf"),
        ("bench", "--iters", BIG),
        ("bench", "--rounds", BIG),
        ("bench", "--threads", "100000"),
        ("bench", "--threads", BIG),
        ("predict", "--threads", "100000"),
        ("predict", "--batch-size", BIG),
        ("ship", "--instances", "100000"),
        ("ship", "--instances", BIG),
        ("ship", "--max-queue-delay-us", BIG),
        ("ship", "--max-batch", BIG),
        ("ship", "--name", "n" * 300),
        ("convert", "-o", "y" * 256),
    ],
)
def test_numbers_and_names_out_of_range_are_usage_errors(r20: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    """Each of these hung (a NaN/infinite/1e30 s budget), crashed (SIGSEGV at 100,000 ONNX Runtime
    threads), wrote an unparsable config, or said 'unexpected OSError' before it was bounded."""
    command, *rest = args
    budget = [] if {"--duration-s", "--iters"} & set(rest) else ["--duration-s", "0.1"]
    extra = {
        "bench": ["--batch-sizes", "1", "--warmup-s", "0", *budget],  # (a later --warmup-s wins)
        "predict": [str(tmp_path / "img.png")],
        "ship": ["--repo", str(tmp_path / "repo"), "--kind", "cpu", "--force"],
        "convert": ["--precision", "fp16"],
    }[command]
    if command == "predict":
        from PIL import Image

        Image.new("RGB", (40, 40)).save(tmp_path / "img.png")
    before = set(tmp_path.iterdir())
    code, _, err = run(command, str(r20), *extra, *[a if a != "y" * 256 else str(tmp_path / a) for a in rest])
    assert_one_line_error(code, err, exit_code=2)
    assert "unexpected" not in err
    assert set(tmp_path.iterdir()) == before  # no repo folder, no partial file


def test_a_long_missing_path_is_one_line(tmp_path: Path) -> None:
    code, _, err = run("info", str(tmp_path / ("x" * 5000)))
    assert_one_line_error(code, err, "too long", exit_code=2)
    assert len(err) < 400  # the path is shortened


def test_a_missing_plan_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("predict", str(tmp_path / "x.plan"), str(tmp_path / "img.png"))
    assert_one_line_error(code, err, "engine not found", exit_code=2)


def test_bench_outputs_into_an_existing_folder(r20: Path, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    code, _, err = run(
        "bench", str(r20), "--batch-sizes", "1", "--iters", "2", "--warmup-s", "0", "--json", str(folder)
    )
    assert code == 0, err
    assert json.loads((folder / "bench.json").read_text())["rows"]


def test_closed_stdout_is_refused_before_the_work(r20: Path) -> None:
    before = record_path(r20).read_bytes()
    shell = ["bash", "-c", 'exec "$@" >&-', "resnet-deploy", *CMD, "check", str(r20), "--json", "--rtol", "0"]
    done = subprocess.run(shell, stderr=subprocess.PIPE, text=True, timeout=120)
    assert_one_line_error(done.returncode, done.stderr, "standard output is closed", exit_code=2)
    assert record_path(r20).read_bytes() == before  # the (failing, rtol 0) check never ran


def test_ship_never_overwrites_a_foreign_config_or_takes_an_empty_name(r20: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "resnet20"
    model_dir.mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text("\x00garbage{{{")
    code, _, err = run("ship", str(r20), "--repo", str(tmp_path / "repo"), "--kind", "cpu", "--force")
    assert_one_line_error(code, err, "not written by resnet-deploy", exit_code=2)
    assert (model_dir / "config.pbtxt").read_text() == "\x00garbage{{{"
    code, _, err = run("ship", str(r20), "--repo", str(tmp_path / "repo2"), "--kind", "cpu", "--force", "--name", "")
    assert_one_line_error(code, err, "model name", exit_code=2)


# ------------------------------------------------------------------------------ D10: exit 130, whatever CPython remembers

_INTERRUPTED_AFTER_A_C_EXTENSION = """
import ctypes, os, signal, sys, threading

from resnet_deploy.cli import main


def interrupt() -> None:
    # What a Ctrl-C landing inside code a C extension runs with PyRun_String (some imports do)
    # leaves behind: CPython's flag that a KeyboardInterrupt escaped it. Any later PyRun_String
    # clears it, so it is set here, just before the Ctrl-C.
    run = ctypes.pythonapi.PyRun_String
    run.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
    run.restype = ctypes.py_object
    try:
        run(b"raise KeyboardInterrupt", 257, {}, {})  # 257: Py_file_input
    except KeyboardInterrupt:
        pass
    os.kill(os.getpid(), signal.SIGINT)


sys.argv = ["resnet-deploy", "bench", sys.argv[1], "--batch-sizes", "1", "--duration-s", "120", "--threads", "1"]
threading.Timer(4.0, interrupt).start()
main()
"""


def test_an_interrupt_exits_130_even_after_one_landed_in_a_c_extension(r20: Path, tmp_path: Path) -> None:
    """Seen in CI: 'python -m resnet_deploy serve' interrupted while starting printed 'error:
    interrupted' and died by SIGINT (returncode -2) instead of exiting 130: the Ctrl-C had landed
    in an import. CPython honours the flag when the program ran as a module (-m), not as a file."""
    (tmp_path / "interrupted_cli.py").write_text(_INTERRUPTED_AFTER_A_C_EXTENSION)
    env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "interrupted_cli", str(r20)], capture_output=True, text=True, env=env, timeout=300
    )
    assert_one_line_error(proc.returncode, proc.stderr, "interrupted", exit_code=130)


def test_an_interrupt_while_the_command_line_imports_is_one_line() -> None:
    """A Ctrl-C in the first tenth of a second lands in 'import typer' (seen: a traceback)."""
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def stopped(name, *a, **k):\n"
        "    if name == 'typer':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = stopped\n"
        "from resnet_deploy._entry import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "interrupted", exit_code=130)
