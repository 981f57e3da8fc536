"""bench --stable and --latency-budget: perf_analyzer's stability rule, the batch search, and each
shown to fail on what should fail (a point that never settles, a budget nothing meets).

The search and the rule are tested on runners whose latency is known (a real Runner that sleeps a
set time per image: the timing, windows, interleaving and search all run for real) and end to end
on a real ONNX Runtime session through the CLI. No speed is asserted of the machine itself."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from resnet_deploy import export_onnx
from resnet_deploy.bench import Target, benchmark
from resnet_deploy.cli import app
from resnet_deploy.data import Preprocess
from resnet_deploy.errors import ConfigError
from resnet_deploy.runtime.base import Runner
from resnet_deploy.sizing import check_latency_budget, search_batch
from resnet_deploy.stability import Stability
from tests.helpers import assert_one_line_error


class SleepRunner(Runner):
    """A runner whose call takes ``base_ms + per_image_ms x batch`` (``time.sleep``); with
    ``every``, each block of that many calls is ``growth`` times slower than the one before (a point
    that cannot settle, as on a machine whose load keeps rising)."""

    name = "sleep"

    def __init__(
        self,
        base_ms: float,
        per_image_ms: float,
        *,
        growth: float = 1.0,
        every: int = 0,
        fixed: int | None = None,
        max_batch: int | None = None,
        interrupt_at: int | None = None,
    ) -> None:
        super().__init__()
        self.base_ms, self.per_image_ms = base_ms, per_image_ms
        self.growth, self.every = growth, every
        self._fixed, self._max = fixed, max_batch
        self.interrupt_at = interrupt_at
        self.calls = 0
        self._pre = Preprocess(8, (8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

    def activate(self) -> None:
        pass

    @property
    def preprocess(self) -> Preprocess:
        return self._pre

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed

    @property
    def max_batch(self) -> int | None:
        return self._max

    def infer(self, batch: Any) -> Any:
        n = len(batch)
        if self.interrupt_at is not None and n >= self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        factor = self.growth ** (self.calls // self.every) if self.every else 1.0
        time.sleep((self.base_ms + self.per_image_ms * n) * factor / 1000)
        return np.zeros((n, 10), np.float32)


def test_the_rule_on_known_windows() -> None:
    rule = Stability(pct=5.0, windows=3)
    assert rule.spread_pct([10.0, 10.0]) is None and not rule.settled([10.0, 10.0])  # too few windows
    mean = (10.0 + 10.2 + 9.9) / 3
    assert rule.spread_pct([50.0, 10.0, 10.2, 9.9]) == pytest.approx((10.2 - mean) / mean * 100)
    assert rule.settled([50.0, 10.0, 10.2, 9.9])  # only the last three count
    assert not rule.settled([10.0, 10.0, 11.2])  # 11.2 is 7.3% above their mean
    assert not rule.settled([10.0, 10.0, 10.1], [100.0, 120.0, 100.0])  # every series must agree
    assert rule.spread_pct([0.0, 0.0, 0.0]) == math.inf


@pytest.mark.parametrize(
    "rule, option",
    [
        (Stability(pct=0.0), "--stability-pct"),
        (Stability(pct=float("nan")), "--stability-pct"),
        (Stability(pct=101.0), "--stability-pct"),
        (Stability(windows=1), "--windows"),
        (Stability(windows=1000), "--windows"),
        (Stability(max_duration_s=-1.0), "--max-duration-s"),
        (Stability(max_duration_s=float("inf")), "--max-duration-s"),
    ],
)
def test_bad_rules_are_refused(rule: Stability, option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        rule.check()


def test_a_steady_point_settles_and_an_unsteady_one_does_not() -> None:
    steady = SleepRunner(4.0, 0.0)
    unsteady = SleepRunner(2.0, 0.0, growth=1.5, every=5)  # each window of 5 calls 50% slower than the last
    targets = [Target("steady", steady), Target("unsteady", unsteady)]
    rule = Stability(pct=10.0, windows=3, max_duration_s=1.0)
    report = benchmark(targets, [1], warmup_s=0.0, iters=25, rounds=5, stability=rule)  # windows of 5 calls
    rows = {r.target: r for r in report.rows}
    assert (
        rows["steady"].stable is True and rows["steady"].windows >= 3
    )  # settled (at the first chance, unless hit by load)
    assert rows["steady"].spread_pct is not None and rows["steady"].spread_pct <= 10.0
    assert rows["steady"].latency_ms.count == 15  # statistics from the windows that agree
    assert rows["unsteady"].stable is False and rows["unsteady"].spread_pct > 10.0  # gave up at its limit
    assert rows["unsteady"].windows > 3 and len(rows["unsteady"].window_medians_ms or []) == rows["unsteady"].windows
    # interleaved while both were measured (rotating who goes first); then the settled one stopped
    n = rows["steady"].windows or 0
    both = [[t for _, r, t in report.schedule if r == k] for k in range(n)]
    assert both[0] == ["steady", "unsteady"] and both[1] == ["unsteady", "steady"]
    assert {t for _, r, t in report.schedule if r >= n} == {"unsteady"}
    row = report.to_dict()["rows"][1]
    assert row["stable"] is False and row["windows"] == rows["unsteady"].windows and row["window_medians_ms"]


def test_the_search_doubles_then_bisects_to_the_best_batch() -> None:
    # p99 ~ 10 + 20 x batch ms: batch 6 (130 ms) meets a 140 ms budget, batch 7 (150 ms) does not
    # (10 ms either side: a sleep that overshoots on a loaded machine does not change the answer).
    runner = SleepRunner(10.0, 20.0)
    report = search_batch(
        [Target("sleep", runner)], 140.0, warmup_s=0.0, iters=12, rounds=4, stability=Stability(pct=20.0)
    )
    (t,) = report.budget.targets
    assert [p.batch for p in t.points] == [1, 2, 4, 8, 6, 7]
    assert [p.meets for p in t.points] == [True, True, True, False, True, False]
    assert t.best_batch == 6 and t.p99_ms is not None and t.p99_ms <= 140.0
    assert t.bound == "budget (p99 over it from batch 7)"
    assert [r.batch for r in report.rows] == [1, 2, 4, 8, 6, 7]  # every point tried is a row
    assert report.budget.met() and report.to_dict()["budget"]["targets"][0]["best_batch"] == 6


def test_bounds_and_a_budget_nothing_meets() -> None:
    fixed = SleepRunner(1.0, 1.0, fixed=4)
    profile = SleepRunner(1.0, 1.0, max_batch=3)
    slow = SleepRunner(20.0, 0.0)
    targets = [Target("fixed", fixed), Target("profile", profile), Target("slow", slow)]
    report = search_batch(targets, 15.0, warmup_s=0.0, iters=6, rounds=3, stability=None)
    got = {t.target: t for t in report.budget.targets}
    assert [p.batch for p in got["fixed"].points] == [4] and got["fixed"].best_batch == 4
    assert got["fixed"].bound == "fixed batch 4"
    assert [p.batch for p in got["profile"].points] == [1, 2, 3] and got["profile"].best_batch == 3
    assert got["profile"].bound == "profile max 3"
    assert got["slow"].best_batch is None and got["slow"].bound == "budget broken at the smallest batch (1)"
    nothing = search_batch(
        [Target("slow", SleepRunner(20.0, 0.0))], 15.0, warmup_s=0.0, iters=3, rounds=3, stability=None
    )
    assert not nothing.budget.met() and "slow: p99 2" in nothing.budget.closest()


def test_ctrl_c_keeps_the_points_measured() -> None:
    runner = SleepRunner(5.0, 1.0, interrupt_at=4)  # batch 2 (7 ms) has far more images/s than 1 (6 ms)
    report = search_batch([Target("x", runner)], 100.0, warmup_s=0.0, iters=3, rounds=3, stability=None)
    assert report.interrupted and [r.batch for r in report.rows] == [1, 2]
    assert report.budget.targets[0].best_batch == 2  # chosen among what was measured


@pytest.mark.parametrize("value", [0.0, -5.0, float("nan"), float("inf"), 1e12])
def test_bad_budgets_are_refused(value: float) -> None:
    with pytest.raises(ConfigError, match="--latency-budget"):
        check_latency_budget(value)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("s") / "r20.onnx"
    export_onnx("resnet20", path, weights="random")
    return path


FAST = ["--threads", "1", "--warmup-s", "0", "--iters", "8", "--rounds", "4"]


def test_stable_bench_end_to_end(onnx_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    args = ["bench", str(onnx_path), "--batch-sizes", "1", *FAST, "--stable", "--stability-pct", "50"]
    result = CliRunner().invoke(
        app, [*args, "--max-duration-s", "2", "--json", str(out), "--csv", str(tmp_path / "s.csv")]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["windows"] >= 3 and row["stable"] in (True, False) and len(row["window_medians_ms"]) == row["windows"]
    assert json.loads(out.read_text())["settings"]["stable"] == {"pct": 50.0, "windows": 3, "max_duration_s": 2.0}
    assert "stable" in (tmp_path / "s.csv").read_text().splitlines()[0]


def test_budget_end_to_end(onnx_path: Path, tmp_path: Path) -> None:
    out, plot = tmp_path / "b.json", tmp_path / "b.png"
    args = ["bench", str(onnx_path), *FAST, "--latency-budget", "30", "--stable", "--stability-pct", "90"]
    result = CliRunner().invoke(app, [*args, "--max-duration-s", "1", "--json", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    (t,) = json.loads(out.read_text())["budget"]["targets"]
    assert t["best_batch"] is not None and t["p99_ms"] <= 30 and [p["batch"] for p in t["points"]][:3] == [1, 2, 4]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # a budget nothing meets: exit 1, one line naming the closest point, the report still written
    result = CliRunner().invoke(app, ["bench", str(onnx_path), *FAST, "--latency-budget", "0.001", "--json", str(out)])
    assert result.exit_code == 1
    assert_one_line_error(result.exit_code, result.stderr, "no batch size meets the p99 budget of 0.001 ms; closest:")
    assert json.loads(out.read_text())["budget"]["targets"][0]["best_batch"] is None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--latency-budget", "-3"], "--latency-budget -3.0: must be milliseconds"),
        (["--latency-budget", "nan"], "--latency-budget nan"),
        (["--latency-budget", "10", "--batch-sizes", "1,2"], "searches the batch sizes itself"),
        (["--latency-budget", "10", "--compute-only"], "drop --compute-only and --peak-gflops"),
        (["--latency-budget", "10", "--peak-gflops", "100"], "drop --compute-only and --peak-gflops"),
        (["--cuda-graphs"], "--cuda-graphs applies to --backend torch (--device cuda) and tensorrt"),
        (["--stable", "--windows", "1"], "--windows 1: must be in 2-100"),
        (["--stable", "--stability-pct", "0"], "--stability-pct 0.0"),
        (["--windows", "4"], "--windows configure --stable: add --stable"),
        (["--max-duration-s", "3"], "--max-duration-s configure --stable"),
        (["--concurrency", "1,2"], "--concurrency applies to --server"),
        (["--server", "127.0.0.1:1", "--model", "m"], "--server measures a live server"),
    ],
)
def test_bad_options_are_one_line_errors(onnx_path: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", str(onnx_path), *extra])
    assert result.exit_code == 2
    assert_one_line_error(result.exit_code, result.stderr, message)


def test_hint_goes_to_openvino_targets_only(onnx_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason='needs the openvino extra: pip install "resnet-deploy[openvino]"')
    out = tmp_path / "ov.json"
    args = ["bench", str(onnx_path), "--backend", "openvino", "--backend", "onnxruntime", "--hint", "throughput"]
    result = CliRunner().invoke(app, [*args, "--batch-sizes", "1", *FAST, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert [r["target"] for r in json.loads(out.read_text())["rows"]] == [
        "r20.onnx [openvino throughput]",
        "r20.onnx [onnxruntime]",
    ]
    for flag, value, needle in (
        ("--hint", "latency", "--hint applies to --backend openvino"),
        ("--streams", "2", "--streams applies to --backend tensorrt"),
    ):
        result = CliRunner().invoke(app, ["bench", str(onnx_path), flag, value, *FAST])
        assert_one_line_error(result.exit_code, result.stderr, needle, exit_code=2)


def test_the_environment_names_the_instruction_sets(onnx_path: Path) -> None:
    """int8 is fast only with VNNI/AMX: a CPU report must say which the machine has."""
    from resnet_deploy.bench_env import environment
    from resnet_deploy.system import CPU_ISA

    isa = environment(1, [])["cpu_isa"]
    assert isa is not None and set(isa) == set(CPU_ISA)
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    assert isa["avx2"] == (" avx2" in flags) and isa["avx512_vnni"] == (" avx512_vnni" in flags)
