"""Predictor on a real trained model and real images: accuracy, input kinds, batching, threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from resnet_deploy import ConfigError, DataError, Predictor
from resnet_deploy.data import list_images
from resnet_deploy.pixels import add_pixel_input
from resnet_deploy.precision import run_onnx
from tests.helpers import assert_one_line_error

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def test_images(digits: Any) -> tuple[list[Path], np.ndarray]:
    files = sorted(list_images(digits.test_dir), key=lambda f: int(f.stem))  # digits.x_test's order
    return files, np.array([int(f.parent.name) for f in files])


@pytest.fixture(scope="module")
def pixels_onnx(digits_onnx: Path) -> Path:
    return Path(add_pixel_input(digits_onnx, digits_onnx.with_name("digits.px.onnx")).path)


def test_predicts_held_out_digits(digits_onnx: Path, test_images: tuple[list[Path], np.ndarray], digits: Any) -> None:
    files, labels = test_images
    with Predictor.from_artifact(digits_onnx, labels=DIGITS) as p:
        preds = p.predict(files, topk=3)
    assert len(preds) == len(files) == 360
    top1 = np.array([pr.indices[0] for pr in preds])
    assert (top1 == labels).mean() >= 0.95
    # the same answers as the model's logits on the toolkit's preprocessing (digits.x_test)
    assert (top1 == run_onnx(digits_onnx, digits.x_test).argmax(1)).all()
    for pr, f in zip(preds, files, strict=True):
        assert pr.source == str(f) and len(pr.indices) == 3 and pr.labels == [DIGITS[i] for i in pr.indices]
        assert pr.probabilities == sorted(pr.probabilities, reverse=True) and 0 < sum(pr.probabilities) <= 1 + 1e-9


def test_pixel_model_predicts_the_same(
    digits_onnx: Path, pixels_onnx: Path, test_images: tuple[list[Path], np.ndarray]
) -> None:
    files = test_images[0][:64]
    with Predictor.from_artifact(digits_onnx) as a, Predictor.from_artifact(pixels_onnx) as b:
        assert b.describe()["input"]["dtype"] == "uint8" and b.describe()["input"]["shape"] == [None, 32, 32, 3]
        pa, pb = a.predict(files, topk=5), b.predict(files, topk=5)
    assert [x.indices for x in pa] == [x.indices for x in pb]
    assert np.allclose([x.probabilities for x in pa], [x.probabilities for x in pb], atol=1e-5)


def test_input_kinds_agree(digits_onnx: Path, test_images: tuple[list[Path], np.ndarray]) -> None:
    files = test_images[0][:5]
    pil = [Image.open(f).convert("RGB") for f in files]
    arrays = [np.asarray(im) for im in pil]
    with Predictor.from_artifact(digits_onnx, backend="onnxruntime") as p:
        ref = p.predict(files)
        for variant in (pil, arrays, np.stack(arrays), [a.astype(np.float32) / 255.0 for a in arrays]):
            got = p.predict(variant)
            assert [g.indices for g in got] == [r.indices for r in ref]
            assert np.allclose([g.probabilities for g in got], [r.probabilities for r in ref], atol=1e-6)
        single = p.predict(files[0])
        assert len(single) == 1 and single[0].indices == ref[0].indices
        assert single[0].labels[0] in {"airplane", "automobile", "bird", "cat", "deer"} | set(
            ["dog", "frog", "horse", "ship", "truck"]
        )  # resnet20's default labels are CIFAR-10's


def test_batches_up_to_a_fixed_batch_artifact(digits: Any, tmp_path: Path) -> None:
    from resnet_deploy import export_onnx

    fixed = tmp_path / "b4.onnx"
    export_onnx(digits.model, fixed, batch=4)
    files = list_images(digits.test_dir)[:10]
    with Predictor.from_artifact(fixed, batch_size=64) as p:
        assert p.batch_size == 4
        preds = p.predict(files)
    with Predictor.from_artifact(fixed.with_name("b4.onnx")) as p:
        again = [p.predict(f)[0] for f in files]  # one at a time: padded to 4 inside
    assert [a.indices for a in preds] == [b.indices for b in again]


def test_many_threads_equal_serial(digits_onnx: Path, test_images: tuple[list[Path], np.ndarray]) -> None:
    files = test_images[0][:96]
    chunks = [files[i::8] for i in range(8)]
    with Predictor.from_artifact(digits_onnx, batch_size=4) as p:
        serial = [p.predict(c) for c in chunks]
        results: list[Any] = [None] * 8
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for _ in range(3):
                    results[i] = p.predict(chunks[i])
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    for a, b in zip(serial, results, strict=True):
        assert [x.indices for x in a] == [x.indices for x in b]
        assert np.allclose([x.probabilities for x in a], [x.probabilities for x in b], atol=1e-6)


def test_torch_backend_and_bad_arguments(digits_onnx: Path, tmp_path: Path) -> None:
    with Predictor.from_artifact("resnet20", backend="torch") as p:
        assert p.num_classes == 10 and p.runner.name == "torch"
    with Predictor.from_artifact(digits_onnx) as p:
        with pytest.raises(ConfigError, match="topk"):
            p.predict(np.zeros((8, 8, 3), np.uint8), topk=0)
        with pytest.raises(DataError, match="expected a path"):
            p.predict([object()])
        with pytest.raises(DataError, match="image not found"):
            p.predict(tmp_path / "missing.png")
    with pytest.raises(ConfigError, match="unknown backend"):
        Predictor.from_artifact(digits_onnx, backend="tpu")
    with pytest.raises(ConfigError, match="runs .plan"):
        Predictor.from_artifact(digits_onnx, backend="tensorrt")
    with pytest.raises(ConfigError, match="4 labels for a model with 10 classes"):
        Predictor.from_artifact(digits_onnx, labels=["a", "b", "c", "d"])


def test_predict_cli(digits_onnx: Path, test_images: tuple[list[Path], np.ndarray], tmp_path: Path) -> None:
    from resnet_deploy.cli import app

    runner = CliRunner()
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {d}" for d in DIGITS) + "\n")
    files = [str(f) for f in test_images[0][:3]]
    result = runner.invoke(app, ["predict", str(digits_onnx), *files, "--topk", "2", "--labels", str(labels), "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [p["source"] for p in data["predictions"]] == files
    for p, truth in zip(data["predictions"], test_images[1][:3], strict=True):
        assert len(p["labels"]) == 2 and p["labels"][0] == f"digit {truth}"
    result = runner.invoke(app, ["predict", str(digits_onnx), files[0]])
    assert result.exit_code == 0 and "%" in result.stdout
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    result = runner.invoke(app, ["predict", str(digits_onnx), files[0], str(bad)])
    assert_one_line_error(result.exit_code, result.stderr, "cannot read image", exit_code=1)
    result = runner.invoke(app, ["predict", str(digits_onnx), files[0], "--topk", "0"])
    assert_one_line_error(result.exit_code, result.stderr, "--topk", exit_code=2)
