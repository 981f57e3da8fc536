"""The parity gate can fail: a candidate that computes on the wrong input fails ``check`` at fp32,
fp16 and int8, with random and with trained weights, while the good conversions pass.

Wrong candidates are real ONNX files a user could produce by mistake: the model with a flip of the
width axis in front of it (an image loader that mirrors), or with the batch rolled by one (outputs
returned for the wrong request). They keep the toolkit's metadata, so ``check`` takes them as it
takes any artifact, and they convert to fp16/int8 like the real model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from resnet_deploy import export_onnx
from resnet_deploy.check import compare
from resnet_deploy.errors import ConfigError
from resnet_deploy.metrics import Tolerance, compare_outputs
from resnet_deploy.precision import quantize_int8, to_fp16
from tests.helpers import write_blob_images


def _rewire_input(model: onnx.ModelProto, nodes: list[onnx.NodeProto], inits: list[Any], new_input: str) -> None:
    name = model.graph.input[0].name
    for n in model.graph.node:
        for i, x in enumerate(n.input):
            if x == name:
                n.input[i] = new_input
    for k, node in enumerate(nodes):
        model.graph.node.insert(k, node)
    model.graph.initializer.extend(inits)


def mirrored(src: Path, dst: Path) -> Path:
    """``src`` computing on the horizontally mirrored image: Slice(step -1) on the width axis."""
    m = onnx.load(str(src))
    name = m.graph.input[0].name
    consts = [
        numpy_helper.from_array(np.array([-1], np.int64), "mirror_starts"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).min], np.int64), "mirror_ends"),
        numpy_helper.from_array(np.array([3], np.int64), "mirror_axes"),
        numpy_helper.from_array(np.array([-1], np.int64), "mirror_steps"),
    ]
    node = helper.make_node(
        "Slice", [name, "mirror_starts", "mirror_ends", "mirror_axes", "mirror_steps"], ["mirrored"], name="mirror"
    )
    _rewire_input(m, [node], consts, "mirrored")
    onnx.save(m, str(dst))
    return dst


def rolled(src: Path, dst: Path) -> Path:
    """``src`` answering each sample with the next sample's output: the batch rolled by one."""
    m = onnx.load(str(src))
    name = m.graph.input[0].name
    consts = [
        numpy_helper.from_array(np.array([1], np.int64), "roll_one"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "roll_end"),
        numpy_helper.from_array(np.array([0], np.int64), "roll_zero"),
    ]
    nodes = [
        helper.make_node("Slice", [name, "roll_one", "roll_end", "roll_zero"], ["roll_tail"], name="roll_tail"),
        helper.make_node("Slice", [name, "roll_zero", "roll_one", "roll_zero"], ["roll_head"], name="roll_head"),
        helper.make_node("Concat", ["roll_tail", "roll_head"], ["rolled"], name="roll", axis=0),
    ]
    _rewire_input(m, nodes, consts, "rolled")
    onnx.save(m, str(dst))
    return dst


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """resnet20 with random weights, its calibration images, and wrong twins of it."""
    root = tmp_path_factory.mktemp("gate_random")
    images = write_blob_images(root / "images", 48, name="{i:02d}.png")
    export_onnx("resnet20", root / "r20.onnx", weights="random")
    return {"fp32": root / "r20.onnx", "images": images, "root": root}


@pytest.fixture(scope="module")
def trained_model(digits: Any, digits_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate_trained")
    shutil.copy(digits_onnx, root / "digits.onnx")
    import torch

    torch.save(digits.model.state_dict(), root / "digits.pt")  # for the PyTorch reference
    return {
        "fp32": root / "digits.onnx",
        "images": digits.test_dir,
        "calib": digits.train_dir,
        "root": root,
        "weights": root / "digits.pt",
    }


def _convert(src: Path, precision: str, calib: Path) -> Path:
    if precision == "fp16":
        return Path(to_fp16(src, allow_mismatch=True).path)
    if precision == "int8":
        return Path(quantize_int8(src, calibration=calib, count=64, cache=False, allow_mismatch=True).path)
    return src


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_wrong_input_fails_and_good_conversion_passes(
    weights: str, precision: str, random_model: dict[str, Path], trained_model: dict[str, Path]
) -> None:
    m = random_model if weights == "random" else trained_model
    root, fp32, images = m["root"], m["fp32"], m["images"]
    calib = m.get("calib", images)
    good = _convert(fp32, precision, calib)
    wrong_dir = root / f"mirror_{precision}"
    wrong_dir.mkdir(exist_ok=True)
    wrong_fp32 = mirrored(fp32, wrong_dir / fp32.name)
    wrong = _convert(wrong_fp32, precision, calib)

    ref = "torch" if precision == "fp32" else fp32  # the fp32 ONNX against PyTorch, the others against it
    weights_file = str(m["weights"]) if "weights" in m and ref == "torch" else None
    passed = compare(good, ref, images=images, max_images=48, weights=weights_file)
    assert passed.passed, [r.result for r in passed.rows]
    caught = compare(wrong, ref, images=images, max_images=48, weights=weights_file)
    assert not caught.passed
    image_row = caught.rows[-1].result
    assert image_row.judged_across_samples and not image_row.passed
    # What catches it is the discriminative part: retrieval or SQNR, not only top-1.
    assert (image_row.retrieval is not None and image_row.retrieval < 0.9) or (
        image_row.sqnr_db is not None and image_row.sqnr_db < 5.0
    )


def test_cosine_alone_passes_the_mirrored_candidate_that_the_gate_fails(random_model: dict[str, Path]) -> None:
    """Why cosine is no longer the gate: on random weights the mirrored model's logits point the
    same way as the reference's (cosine >= 0.95, the old int8 gate), on random inputs too."""
    root = random_model["root"]
    wrong = mirrored(random_model["fp32"], root / "m_cos.onnx")
    old_gate = Tolerance(scale_rtol=None, min_cosine=0.95)
    assert compare(wrong, random_model["fp32"], batch_sizes=(16,), tolerance=old_gate).passed
    report = compare(wrong, random_model["fp32"], batch_sizes=(16,))
    assert not report.passed and report.rows[0].result.cosine_min >= 0.95


def test_rolled_batch_fails_on_random_inputs(random_model: dict[str, Path]) -> None:
    root = random_model["root"]
    wrong = rolled(random_model["fp32"], root / "rolled.onnx")
    report = compare(wrong, random_model["fp32"], batch_sizes=(1, 8))
    single, batch = (r.result for r in report.rows)
    assert single.passed  # one sample rolled onto itself is the same answer
    assert not batch.passed and batch.retrieval == 0.0


def test_a_gate_judged_across_samples_needs_a_batch_of_eight(random_model: dict[str, Path]) -> None:
    fp16 = Path(to_fp16(random_model["fp32"], random_model["root"] / "b.fp16.onnx").path)
    with pytest.raises(ConfigError, match="at least 8"):
        compare(fp16, random_model["fp32"], batch_sizes=(1, 3))
    assert compare(fp16, random_model["fp32"], batch_sizes=(1, 8)).passed


def test_sqnr_and_retrieval_thresholds_fail_by_hand() -> None:
    """Known answers: 8 well-separated samples; noise at 1/10 of the spread (10 dB) passes a 5 dB
    floor and fails a 15 dB one; the rows swapped fail retrieval."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 10)) * 3
    spread = ((ref - ref.mean(0)) ** 2).sum()
    noise = rng.standard_normal(ref.shape)
    noise *= np.sqrt(spread / 10 / (noise**2).sum())
    r = compare_outputs(ref, ref + noise, Tolerance(scale_rtol=None, min_sqnr_db=5.0))
    assert r.sqnr_db == pytest.approx(10.0, abs=1e-6) and r.passed and r.judged_across_samples
    assert not compare_outputs(ref, ref + noise, Tolerance(scale_rtol=None, min_sqnr_db=15.0)).passed
    swapped = ref[[1, 0, 2, 3, 4, 5, 6, 7]]
    s = compare_outputs(ref, swapped, Tolerance(scale_rtol=None, min_retrieval=0.9))
    assert s.retrieval == 0.75 and not s.passed
    # Under 8 samples the same numbers are reported but not judged.
    few = compare_outputs(ref[:4], swapped[:4], Tolerance(scale_rtol=None, min_retrieval=0.9))
    assert few.passed and not few.judged_across_samples and few.retrieval == 0.5
