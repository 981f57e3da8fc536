"""The command line through typer's CliRunner: exit codes, one-line errors, JSON, no leftovers."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from typer.testing import CliRunner

from resnet_deploy.cli import app
from tests.helpers import assert_one_line_error

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_models_table_and_json() -> None:
    code, out, _ = run("models")
    assert code == 0
    for name in ("resnet18", "resnet50", "resnet152", "resnet20", "resnet110"):
        assert name in out
    assert "25,557,032" in out and "4.09" in out

    code, out, _ = run("models", "--json")
    assert code == 0
    rows = json.loads(out)
    by_name = {r["name"]: r for r in rows}
    assert len(rows) == 10 and set(by_name) == {f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)}
    for row in rows:
        assert {"name", "depth", "params", "gmacs", "variant"} <= set(row)
    assert by_name["resnet50"]["params"] == 25_557_032 and by_name["resnet50"]["gmacs"] == pytest.approx(
        4.09, abs=0.005
    )
    assert by_name["resnet152"]["gmacs_v1"] == pytest.approx(11.3, rel=0.03)
    assert by_name["resnet20"]["dataset"] == "cifar10" and by_name["resnet20"]["params"] == 269_722


def test_export_human_and_json(tmp_path: Path) -> None:
    code, out, err = run("export", "--depth", "20", "-o", str(tmp_path / "r20.onnx"))
    assert code == 0, err
    assert "r20.onnx" in out and "passed" in out and "Conv 19" in out
    assert "warning: random weights (untrained)" in err  # auto on a CIFAR model: said loudly
    onnx.checker.check_model(onnx.load(str(tmp_path / "r20.onnx")), full_check=True)

    code, out, err = run(
        "export",
        "--model",
        "resnet18",
        "--image-size",
        "64",
        "--weights",
        "random",
        "--output",
        str(tmp_path),
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)  # stdout is pure JSON
    assert report["path"] == str((tmp_path / "resnet18.onnx").resolve())
    assert report["parity"]["passed"] is True and len(report["parity"]["results"]) == 2
    for r in report["parity"]["results"]:
        assert {"max_abs_diff", "max_rel_diff", "cosine_min", "top1_agreement"} <= set(r)
        assert r["diff_to_scale"] <= 1e-4
    assert report["weights"]["source"] == "random" and report["weights"]["trained"] is False
    assert report["nodes_by_op"]["Conv"] == 20 and "BatchNormalization" not in report["nodes_by_op"]
    assert report["metadata"]["variant"] == "v1.5"


def test_info_command(tmp_path: Path) -> None:
    run("export", "-d", "20", "-o", str(tmp_path / "m.onnx"), "--weights", "random")
    code, out, _ = run("info", str(tmp_path / "m.onnx"), "--json")
    desc = json.loads(out)
    assert code == 0 and desc["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 3, 32, 32]}]
    assert desc["metadata"]["model"] == "resnet20"
    assert desc["parity_record"]["ok"] and desc["parity_record"]["step"] == "export"
    model = onnx.load(str(tmp_path / "m.onnx"))
    model.doc_string = "edited after it was verified"
    onnx.save(model, str(tmp_path / "m.onnx"))
    code, out, _ = run("info", str(tmp_path / "m.onnx"))
    assert code == 0 and "for other bytes" in out
    code, _, err = run("info", str(tmp_path / "nope.onnx"))
    assert_one_line_error(code, err, "file not found")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    code, _, err = run("info", str(tmp_path / "junk.onnx"))
    assert_one_line_error(code, err, "not a readable ONNX model")


@pytest.mark.parametrize(
    ("args", "needles", "exit_code"),
    [
        (
            ["--depth", "51"],
            ["unknown depth 51: choose one of 18, 34, 50, 101, 152 (ImageNet) or 20, 32, 44, 56, 110 (CIFAR)"],
            2,
        ),
        (["--model", "resnet9"], ["unknown depth"], 2),
        ([], ["choose a model: --depth N"], 2),
        (["--depth", "50", "--model", "resnet18"], ["name different models"], 2),
        (["--depth", "50", "--variant", "v3"], ["--variant", "v3"], 2),
        (["--depth", "50", "--shortcut", "D"], ["--shortcut", "D"], 2),
        (["--depth", "20", "--num-classes", "0"], ["num_classes must be a positive integer, got 0"], 2),
        (["--depth", "20", "--num-classes", "-1"], ["num_classes must be a positive integer"], 2),
        (["--depth", "50", "--image-size", "16"], ["too small for resnet50", "at least 32"], 2),
        (["--depth", "20", "--image-size", "2"], ["too small for resnet20", "at least 4"], 2),
        (["--depth", "20", "--batch", "-2"], ["positive integer"], 2),
        (["--depth", "20", "--opset", "7"], ["opset 7 is not supported"], 2),
        (["--depth", "20", "--weights", "imagenet"], ["no published ImageNet weights", "CIFAR"], 1),
        (["--depth", "18", "--weights", "imagenet"], ["--weights PATH", "--weights random"], 1),
        (["--depth", "18", "--frobnicate"], ["No such option"], 2),
        (["--depth", "20", "--batch", "99999999999999999999999"], ["batch", "at most 4096"], 2),
        (["--depth", "20", "--num-classes", "99999999999999999999999"], ["is too large"], 2),
        (["--depth", "20", "--opset", "27"], ["opset 27 is not supported"], 2),
        (["--depth", "20", "--weights", "x[/]y.pth"], ["weights file not found: x[/]y.pth"], 1),
        (["--depth", "20", "--weights", ""], ["empty weights"], 1),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    tmp_path: Path, args: list[str], needles: list[str], exit_code: int
) -> None:
    code, _out, err = run("export", *args, "-o", str(tmp_path / "m.onnx"))
    assert_one_line_error(code, err, *needles, exit_code=exit_code)
    assert os.listdir(tmp_path) == []


def test_bad_output_folders(tmp_path: Path) -> None:
    code, _, err = run("export", "-d", "20", "-o", str(tmp_path / "missing" / "m.onnx"))
    assert_one_line_error(code, err, "output folder does not exist", exit_code=2)
    if os.geteuid() == 0:
        target = "/sys/m.onnx"  # root ignores permission bits; /sys is read-only for everyone
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = str(tmp_path / "ro" / "m.onnx")
    code, _, err = run("export", "-d", "20", "-o", target)
    assert_one_line_error(code, err, "output folder is not writable", exit_code=2)


def test_bad_weight_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cases: dict[str, tuple[bytes | None, str]] = {
        "missing.pth": (None, "weights file not found"),
        "corrupt.pth": (b"PK\x03\x04 definitely not a zip", "corrupt or not a PyTorch checkpoint"),
    }
    for name, (content, _) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    cases["list.pth"] = (None, "is not a state_dict")
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "arch.pth")
    cases["arch.pth"] = (None, "do not fit resnet20")

    marker = tmp_path / "ran"
    with open(tmp_path / "code.pth", "wb") as f:
        pickle.dump({"x": _Exploit(str(marker))}, f)
    cases["code.pth"] = (None, "refusing to load")
    for name, (_, needle) in cases.items():
        code, _, err = run("export", "-d", "20", "-w", str(tmp_path / name), "-o", str(out / "m.onnx"))
        assert_one_line_error(code, err, needle, exit_code=1)
        assert os.listdir(out) == []
    assert not marker.exists()


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_parity_failure_exit_code_and_report(tmp_path: Path) -> None:
    # --rtol 0 demands bit-exact logits, which two real runtimes never give: the real check fails.
    code, out, err = run("export", "-d", "20", "-o", str(tmp_path / "m.onnx"), "--rtol", "0", "--json")
    assert_one_line_error(code, err, "differs from PyTorch", "nothing was written", exit_code=1)
    assert json.loads(out)["parity"]["passed"] is False
    assert os.listdir(tmp_path) == []
    code, out, err = run("export", "-d", "20", "-o", str(tmp_path / "m.onnx"), "--rtol", "0", "--allow-mismatch")
    assert code == 0 and (tmp_path / "m.onnx").exists() and "warning:" in err and "FAILED" in out
    code, _, err = run("export", "-d", "20", "-o", str(tmp_path / "m.onnx"), "--rtol", "-1")
    assert_one_line_error(code, err, "--rtol", exit_code=2)


def test_version_and_help() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.startswith("resnet-deploy ")
    code, out, _ = run("export", "--help")
    assert code == 0 and "--depth" in out and "--weights" in out


def test_console_script_runs_in_a_subprocess(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "resnet-deploy"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "resnet_deploy.cli"]
    env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "hub")}
    done = subprocess.run(
        [*cmd, "export", "--depth", "20", "-o", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parity"]["passed"] is True
    done = subprocess.run(
        [*cmd, "export", "--depth", "7"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert (
        done.returncode == 2
        and done.stderr.strip().startswith("error: unknown depth 7")
        and "Traceback" not in done.stderr
    )


def test_paths_that_look_like_markup(tmp_path: Path) -> None:
    (tmp_path / "a[").mkdir()
    for name in ("a[/].onnx", "[red]model.onnx"):
        target = tmp_path / name
        code, out, err = run("export", "-d", "20", "-w", "random", "-o", str(target))
        assert code == 0, err
        assert target.is_file() and str(target) in out and "Traceback" not in err
    code, out, err = run("export", "-d", "20", "-w", "random", "-o", str(tmp_path / "[red]model.onnx"), "--json")
    assert code == 0 and json.loads(out)["path"] == str(tmp_path / "[red]model.onnx")


def test_sigterm_interrupts_cleanly(tmp_path: Path) -> None:
    import signal
    import time

    exe = Path(sys.executable).parent / "resnet-deploy"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "resnet_deploy.cli"]
    env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "hub")}
    proc = subprocess.Popen(
        [*cmd, "export", "--depth", "152", "-o", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(6)  # well inside the ~20 s ResNet-152 export
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if p.name != "hub"] == []  # no partial or temp file
