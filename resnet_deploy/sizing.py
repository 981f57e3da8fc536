"""Which batch size meets a latency budget at the highest throughput (``bench --latency-budget``).

Per target, the search doubles the batch from the smallest the target takes until p99 breaks the
budget (or the target's bound: an engine profile's max, a fixed batch, ``max_batch``), then
bisects between the largest batch that met it and the smallest that did not, as Model Navigator's
``find_max_batch_size`` and trtexec users do by hand. Every point is measured like ``bench``
(interleaved across targets, with the stability rule of ``--stable`` when given), so the answer
is the best *measured* point: the highest throughput among the points whose p99 is within the
budget, which need not be the largest batch on a noisy machine.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bench import BenchReport, BenchRow, Point, Target, _start_report, enter_runners, measure_points, row_of
from .errors import ConfigError
from .reports import Progress, Reporter, StepProgress
from .stability import Stability

MAX_SEARCH_BATCH = 1024  # where an unbounded ONNX's search stops doubling
MAX_BUDGET_MS = 3_600_000.0


@dataclass
class BudgetPoint:
    batch: int
    p50_ms: float
    p99_ms: float
    throughput_ips: float
    stable: bool | None
    meets: bool


@dataclass
class TargetBudget:
    """One target's search: every point tried in order, the chosen one, and why the search stopped."""

    target: str
    points: list[BudgetPoint] = field(default_factory=list)
    bound: str = ""
    best_batch: int | None = None
    p99_ms: float | None = None
    throughput_ips: float | None = None

    def choose(self) -> None:
        meeting = [p for p in self.points if p.meets]
        best = max(meeting, key=lambda p: (p.throughput_ips, -p.batch), default=None)
        if best is not None:
            self.best_batch, self.p99_ms, self.throughput_ips = best.batch, best.p99_ms, best.throughput_ips


@dataclass
class BudgetSearch:
    latency_budget_ms: float
    targets: list[TargetBudget] = field(default_factory=list)

    def met(self) -> bool:
        return any(t.best_batch is not None for t in self.targets)

    def closest(self) -> str:
        """Each target's lowest p99 and where, for the error when nothing meets the budget."""
        parts = []
        for t in self.targets:
            low = min(t.points, key=lambda p: p.p99_ms, default=None)
            if low is not None:
                parts.append(f"{t.target}: p99 {low.p99_ms:.2f} ms at batch {low.batch}")
        return "; ".join(parts) or "nothing was measured"


def check_latency_budget(budget_ms: float) -> float:
    if isinstance(budget_ms, bool) or not (math.isfinite(budget_ms) and 0 < budget_ms <= MAX_BUDGET_MS):
        raise ConfigError(f"--latency-budget {budget_ms}: must be milliseconds in (0, {MAX_BUDGET_MS:g}]")
    return float(budget_ms)


class _Search:
    """One target's search state: the next batch to measure, or None when it is done."""

    def __init__(self, target: Target, budget_ms: float, max_batch: int) -> None:
        runner = target.runner
        self.target = target
        self.budget_ms = budget_ms
        self.result = TargetBudget(target.label)
        self.low = int(getattr(runner, "min_batch", None) or 1)
        self.high = min(int(runner.max_batch or max_batch), max_batch)
        fixed = runner.fixed_batch
        if fixed is not None:
            self.low = self.high = int(fixed)
            self.result.bound = f"fixed batch {fixed}"
        elif runner.max_batch is not None and runner.max_batch <= max_batch:
            self.result.bound = f"profile max {runner.max_batch}"
        else:
            self.result.bound = f"search cap {max_batch}"
        self.good: int | None = None  # largest batch measured within the budget
        self.bad: int | None = None  # smallest batch measured over it
        self.next: int | None = self.low

    def record(self, row: BenchRow) -> None:
        meets = row.latency_ms.p99 <= self.budget_ms
        self.result.points.append(
            BudgetPoint(row.batch, row.latency_ms.p50, row.latency_ms.p99, row.throughput_ips, row.stable, meets)
        )
        b = row.batch
        if meets:
            self.good = b if self.good is None else max(self.good, b)
        else:
            self.bad = b if self.bad is None else min(self.bad, b)
        self.next = self._after()

    def _after(self) -> int | None:
        if self.good is None:  # the smallest batch already breaks the budget
            self.result.bound = f"budget broken at the smallest batch ({self.low})"
            return None
        if self.bad is None:  # still doubling, up to the target's bound
            return None if self.good >= self.high else min(self.good * 2, self.high)
        if self.bad - self.good <= 1:
            self.result.bound = f"budget (p99 over it from batch {self.bad})"
            return None
        return (self.good + self.bad) // 2  # bisect: every batch tried lies outside (good, bad)


def search_batch(
    targets: Sequence[Target],
    latency_budget_ms: float,
    *,
    warmup_s: float = 1.0,
    duration_s: float | None = None,
    iters: int | None = None,
    rounds: int = 5,
    threads: int | None = None,
    stability: Stability | None = Stability(),
    max_batch: int = MAX_SEARCH_BATCH,
    seed: int = 0,
    progress: Progress | StepProgress | None = None,
) -> BenchReport:
    """Search every target's batch size for the highest throughput with p99 <= ``latency_budget_ms``.
    The targets' searches advance together, each step measured interleaved. The report has a row
    per point tried and ``budget`` (a ``BudgetSearch``): ``best_batch`` is None for a target that
    meets the budget at no batch. Points are measured with the stability rule (perf_analyzer's 5%
    over 3 windows unless given; None: fixed rounds). Ctrl-C returns what was measured, marked
    ``interrupted``."""
    budget_ms = check_latency_budget(latency_budget_ms)
    if not 1 <= max_batch <= MAX_SEARCH_BATCH * 64:
        raise ConfigError(f"the search's max batch {max_batch} must be in 1-{MAX_SEARCH_BATCH * 64}")
    report, budget = _start_report(
        targets, [1], warmup_s, duration_s, iters, rounds, threads, False, None, stability, check_sizes=False
    )
    report.settings["batch_sizes"] = "searched"
    report.settings["latency_budget_ms"] = budget_ms
    search = BudgetSearch(budget_ms)
    report.budget = search
    reporter = Reporter(progress)
    rng = np.random.default_rng(seed)
    states = [_Search(t, budget_ms, max_batch) for t in targets]
    search.targets = [s.result for s in states]
    points: list[Point] = []
    opened = contextlib.ExitStack()
    try:
        enter_runners(targets, opened, reporter)
        step = 0
        while True:
            active = [s for s in states if s.next is not None]
            if not active:
                break
            points = [Point(s.target, int(s.next or 1), s.target.runner.preprocess.random(s.next, rng)) for s in active]
            measure_points(points, budget, report.schedule, _say(reporter, step))
            for s, p in zip(active, points, strict=True):
                row = row_of(p, budget, None)
                report.rows.append(row)
                s.record(row)
            points = []
            step += 1
    except KeyboardInterrupt:
        report.interrupted = True
        report.rows += [row_of(p, budget, None) for p in points if p.samples]
    finally:
        opened.close()
        for s in states:
            s.result.choose()
    return report


def _say(reporter: Reporter, step: int) -> Any:
    return lambda text: reporter(f"budget search step {step + 1}: {text}")
