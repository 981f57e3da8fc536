"""Latency and throughput per batch size, for one or several runners measured side by side.

Targets are measured in interleaved rounds (A B C, B C A, C A B, ...) at each batch size, so that
drift on a shared machine (other jobs, thermal state, frequency) hits all of them alike; ratios are
then taken within one run. Warm-up is excluded. CPU timings use ``perf_counter_ns`` with the thread
counts recorded; on GPUs runners that can time phases with CUDA events report host-to-device,
compute and device-to-host separately (as trtexec does), and ``compute_only`` times compute alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .bench_env import environment as environment
from .bench_env import gpu_state as _gpu_state
from .bench_plot import require_matplotlib as require_matplotlib
from .bench_plot import write_csv as write_csv
from .bench_plot import write_plot as write_plot
from .choices import Backend
from .errors import ConfigError
from .metrics import check_batch_sizes as _check_sizes
from .models.profile import count_macs
from .models.registry import model_stats
from .onnx_io import ArtifactMeta
from .reports import Progress, Reporter, StepProgress, atomic_write_text, dumps, sha256_file
from .runtime.pyt import TorchRunner
from .runtime.registry import artifact_kind, open_backend, resolve_backend
from .stability import Stability

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics in milliseconds (percentiles by linear interpolation, numpy's default)."""

    count: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p95, p99 = (float(np.percentile(a, q)) for q in PERCENTILES)
        return cls(
            int(a.size),
            float(a.mean()),
            float(a.std(ddof=1)) if a.size > 1 else 0.0,
            float(a.min()),
            p50,
            p90,
            p95,
            p99,
            float(a.max()),
        )


@dataclass
class Target:
    """Something to measure: a label, and a runner (entered once for the whole benchmark)."""

    label: str
    runner: Any
    macs_per_image: int | None = None
    sha256: str | None = None


@dataclass
class BenchRow:
    target: str
    backend: str
    batch: int
    latency_ms: LatencyStats
    throughput_ips: float  # images per second = batch / mean latency
    gflops: float | None  # achieved: MACs x 2 x images/s / 1e9
    peak_fraction: float | None
    phases_ms: dict[str, float] | None = None  # mean h2d / compute / d2h on GPUs
    stable: bool | None = None  # --stable: whether the last windows' medians agreed
    windows: int | None = None  # windows (rounds) measured
    spread_pct: float | None = None  # --stable: how far the last windows' medians are from their mean
    window_medians_ms: list[float] | None = None
    images_per_call: int | None = None  # batch x the runner's streams (TensorRT --streams)
    gpu_start: dict[str, Any] | None = None  # NVML before the point's first window (GPU runners)
    gpu_end: dict[str, Any] | None = None  # NVML after its last window

    def flat(self) -> dict[str, Any]:
        row: dict[str, Any] = {"target": self.target, "backend": self.backend, "batch": self.batch}
        row |= {f"latency_{k}_ms" if k != "count" else "iterations": v for k, v in asdict(self.latency_ms).items()}
        row |= {"throughput_ips": self.throughput_ips, "gflops": self.gflops, "peak_fraction": self.peak_fraction}
        for phase in ("h2d", "compute", "d2h"):
            row[f"{phase}_ms"] = (self.phases_ms or {}).get(phase)
        row |= {"stable": self.stable, "windows": self.windows, "spread_pct": self.spread_pct}
        row["images_per_call"] = self.images_per_call
        return row


@dataclass
class BenchReport:
    environment: dict[str, Any]
    settings: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)
    schedule: list[tuple[int, int, str]] = field(default_factory=list)  # (batch, round, target) in run order
    interrupted: bool = False
    budget: Any = None  # bench --latency-budget: the search (sizing.BudgetSearch)

    def ratios(self) -> list[dict[str, Any]]:
        """Each target's throughput relative to the first target, per batch size."""
        out = []
        first = self.rows[0].target if self.rows else None
        for batch in sorted({r.batch for r in self.rows}):
            base = next((r for r in self.rows if r.batch == batch and r.target == first), None)
            for r in self.rows:
                if r.batch == batch and base is not None:
                    out.append(
                        {
                            "batch": batch,
                            "target": r.target,
                            "vs": first,
                            "speedup": r.throughput_ips / base.throughput_ips,
                        }
                    )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "settings": self.settings,
            "interrupted": self.interrupted,
            "rows": [
                r.flat() | {"window_medians_ms": r.window_medians_ms, "gpu_start": r.gpu_start, "gpu_end": r.gpu_end}
                for r in self.rows
            ],
            "ratios": self.ratios(),
        } | ({"budget": asdict(self.budget)} if self.budget is not None else {})


MAX_SECONDS = 24 * 3600.0  # a benchmark point's duration or warm-up
MAX_ITERS = 10**7
MAX_ROUNDS = 10_000


def check_budget(duration_s: float | None, iters: int | None, warmup_s: float, rounds: int) -> None:
    """Finite, positive, bounded: a NaN, infinite or 1e30-second budget would never end."""
    import math

    if duration_s is not None and not (math.isfinite(duration_s) and 0 < duration_s <= MAX_SECONDS):
        raise ConfigError(f"--duration-s {duration_s}: must be a number of seconds in (0, {MAX_SECONDS:g}]")
    if iters is not None and not 0 < iters <= MAX_ITERS:
        raise ConfigError(f"--iters {iters}: must be in 1-{MAX_ITERS}")
    if not (math.isfinite(warmup_s) and 0 <= warmup_s <= MAX_SECONDS):
        raise ConfigError(f"--warmup-s {warmup_s}: must be a number of seconds in [0, {MAX_SECONDS:g}]")
    if not 0 < rounds <= MAX_ROUNDS:
        raise ConfigError(f"--rounds {rounds}: must be in 1-{MAX_ROUNDS}")


def check_batch_sizes(batch_sizes: Sequence[int], targets: Sequence[Target]) -> list[int]:
    sizes = _check_sizes(list(batch_sizes))
    for t in targets:
        fixed, limit = t.runner.fixed_batch, t.runner.max_batch
        low = getattr(t.runner, "min_batch", None) or 1
        if fixed is not None and any(b != fixed for b in sizes):
            raise ConfigError(f"{t.label} has a fixed batch of {fixed}: use --batch-sizes {fixed}")
        bad = [b for b in sizes if (limit is not None and b > limit) or b < low]
        if bad:
            raise ConfigError(f"batch size {bad[0]} is outside {t.label}'s profile range {low}-{limit}")
    return sizes


def _phase_timed(runner: Any) -> bool:
    """Whether a runner reports h2d / compute / d2h from CUDA events (GPU runners)."""
    timed = getattr(runner, "infer_timed", None)
    return timed is not None and getattr(runner, "device", "cuda") == "cuda"


def _time_once(runner: Any, x: NDArray[Any], compute_only: bool) -> tuple[float, dict[str, float] | None]:
    """Wall-clock latency of one call (everything the caller pays), plus GPU phases when available;
    with ``compute_only`` the latency is the CUDA-event compute time alone."""
    t0 = time.perf_counter_ns()
    phases = runner.infer_timed(x) if _phase_timed(runner) else None
    if phases is None:
        runner.infer(x)
    wall = (time.perf_counter_ns() - t0) / 1e6
    if compute_only and phases is not None:
        return phases["compute"], phases
    return wall, phases


@dataclass
class Point:
    """One (target, batch) being measured: its samples, grouped in windows (one per round)."""

    target: Target
    batch: int
    x: NDArray[Any]
    samples: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    bounds: list[tuple[int, int]] = field(default_factory=list)  # each window's [start, end) in samples
    measured_s: float = 0.0
    gpu_start: dict[str, Any] | None = None
    gpu_end: dict[str, Any] | None = None

    def window_medians(self) -> list[float]:
        return [float(np.median(self.samples[a:b])) for a, b in self.bounds if b > a]


@dataclass(frozen=True)
class Budget:
    """How long each point is measured: ``duration_s`` seconds or ``iters`` iterations over
    ``rounds`` interleaved rounds; with ``stability``, windows of that round's length until the
    rule is met or ``stability.max_duration_s`` (default 10 windows) is spent."""

    duration_s: float | None
    iters: int | None
    rounds: int
    warmup_s: float
    compute_only: bool = False
    stability: Stability | None = None

    def window(self, r: int) -> tuple[int | None, float | None]:
        """Round ``r``'s iterations or seconds."""
        if self.iters is not None:
            if self.stability is not None:  # every window the same length, so their medians compare
                return max(1, self.iters // self.rounds), None
            return self.iters // self.rounds + (1 if r < self.iters % self.rounds else 0), None
        return None, (self.duration_s or 5.0) / self.rounds

    def limit_s(self) -> float:
        """Measured seconds after which an unsettled point gives up (``--stable``): the rule's
        ``max_duration_s``, else 10 windows (with ``iters``: no time limit, 10 windows by count)."""
        if self.stability is not None and self.stability.max_duration_s is not None:
            return self.stability.max_duration_s
        if self.iters is not None:
            return math.inf
        return 10 * ((self.duration_s or 5.0) / self.rounds)

    def max_windows(self) -> int:
        if self.stability is None:
            return self.rounds
        if self.iters is not None and self.stability.max_duration_s is None:
            return max(self.stability.windows, 10)
        return MAX_ROUNDS  # bounded by time


def _measure_window(p: Point, budget: Budget, r: int) -> None:
    n, seconds = budget.window(r)
    start = len(p.samples)
    t0 = time.perf_counter()
    if n is not None:
        for _ in range(n):
            ms, ph = _time_once(p.target.runner, p.x, budget.compute_only)
            p.samples.append(ms)
            if ph:
                p.phases.append(ph)
    else:
        end = t0 + (seconds or 0.0)
        while True:
            ms, ph = _time_once(p.target.runner, p.x, budget.compute_only)
            p.samples.append(ms)
            if ph:
                p.phases.append(ph)
            if time.perf_counter() >= end:
                break
    p.measured_s += time.perf_counter() - t0
    p.bounds.append((start, len(p.samples)))


def _settled(p: Point, budget: Budget) -> bool:
    rule = budget.stability
    return rule is None or rule.settled(p.window_medians())


def measure_points(
    points: Sequence[Point],
    budget: Budget,
    schedule: list[tuple[int, int, str]],
    say: Any = None,
) -> None:
    """Warm each point up, then measure them in interleaved rounds (A B C, B C A, ...), one window
    per point per round. Without a stability rule: ``rounds`` rounds. With one: a point is measured
    until its last windows agree (then it stops, its windows kept) or it has spent its measuring
    limit; the others go on interleaved among themselves."""
    for p in points:  # warm-up, excluded from the statistics
        if say:
            say(f"warming up {p.target.label} at batch {p.batch}")
        end = time.perf_counter() + budget.warmup_s
        _time_once(p.target.runner, p.x, False)  # the measured call: every stream, its CUDA graphs
        while time.perf_counter() < end:
            _time_once(p.target.runner, p.x, False)
    r = 0
    while r < budget.max_windows():
        pending = [p for p in points if not (budget.stability and (_settled(p, budget) or _spent(p, budget)))]
        if budget.stability is not None and not pending:
            break
        for k in range(len(points)):
            p = points[(r + k) % len(points)]  # rotate who goes first in each round
            if budget.stability is not None and p not in pending:
                continue  # settled (or given up): its windows stay as they are
            schedule.append((p.batch, r, p.target.label))
            if say:
                say(f"batch {p.batch}, {'window' if budget.stability else 'round'} {r + 1}: {p.target.label}")
            gpu = _phase_timed(p.target.runner)  # NVML around each GPU point's own windows
            if gpu and not p.bounds:
                p.gpu_start = _gpu_state()  # clocks, power, clocks-event reasons (None: no NVML)
            _measure_window(p, budget, r)
            if gpu:
                p.gpu_end = _gpu_state()  # after its latest window: after its last, once it is done
        r += 1


def _spent(p: Point, budget: Budget) -> bool:
    return len(p.bounds) >= (budget.stability.windows if budget.stability else 1) and p.measured_s >= budget.limit_s()


def benchmark(
    targets: Sequence[Target],
    batch_sizes: Sequence[int] = (1, 8, 32),
    *,
    warmup_s: float = 2.0,
    duration_s: float | None = None,
    iters: int | None = None,
    rounds: int = 5,
    threads: int | None = None,
    compute_only: bool = False,
    peak_gflops: float | None = None,
    stability: Stability | None = None,
    seed: int = 0,
    progress: Progress | StepProgress | None = None,
) -> BenchReport:
    """Measure every target at every batch size, interleaved. Runners not yet entered are entered
    here and exited afterwards (the caller's stay open).

    The budget per (target, batch) is ``duration_s`` seconds (default 5) or ``iters`` iterations, split over
    ``rounds`` rounds. With ``stability`` (``--stable``) each round is a window and a point is
    measured until its last windows' medians agree (``stable`` per row; statistics from those
    windows). Ctrl-C stops the measurement and returns what was measured so far, marked
    ``interrupted``.
    """
    report, budget = _start_report(
        targets, batch_sizes, warmup_s, duration_s, iters, rounds, threads, compute_only, peak_gflops, stability
    )
    sizes = report.settings["batch_sizes"]
    reporter = Reporter(progress)
    rng = np.random.default_rng(seed)
    points: list[Point] = []
    opened = contextlib.ExitStack()
    try:
        enter_runners(targets, opened, reporter)
        for i, batch in enumerate(sizes):
            # One input per target, at its own size (artifacts of different image sizes side by side).
            points = [Point(t, batch, t.runner.preprocess.random(batch, rng)) for t in targets]
            measure_points(points, budget, report.schedule, _stepper(reporter, i, len(sizes)))
            report.rows += [row_of(p, budget, peak_gflops) for p in points if p.samples]
            points = []
    except KeyboardInterrupt:
        report.interrupted = True
        report.rows += [row_of(p, budget, peak_gflops) for p in points if p.samples]  # only what was measured
    finally:
        opened.close()
    return report


def enter_runners(targets: Sequence[Target], stack: contextlib.ExitStack, reporter: Reporter) -> None:
    """Enter (load) the runners not yet entered, on ``stack``: the caller's stay as they are."""
    for t in targets:
        if not t.runner.active:
            reporter(f"loading {t.label}")
            stack.enter_context(t.runner)


def _stepper(reporter: Reporter, i: int, n: int) -> Any:
    return lambda text: reporter.step(text, i, n)


def _start_report(
    targets: Sequence[Target],
    batch_sizes: Sequence[int],
    warmup_s: float,
    duration_s: float | None,
    iters: int | None,
    rounds: int,
    threads: int | None,
    compute_only: bool,
    peak_gflops: float | None,
    stability: Stability | None,
    *,
    check_sizes: bool = True,
) -> tuple[BenchReport, Budget]:
    """The checked settings, as an empty report and the measuring budget."""
    if not targets:
        raise ConfigError("nothing to benchmark: give at least one artifact or --depth")
    if duration_s is not None and iters is not None:
        raise ConfigError("give either a duration or an iteration count, not both")
    if duration_s is None and iters is None:
        duration_s = 5.0
    check_budget(duration_s, iters, warmup_s, rounds)
    if stability is not None:
        stability.check()
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"targets need distinct labels, got {labels}")
    sizes = list(batch_sizes)
    if check_sizes:
        sizes = check_batch_sizes(list(dict.fromkeys(batch_sizes)), targets)  # duplicates measured once
    if compute_only:
        untimed = [t.label for t in targets if not _phase_timed(t.runner)]
        if untimed:
            raise ConfigError(
                f"--compute-only needs GPU runners that time compute apart (torch on cuda, tensorrt): "
                f"{', '.join(untimed)} cannot"
            )
    budget = Budget(duration_s, iters, rounds, warmup_s, compute_only, stability)
    report = BenchReport(
        environment=environment(threads, targets),
        settings={
            "batch_sizes": sizes,
            "warmup_s": warmup_s,
            "duration_s": duration_s,
            "iters": iters,
            "rounds": rounds,
            "compute_only": compute_only,
            "peak_gflops": peak_gflops,
            "stable": None
            if stability is None
            else {**asdict(stability), "max_duration_s": budget.limit_s() if math.isfinite(budget.limit_s()) else None},
            "timer": "perf_counter_ns (CPU) / CUDA events (GPU runners that time phases)",
        },
    )
    return report, budget


def save_report(report: BenchReport, folder: str | os.PathLike[str], stem: str) -> None:
    """``<stem>.json``, ``<stem>.csv`` and ``<stem>.png`` (with matplotlib) in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", dumps(report))
    write_csv(report, out / f"{stem}.csv")
    write_plot(report, out / f"{stem}.png")


def row_of(p: Point, budget: Budget, peak_gflops: float | None) -> BenchRow:
    """A point's row: statistics over all its samples, or with a stability rule over its last
    windows (the ones that agree, or the last tried)."""
    t, batch = p.target, p.batch
    samples = p.samples
    stable = spread = None
    medians = p.window_medians()
    if budget.stability is not None:
        k = budget.stability.windows
        samples = p.samples[p.bounds[-k][0] :] if len(p.bounds) >= k else p.samples
        stable = budget.stability.settled(medians)
        spread = budget.stability.spread_pct(medians)
    stats = LatencyStats.of(samples)
    per_call = batch * getattr(t.runner, "streams", 1)  # TensorRT --streams: batch on each stream
    ips = per_call / (stats.mean / 1000.0)
    gflops = t.macs_per_image * 2 * ips / 1e9 if t.macs_per_image else None
    mean_phases = None
    phases = p.phases[len(p.samples) - len(samples) :] if len(p.phases) == len(p.samples) else p.phases
    if phases:  # GPU runners time every call: the same calls as the latency statistics
        mean_phases = {k: float(np.mean([ph[k] for ph in phases])) for k in phases[0]}
    return BenchRow(
        target=t.label,
        backend=getattr(t.runner, "name", "?"),
        batch=batch,
        latency_ms=stats,
        throughput_ips=ips,
        gflops=gflops,
        peak_fraction=gflops / peak_gflops if gflops is not None and peak_gflops else None,
        phases_ms=mean_phases,
        stable=stable,
        windows=len(p.bounds),
        spread_pct=spread,
        window_medians_ms=medians,
        images_per_call=per_call,
        gpu_start=p.gpu_start,
        gpu_end=p.gpu_end,
    )


# --------------------------------------------------------------------------------------- targets


def bench_targets(
    artifacts: Sequence[str | os.PathLike[str]],
    *,
    depth: int | None = None,
    backends: Sequence[str | Backend] = (),
    device: str = "cpu",
    dtype: str = "fp32",
    threads: int | None = None,
    hint: str | None = None,
    streams: int = 1,
    **torch_options: Any,
) -> list[Target]:
    """One Target per artifact x backend (each artifact's own backend when none is given), opened
    through the runtime registry, plus a PyTorch zoo model (random weights) for ``depth`` unless
    ``depth`` names the architecture of checkpoint artifacts. ``torch`` on an ONNX or a plan is the
    PyTorch model it was exported from."""
    names = [Path(a).name for a in artifacts]
    targets = []
    for artifact in artifacts:
        path = Path(artifact)
        if not path.is_file():
            raise ConfigError(f"file not found: {path}")
        kind = artifact_kind(path)
        shown = path.name if names.count(path.name) == 1 else f"{path.parent.name}/{path.name}"
        for backend in [resolve_backend(path, b) for b in backends] or [resolve_backend(path)]:
            torch_label = _torch_label(device, dtype, torch_options) if backend is Backend.torch else ""
            # --hint is OpenVINO's and --streams TensorRT's: each goes to its own backend's targets
            extra: dict[str, Any] = {"hint": hint} if hint is not None and backend is Backend.openvino else {}
            extra |= {"streams": streams} if streams != 1 and backend is Backend.tensorrt else {}
            options = dict(torch_options)
            if backend not in (Backend.torch, Backend.tensorrt):  # CUDA graphs: torch's and TensorRT's only
                options.pop("cuda_graphs", None)
            runner = open_backend(
                path, backend, threads=threads, depth=depth, device=device, dtype=dtype, **extra, **options
            )
            macs = _macs_from_metadata(runner.metadata) if kind in ("onnx", "plan") else None
            if macs is None and isinstance(runner, TorchRunner):
                macs = count_macs(runner.model, runner.preprocess.crop)
            if backend is Backend.tensorrt:
                torch_label = _trt_label(streams, torch_options)
            elif backend is Backend.openvino and hint is not None:
                torch_label = f" {hint}"
            targets.append(Target(f"{shown} [{backend.value}{torch_label}]", runner, macs, sha256_file(path)))
    names_used = {t.runner.name for t in targets}
    if hint is not None and "openvino" not in names_used:
        raise ConfigError("--hint applies to --backend openvino, and no target runs on it")
    if streams != 1 and "tensorrt" not in names_used:
        raise ConfigError("--streams applies to --backend tensorrt, and no target runs on it")
    zoo_too = depth is not None and not any(artifact_kind(a) == "checkpoint" for a in artifacts)
    if torch_options.get("cuda_graphs") and not zoo_too and not names_used & {"torch", "tensorrt"}:
        raise ConfigError(
            "--cuda-graphs applies to --backend torch (--device cuda) and tensorrt, and no target runs on them"
        )
    if zoo_too:
        zoo = TorchRunner.from_zoo(
            str(depth), weights="random", threads=threads, device=device, dtype=dtype, **torch_options
        )
        info = zoo.model.weights_info
        label = f"resnet{depth} [torch{_torch_label(device, dtype, torch_options)}]"
        targets.append(
            Target(label, zoo, count_macs(zoo.model, zoo.preprocess.crop), info.state_sha256 if info else None)
        )
    return targets


def _macs_from_metadata(meta: Mapping[str, str]) -> int | None:
    m = ArtifactMeta(meta)
    try:
        if m.model is None or m.image_size is None:
            return None
        stats = model_stats(
            m.model,
            variant=m.variant,
            shortcut=m.shortcut,
            num_classes=m.num_classes or 1000,
            image_size=m.image_size,
            widths=m.widths,
        )
        return stats[1]
    except ConfigError:
        return None


def _trt_label(streams: int, options: Mapping[str, Any]) -> str:
    """' cuda-graphs streams=2': what sets a TensorRT target apart from the plain one."""
    return (" cuda-graphs" if options.get("cuda_graphs") else "") + (f" streams={streams}" if streams > 1 else "")


def _torch_label(device: str, dtype: str, options: Mapping[str, Any]) -> str:
    parts = [device, dtype] + [k.replace("_", "-") for k, v in options.items() if v]
    return " " + " ".join(parts)
