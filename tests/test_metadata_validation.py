"""D6: an artifact's ``metadata_props`` are checked when read, never trusted.

Each bad artifact is a real export whose metadata was then edited with the ``onnx`` library, as a
corrupted or hostile file would be. Every command that reads the metadata (``info``, ``predict``,
``check``, ``eval``) must refuse it with one ``error:`` line naming the key, never a traceback,
``nan%``, an ``IndexError`` or gigabytes of memory. Cases that could exhaust memory on a toolkit
that trusted the metadata run the CLI in a subprocess under an address-space cap and a timeout.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from PIL import Image
from typer.testing import CliRunner

from resnet_deploy import ArtifactMeta, ConfigError, Predictor, create_model, export_onnx, read_metadata
from resnet_deploy.cli import app
from resnet_deploy.errors import EngineError
from resnet_deploy.pixels import add_pixel_input
from resnet_deploy.precision import quantize_int8, to_fp16
from resnet_deploy.runtime.base import Runner
from resnet_deploy.runtime.pyt import TorchRunner
from tests.helpers import assert_one_line_error

cli = CliRunner()
CAP_BYTES = 6 << 30  # torch + onnxruntime need ~4-5 GiB of address space; a bad artifact wants 5-25 GB


def run(*args: str) -> tuple[int, str, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_capped(*args: str, cwd: Path, timeout: float = 300) -> tuple[int, str, str]:
    """The CLI in a fresh process that cannot map more than ``CAP_BYTES`` (a failure, not a dead machine)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP_BYTES, CAP_BYTES))

    env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1", "TORCH_HOME": str(cwd / "hub"), "OMP_NUM_THREADS": "1"}
    env.pop("RESNET_DEPLOY_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "resnet_deploy.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        preexec_fn=cap,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def tamper(src: Path, dst: Path, **changes: str | None) -> Path:
    """``src`` with some ``metadata_props`` replaced (None: removed), saved as ``dst``."""
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("d6")


@pytest.fixture(scope="module")
def images(root: Path) -> Path:
    """An ImageFolder (two classes, three images each); its files double as predict inputs."""
    rng = np.random.default_rng(0)
    for c in ("0", "1"):
        (root / "data" / c).mkdir(parents=True)
        for i in range(3):
            pixels = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "data" / c / f"{i}.png")
    return root / "data"


@pytest.fixture(scope="module")
def good(root: Path, images: Path) -> dict[str, Path]:
    """A ResNet-20 (CIFAR, 32x32, 10 classes) in each precision and input format the toolkit makes."""
    fp32 = root / "r20.onnx"
    export_onnx("resnet20", fp32, weights="random", seed=3)
    to_fp16(fp32, root / "r20.fp16.onnx")
    quantize_int8(fp32, root / "r20.int8.onnx", images, cache=False)
    add_pixel_input(fp32, root / "r20.px.onnx")
    return {
        "fp32": fp32,
        "fp16": root / "r20.fp16.onnx",
        "int8": root / "r20.int8.onnx",
        "uint8-nhwc": root / "r20.px.onnx",
    }


def image(images: Path) -> str:
    return str(images / "0" / "0.png")


# -- normalisation: std=0 / NaN printed nan% with exit 0 ----------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [("std", "0,0,0"), ("std", "nan,0.2,0.2"), ("std", "-0.2,0.2,0.2"), ("mean", "nan,0.5,0.5"), ("mean", "inf,0,0")],
)
def test_predict_refuses_a_normalisation_that_is_not_finite_and_positive(
    good: dict[str, Path], images: Path, root: Path, key: str, value: str
) -> None:
    bad = tamper(good["fp32"], root / f"bad_{key}.onnx", **{key: value})
    code, out, err = run("predict", str(bad), image(images))
    assert "nan%" not in out
    assert_one_line_error(code, err, key, value, exit_code=2)


def test_eval_refuses_std_zero(good: dict[str, Path], images: Path, root: Path) -> None:
    bad = tamper(good["fp32"], root / "eval_std0.onnx", std="0,0,0")
    code, out, err = run("eval", str(bad), "--data", str(images))
    assert "top-1" not in out
    assert_one_line_error(code, err, "std", exit_code=2)


def test_info_refuses_std_zero(good: dict[str, Path], root: Path) -> None:
    bad = tamper(good["fp32"], root / "info_std0.onnx", std="0,0,0")
    code, _, err = run("info", str(bad))
    assert_one_line_error(code, err, "std", "0,0,0", exit_code=2)


# -- sizes: a huge image_size / resize_size wanted 5-25 GB to preprocess one image -------------


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"image_size": "60000x60000", "crop_size": "60000x60000"}, "image_size"),
        ({"resize_size": "100000"}, "resize_size"),
    ],
)
def test_predict_refuses_huge_sizes_without_allocating_them(
    good: dict[str, Path], images: Path, root: Path, changes: dict[str, str], key: str
) -> None:
    bad = tamper(good["fp32"], root / f"huge_{key}.onnx", **changes)
    code, _, err = run_capped("predict", str(bad), image(images), cwd=root)
    assert_one_line_error(code, err, key, exit_code=2)
    code, _, err = run_capped("eval", str(bad), "--data", str(images), cwd=root)
    assert_one_line_error(code, err, key, exit_code=2)


def test_the_memory_cap_itself_lets_a_good_artifact_run(good: dict[str, Path], images: Path, root: Path) -> None:
    """(so a refusal above is the toolkit's, not the cap's)"""
    code, out, err = run_capped("predict", str(good["fp32"]), image(images), cwd=root)
    assert code == 0, err
    assert "%" in out and "nan" not in out


def test_image_size_must_match_the_graphs_input(good: dict[str, Path], images: Path, root: Path) -> None:
    bad = tamper(good["fp32"], root / "size64.onnx", image_size="64x64", crop_size="64x64", resize_size="64")
    for args in (("info", str(bad)), ("predict", str(bad), image(images))):
        code, _, err = run(*args)
        assert_one_line_error(code, err, "image_size=64x64", "32x32", exit_code=2)


def test_resize_smaller_than_the_crop_is_refused(good: dict[str, Path], images: Path, root: Path) -> None:
    bad = tamper(good["fp32"], root / "resize8.onnx", resize_size="8")
    code, _, err = run("predict", str(bad), image(images))
    assert_one_line_error(code, err, "resize_size", "8", exit_code=2)


# -- widths: check rebuilt a ~10 GB model before the weights hash could refuse it --------------


def test_check_refuses_huge_widths_before_building_the_model(good: dict[str, Path], root: Path) -> None:
    bad = tamper(good["fp32"], root / "wide.onnx", widths="4000,4000,4000")
    code, _, err = run_capped("check", str(bad), cwd=root, timeout=300)
    assert_one_line_error(code, err, "widths", "4000,4000,4000", exit_code=2)


def test_widths_must_be_the_graphs(good: dict[str, Path], root: Path) -> None:
    bad = tamper(good["fp32"], root / "w8.onnx", widths="8,16,32")
    code, _, err = run("check", str(bad))
    assert_one_line_error(code, err, "widths", "8,16,32", exit_code=2)


def test_create_model_refuses_a_model_over_the_parameter_cap_before_building_it() -> None:
    with pytest.raises(ConfigError, match="parameters"):
        create_model("resnet20", weights="random", widths=(4000, 4000, 4000))
    with pytest.raises(ConfigError, match="widths"):
        create_model("resnet20", weights="random", widths=(16, 32, 10**9))


def test_torch_reference_refuses_bad_metadata(good: dict[str, Path]) -> None:
    meta = read_metadata(good["fp32"]).to_dict()
    with pytest.raises(ConfigError, match="weights_seed"):
        TorchRunner.from_metadata({**meta, "weights_seed": "x"})
    with pytest.raises(ConfigError, match="parameters"):
        TorchRunner.from_metadata({**meta, "widths": "4000,4000,4000"})


# -- num_classes: IndexError, ImageNet labels on a 10-way head ----------------------------------


def test_num_classes_smaller_than_the_graph_is_refused_not_an_index_error(
    good: dict[str, Path], images: Path, root: Path
) -> None:
    bad = tamper(good["fp32"], root / "nc5.onnx", num_classes="5")
    code, _, err = run("predict", str(bad), image(images), "--topk", "10")
    assert "IndexError" not in err
    assert_one_line_error(code, err, "num_classes=5", "10", exit_code=2)


def test_imagenet_labels_are_not_shown_on_a_10_way_head(good: dict[str, Path], images: Path, root: Path) -> None:
    bad = tamper(good["fp32"], root / "nc1000.onnx", num_classes="1000", labels="imagenet")
    for args in (
        ("info", str(bad)),
        ("predict", str(bad), image(images), "--topk", "3"),
        ("check", str(bad)),
        ("eval", str(bad), "--data", str(images)),
    ):
        code, out, err = run(*args)
        assert "shark" not in out and "tench" not in out
        assert_one_line_error(code, err, "num_classes=1000", "10", exit_code=2)


@pytest.mark.parametrize("value", ["0", "-3", "ten", "1000000000"])
def test_num_classes_out_of_range_is_refused(good: dict[str, Path], root: Path, value: str) -> None:
    bad = tamper(good["fp32"], root / "nc_bad.onnx", num_classes=value)
    code, _, err = run("info", str(bad))
    assert_one_line_error(code, err, "num_classes", exit_code=2)


def test_a_fixed_batch_the_graph_does_not_have_is_refused(good: dict[str, Path], root: Path) -> None:
    bad = tamper(good["fp32"], root / "b4.onnx", batch="4")
    code, _, err = run("info", str(bad))
    assert_one_line_error(code, err, "batch=4", exit_code=2)


def test_input_format_must_be_the_graphs(good: dict[str, Path], images: Path, root: Path) -> None:
    bad = tamper(good["fp32"], root / "fmt.onnx", input_format="uint8-nhwc")
    code, _, err = run("predict", str(bad), image(images))
    assert_one_line_error(code, err, "input_format", exit_code=2)


# -- the ArtifactMeta reader itself -------------------------------------------------------------


@pytest.mark.parametrize(
    "props",
    [
        {"image_size": "32"},
        {"image_size": "0x32"},
        {"image_size": "32x5000"},
        {"resize_size": "-1"},
        {"resize_size": "1e9"},
        {"mean": "0.5,0.5"},
        {"mean": "0.5,0.5,2"},
        {"std": "0.2,0.2,1e-9"},
        {"std": "0.2,0.2,0.2,0.2"},
        {"widths": "16,32"},
        {"widths": "16,0,64"},
        {"num_classes": "1e3"},
        {"batch": "0"},
        {"batch": "many"},
        {"weights_seed": "99999999999999999999"},
        {"weights_seed": "0x10"},
        {"interpolation": "lanczos"},
        {"input_format": "rgb"},
        {"std": "0\nerror: forged line,0,0"},
    ],
)
def test_artifact_meta_refuses_bad_values_in_one_line(props: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as e:
        ArtifactMeta({"model": "resnet20", "image_size": "32x32", "resize_size": "32", **props})
    assert "\n" not in str(e.value) and next(iter(props)) in str(e.value)


def test_artifact_meta_accepts_what_export_writes(good: dict[str, Path]) -> None:
    for path in good.values():
        meta = read_metadata(path)
        assert meta.num_classes == 10 and meta.image_size == (32, 32)
    wide = {"image_size": "4096x4096", "resize_size": "4681", "widths": "64,128,256,512", "num_classes": "100000"}
    assert ArtifactMeta(wide).num_classes == 100000
    assert ArtifactMeta({"mean": "0,0,0", "std": "1,1,1"})["std"] == "1,1,1"
    assert ArtifactMeta() == {}
    assert ArtifactMeta({"weights_seed": "-5"})["weights_seed"] == "-5"  # create_model takes torch's seed range


# -- the predictor's own guard: whatever the runner returns ------------------------------------


class _Fake(Runner):
    def __init__(self, out: NDArray[Any], meta: dict[str, str]) -> None:
        super().__init__()
        self.out = out
        self.metadata = ArtifactMeta(meta)
        from resnet_deploy.data import Preprocess

        self._pre = Preprocess.from_metadata(self.metadata)

    def activate(self) -> None:
        pass

    def infer(self, batch: Any) -> Any:
        return np.repeat(self.out[None], len(batch), axis=0)

    @property
    def preprocess(self) -> Any:
        return self._pre


META = {"image_size": "32x32", "resize_size": "32", "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25"}


def test_predictor_refuses_non_finite_outputs(images: Path) -> None:
    logits = np.array([np.nan, 0.0, 1.0], np.float32)
    with Predictor(_Fake(logits, {**META, "num_classes": "3"})) as p, pytest.raises(EngineError, match="finite"):
        p.predict(image(images))


def test_predictor_refuses_outputs_that_are_not_its_labels(images: Path) -> None:
    fake = _Fake(np.zeros(7, np.float32), {**META})
    with Predictor(fake, labels=[str(i) for i in range(5)]) as p, pytest.raises(ConfigError, match="7"):
        p.predict(image(images), topk=7)


# -- no false refusals: every kind of good artifact still works everywhere ----------------------


@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8", "uint8-nhwc"])
def test_good_artifacts_still_work(good: dict[str, Path], images: Path, kind: str) -> None:
    path = str(good[kind])
    code, out, err = run("info", path, "--json")
    assert code == 0, err
    assert json.loads(out)["metadata"]["num_classes"] == "10"
    code, out, err = run("predict", path, image(images), "--topk", "3", "--json")
    assert code == 0, err
    [pred] = json.loads(out)["predictions"]
    assert len(pred["indices"]) == 3 and all(np.isfinite(pred["probabilities"]))
    code, out, err = run("eval", path, "--data", str(images), "--json")
    assert code == 0, err
    if kind != "uint8-nhwc":  # (check's torch reference: the float-input models)
        code, out, err = run("check", path, "--images", str(images), "--json")
        assert code == 0, err
