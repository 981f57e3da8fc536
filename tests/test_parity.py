"""compare_outputs on arrays whose answers are known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnet_deploy.parity import Tolerance, compare_outputs


def test_identical_outputs() -> None:
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    r = compare_outputs(x, x.copy())
    assert r.passed and r.max_abs_diff == 0 and r.max_rel_diff == 0 and r.diff_to_scale == 0
    assert r.cosine_min == pytest.approx(1.0) and r.top1_agreement == 1.0 and r.top5_agreement == 1.0


def test_known_differences() -> None:
    ref = np.array([[4.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    cand = np.array([[4.0, 0.0, 1.5], [3.0, 2.0, 0.0]])
    r = compare_outputs(ref, cand, Tolerance(scale_rtol=None))
    assert r.max_abs_diff == 3.0 and r.ref_scale == 4.0 and r.diff_to_scale == 0.75
    assert r.mean_abs_diff == pytest.approx(3.5 / 6)
    assert r.max_rel_diff == float("inf")  # 3 against a reference 0
    assert r.top1_agreement == 0.5  # row 2's argmax moved from 1 to 0
    cos_row1 = (16 + 1.5) / (np.sqrt(17) * np.sqrt(16 + 2.25))
    cos_row2 = 4 / (2 * np.sqrt(13))
    assert r.cosine_min == pytest.approx(min(cos_row1, cos_row2)) and r.cosine_mean == pytest.approx(
        (cos_row1 + cos_row2) / 2
    )
    assert r.passed  # no criterion given
    assert not compare_outputs(ref, cand, Tolerance(scale_rtol=0.5)).passed
    assert compare_outputs(ref, cand, Tolerance(scale_rtol=0.8)).passed
    assert not compare_outputs(ref, cand, Tolerance(scale_rtol=None, min_top1_agreement=1.0)).passed
    assert not compare_outputs(ref, cand, Tolerance(scale_rtol=None, min_cosine=0.99)).passed


def test_non_finite_candidate_fails() -> None:
    ref = np.ones((2, 4))
    cand = ref.copy()
    cand[1, 2] = np.nan
    assert not compare_outputs(ref, cand, Tolerance(scale_rtol=None)).passed


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="output shapes differ"):
        compare_outputs(np.zeros((2, 3)), np.zeros((3, 2)))


def test_retrieval_and_sqnr_tell_a_wrong_input_that_cosine_passes(tmp_path: Path) -> None:
    """On random weights a candidate computing on the mirrored image keeps cosine >= 0.95 (the int8
    gate) against the reference: the discriminative numbers do not (issue 13's groundwork)."""
    from resnet_deploy import export_onnx
    from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner

    path = tmp_path / "r20.onnx"
    export_onnx("resnet20", path, weights="random")
    x = np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32)
    with OnnxRuntimeRunner(path) as runner:
        ref, mirrored = runner.infer_all(x), runner.infer_all(np.ascontiguousarray(x[..., ::-1]))
    wrong = compare_outputs(ref, mirrored, Tolerance(scale_rtol=None, min_cosine=0.95))
    assert wrong.passed and wrong.cosine_min >= 0.95  # the cosine gate cannot fail it
    assert wrong.retrieval is not None and wrong.retrieval < 0.2
    assert wrong.sqnr_db is not None and wrong.sqnr_db < 3
    same = compare_outputs(ref, ref + 1e-6, Tolerance(scale_rtol=None))
    assert same.retrieval == 1.0 and same.sqnr_db is not None and same.sqnr_db > 60
    duplicated = compare_outputs(np.concatenate([ref, ref]), np.concatenate([ref, ref]))
    assert duplicated.retrieval == 1.0 and duplicated.sqnr_db == 200.0  # ties and exact matches
    single = compare_outputs(ref[:1], ref[:1])
    assert single.retrieval is None and single.sqnr_db is None
