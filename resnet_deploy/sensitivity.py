"""``--auto-exclude``: find the layers int8 hurts most and keep them in high precision until the
parity gate passes.

Ranking (on the calibration's held-out images, against the fp32 source's logits):

* ``loo`` (leave one out, the default): dequantize one layer of the full int8 graph at a time; a
  layer's score is the SQNR (dB) the output gains. It measures each layer *in the context of all
  the others quantized*, which is the graph that ships.
* ``single``: quantize one layer at a time, the rest in float; a layer's score is the SQNR lost.

benchmarks/results/int8_repair.md measures both on models broken at one and at two layers and on the
trained digits model. Greedy repair then excludes the top-ranked layer, re-judging the whole gate
after each exclusion, and stops at the first pass or at ``max_excluded`` (then it fails with the
ranking). With ``loo``, a step that does not pass re-ranks the remaining layers on the graph as it now
is: a fault the first one hid (the output was already broken, so excluding it alone gained nothing)
then shows (measured there: best or tied on 5 of 5 cases, against 3 of 5 for one static ranking).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from .errors import ConfigError, ParityError
from .metrics import ParityResult, Tolerance, compare_outputs, describe_parity
from .qdq import dequantize_nodes, quantized_modules
from .reports import Progress, Reporter
from .runtime.onnxrt import has_fp16_qdq, session_options

SENSITIVITY_METHODS = ("loo", "single")
DEFAULT_MAX_EXCLUDED = 8

Finish = Callable[[onnx.ModelProto], None]  # the last graph edits before running (fp16 remainder)


@dataclass
class ExclusionStep:
    module: str
    score_db: float  # its score in the ranking it was chosen from
    sqnr_db: float | None  # the output's SQNR with this layer (and the ones before it) excluded
    retrieval: float | None
    gained_db: float | None  # what this exclusion bought, against the step before
    passed: bool


@dataclass
class AutoExcludeReport:
    method: str
    max_excluded: int
    baseline: dict[str, Any]  # the output's numbers before any automatic exclusion
    ranking: list[dict[str, Any]] = field(default_factory=list)  # {module, score_db}, most sensitive first
    steps: list[ExclusionStep] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    rankings: int = 0  # rankings run: the first, and one after each step that did not pass (loo)
    passed: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


def _session_logits(model: onnx.ModelProto, x: NDArray[Any], threads: int) -> NDArray[Any]:
    options = session_options(threads, has_fp16_qdq(model))  # (raises if onnxruntime is missing)
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed_type = (
        np.float16 if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else np.float32
    )
    name = model.graph.input[0].name
    outs = [session.run(None, {name: x[i : i + 16].astype(feed_type)})[0] for i in range(0, len(x), 16)]
    return np.asarray(np.concatenate(outs), dtype=np.float32)


class _Judge:
    """Runs a variant of the int8 graph on the held-out inputs and judges it like the gate."""

    def __init__(
        self,
        source: onnx.ModelProto,
        x: NDArray[Any],
        ref: NDArray[Any],
        tolerance: Tolerance,
        finish: Finish,
        threads: int,
    ) -> None:
        self.source, self.x, self.ref, self.tolerance, self.finish, self.threads = (
            source,
            x,
            ref,
            tolerance,
            finish,
            threads,
        )

    def variant(self, model: onnx.ModelProto, exclude: list[str]) -> onnx.ModelProto:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        if exclude:
            dequantize_nodes(copy, self.source, exclude)
        self.finish(copy)
        return copy

    def judge(self, model: onnx.ModelProto, exclude: list[str]) -> ParityResult:
        return compare_outputs(
            self.ref, _session_logits(self.variant(model, exclude), self.x, self.threads), self.tolerance
        )


def _db(result: ParityResult) -> float:
    return result.sqnr_db if result.sqnr_db is not None else float("-inf")


def rank_layers(
    model: onnx.ModelProto,
    judge: _Judge,
    method: str,
    baseline: ParityResult,
    say: Reporter,
    already: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every int8 layer not ``already`` excluded with its score (dB), most sensitive first."""
    done = list(already or [])
    every = quantized_modules(model)
    layers = [m for m in every if m not in done]
    scores = []
    for i, module in enumerate(layers):
        say(f"sensitivity ({method}): {module} ({i + 1}/{len(layers)})")
        if method == "loo":  # what dequantizing this one layer (beside those already out) gains
            score = _db(judge.judge(model, [*done, module])) - _db(baseline)
        else:  # what quantizing only this layer costs
            score = 200.0 - _db(judge.judge(model, [m for m in every if m != module]))
        scores.append({"module": module, "score_db": round(score, 3)})
    return sorted(scores, key=lambda s: -s["score_db"])


def auto_exclude(
    model: onnx.ModelProto,
    source: onnx.ModelProto,
    x: NDArray[Any],
    ref: NDArray[Any],
    tolerance: Tolerance,
    *,
    finish: Finish,
    method: str = "loo",
    max_excluded: int = DEFAULT_MAX_EXCLUDED,
    threads: int = 2,
    progress: Progress | None = None,
) -> tuple[onnx.ModelProto, AutoExcludeReport]:
    """Exclude the most int8-sensitive layers of ``model`` (an int8 graph before ``finish``) until
    the gate passes on ``x`` against ``ref`` (the fp32 logits). Returns the model with those layers
    dequantized (``finish`` not applied) and the report; raises ParityError with the ranking when
    ``max_excluded`` exclusions are not enough."""
    if method not in SENSITIVITY_METHODS:
        raise ConfigError(f"unknown sensitivity method {method!r}: choose one of {', '.join(SENSITIVITY_METHODS)}")
    if isinstance(max_excluded, bool) or not isinstance(max_excluded, int) or max_excluded < 1:
        raise ConfigError(f"--max-excluded {max_excluded}: must be a positive integer")
    t0 = time.perf_counter()
    say = Reporter(progress)
    judge = _Judge(source, x, ref, tolerance, finish, threads)
    base = judge.judge(model, [])
    report = AutoExcludeReport(method, max_excluded, _numbers(base))
    if base.passed:
        report.passed = True
        report.seconds = time.perf_counter() - t0
        return model, report
    report.ranking = ranking = rank_layers(model, judge, method, base, say)
    report.rankings = 1
    excluded: list[str] = []
    last = base
    while ranking and len(excluded) < max_excluded:
        entry = ranking[0]
        excluded.append(entry["module"])
        say(f"excluding {entry['module']} ({len(excluded)}/{max_excluded})")
        now = judge.judge(model, excluded)
        gained = None if now.sqnr_db is None or last.sqnr_db is None else round(now.sqnr_db - last.sqnr_db, 3)
        step = ExclusionStep(entry["module"], entry["score_db"], now.sqnr_db, now.retrieval, gained, now.passed)
        report.steps.append(step)
        last = now
        if now.passed:
            break
        ranking = [r for r in ranking if r["module"] not in excluded]
        if method == "loo" and ranking and len(excluded) < max_excluded:  # re-rank on the graph as it now is
            ranking = rank_layers(model, judge, method, now, say, already=excluded)
            report.rankings += 1
    report.excluded = excluded
    report.passed = last.passed
    report.seconds = time.perf_counter() - t0
    if not last.passed:
        top = ", ".join(f"{r['module']} ({r['score_db']:+.1f} dB)" for r in report.ranking[:5])
        raise ParityError(
            f"--auto-exclude: int8 still fails the gate after excluding {len(excluded)} layer(s) "
            f"(--max-excluded {max_excluded}): {describe_parity(last)}; most sensitive: {top}",
            report,
        )
    repaired = onnx.ModelProto()
    repaired.CopyFrom(model)
    dequantize_nodes(repaired, source, excluded)
    return repaired, report


def _numbers(result: ParityResult) -> dict[str, Any]:
    return {
        "sqnr_db": result.sqnr_db,
        "retrieval": result.retrieval,
        "cosine_min": result.cosine_min,
        "top1_agreement": result.top1_agreement,
        "passed": result.passed,
    }
