"""A perf_analyzer-style concurrency sweep against a live Triton server (``bench --server``).

Works against ``resnet-deploy serve`` and any Triton serving a model with one input: the input's
name, type, shape and format and the model's ``max_batch_size`` are read from the server (model
metadata and config), and random inputs of that type are sent (uint8 pixels for a uint8 NHWC
model, normal floats for a float model).

At each concurrency C, C threads, each with its own client object (tritonclient's clients are not
thread-safe), send requests one after another, so exactly C requests are in flight. A level is a
warm-up (excluded), then the measurement: windows of equal length, each with its throughput
(requests completed in it) and median latency. Without a stability rule the duration is split into
three windows (their spread is reported, not judged); with one (``stability.Stability``) windows
continue until the last ``windows`` of them agree in throughput and median latency within ``pct``
percent, as perf_analyzer decides, or ``max_duration_s`` is spent (``stable: false``).

Triton's own statistics (the statistics endpoint) are read when no request is in flight, right
before the measurement and after its last request returned, so their deltas count exactly the
measured requests: mean queue and compute times per request, executions and the batch sizes the
dynamic batcher executed. Failed requests are counted, not raised; Ctrl-C returns what was
measured, marked ``interrupted``.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import ConfigError
from .reports import Progress, Reporter, StepProgress, atomic_write_text
from .served_model import PROTOCOLS as PROTOCOLS
from .served_model import LoadPhase as LoadPhase
from .served_model import ServedModel as ServedModel
from .served_model import describe_model as describe_model
from .served_model import parse_url as parse_url
from .stability import Stability
from .system import cpu_count, cpu_model, dist_version

MAX_CONCURRENCY = 256  # client threads (and connections) at one level
MAX_SECONDS = 24 * 3600.0
DEFAULT_WINDOWS = 3  # windows a level is split into when no stability rule is given


# ------------------------------------------------------------------------------------ arguments


def parse_concurrency(text: str) -> list[int]:
    """``"1,2,4,8"`` -> [1, 2, 4, 8]: positive integers up to MAX_CONCURRENCY, duplicates once."""
    try:
        levels = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--concurrency {text!r}: give comma-separated positive integers, e.g. 1,2,4,8") from None
    return check_concurrency(levels, text if levels else repr(text))


def check_concurrency(levels: Sequence[int], shown: object = None) -> list[int]:
    what = f"--concurrency {shown if shown is not None else ','.join(map(str, levels))!s}"
    if not levels or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in levels):
        raise ConfigError(f"{what}: give comma-separated positive integers, e.g. 1,2,4,8")
    bad = [int(c) for c in levels if not 1 <= c <= MAX_CONCURRENCY]
    if bad:
        raise ConfigError(f"{what}: {bad[0]} requests in flight; each level must be in 1-{MAX_CONCURRENCY}")
    return list(dict.fromkeys(int(c) for c in levels))


def _check_budget(duration_s: float, warmup_s: float, timeout_s: float, batch: int) -> None:
    for option, value, low in (("--duration-s", duration_s, 0.0), ("timeout_s", timeout_s, 0.0)):
        if isinstance(value, bool) or not (math.isfinite(value) and low < value <= MAX_SECONDS):
            raise ConfigError(f"{option} {value}: must be a number of seconds in (0, {MAX_SECONDS:g}]")
    if isinstance(warmup_s, bool) or not (math.isfinite(warmup_s) and 0 <= warmup_s <= MAX_SECONDS):
        raise ConfigError(f"--warmup-s {warmup_s}: must be a number of seconds in [0, {MAX_SECONDS:g}]")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ConfigError(f"--batch {batch}: must be a positive number of images per request")


def _sleep_until(t: float) -> None:
    """Sleep in short steps (Ctrl-C lands within a fraction of a second)."""
    while (left := t - time.perf_counter()) > 0:
        time.sleep(min(left, 0.1))


# ------------------------------------------------------------------------------------- the sweep


@dataclass
class SweepRow:
    concurrency: int
    batch: int
    requests: int  # measured requests sent (successes + failures)
    failures: int
    throughput_ips: float  # images per second over the measured windows
    throughput_rps: float  # requests per second
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_mean_ms: float | None
    stable: bool | None  # None: no stability rule was asked for
    windows: int
    spread_pct: float | None  # the largest spread of window throughput and median latency
    server: dict[str, Any] | None  # Triton's statistics over the measured requests
    first_failure: str | None = None
    window_throughput_ips: list[float] = field(default_factory=list)

    def flat(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ServerSweep:
    environment: dict[str, Any]
    settings: dict[str, Any]
    rows: list[SweepRow] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "settings": self.settings,
            "interrupted": self.interrupted,
            "rows": [r.flat() for r in self.rows],
        }


def server_delta(
    before: tuple[dict[str, int], dict[int, int]], after: tuple[dict[str, int], dict[int, int]]
) -> dict[str, Any]:
    """Triton's statistics between two readings: counts, mean times per request in microseconds
    (Triton charges each request of a batch the batch's compute time, as perf_analyzer shows
    them), compute per execution, mean executed batch and executions per batch size."""
    d = {k: v - before[0].get(k, 0) for k, v in after[0].items()}
    hist = {b: n - before[1].get(b, 0) for b, n in sorted(after[1].items()) if n - before[1].get(b, 0) > 0}
    executions = d.get("execution_count", 0)

    def mean_us(key: str) -> float | None:
        n = d.get(f"{key}_count", 0)
        return round(d.get(f"{key}_ns", 0) / n / 1e3, 1) if n else None

    return {
        "success": d.get("success_count", 0),
        "fail": d.get("fail_count", 0),
        "inference_count": d.get("inference_count", 0),
        "execution_count": executions,
        "mean_batch": round(d.get("inference_count", 0) / executions, 3) if executions else None,
        "queue_us": mean_us("queue"),
        "compute_input_us": mean_us("compute_input"),
        "compute_infer_us": mean_us("compute_infer"),
        "compute_output_us": mean_us("compute_output"),
        "exec_compute_infer_us": round(d.get("exec_compute_infer_ns", 0) / sum(hist.values()) / 1e3, 1)
        if hist
        else None,
        "batch_sizes": hist,
    }


def _read_statistics(served: Any, client: Any) -> Any:
    """Triton's statistics now, or None when the server no longer answers."""
    try:
        return served.statistics(client)
    except Exception:
        return None


def _baseline(served: Any, client: Any, baseline: Any, warm: Any) -> Any:
    """The reading a level's statistics start from: taken once Triton has counted every warm-up
    request (a client has its answer a moment before Triton counts it), so none of them leaks
    into the level's numbers."""
    if baseline is None or warm is None:
        return _read_statistics(served, client)
    sent = len(warm.all_records())
    deadline = time.perf_counter() + 1.0
    while True:
        now = _read_statistics(served, client)
        if now is None:
            return None
        counted = server_delta(baseline, now)
        if counted["success"] + counted["fail"] >= sent or time.perf_counter() >= deadline:
            return now
        time.sleep(0.02)


def _statistics_after(served: Any, client: Any, before: Any, phase: Any, wait_s: float = 1.0) -> dict[str, Any]:
    """Triton's statistics over a phase's requests. A client has its response a moment before
    Triton counts the request (seen: 197 of 198 read at once), so the reading is repeated for up
    to ``wait_s`` until every request Triton had to answer is counted."""
    sent = len(phase.all_records())
    deadline = time.perf_counter() + wait_s
    while True:
        stats = server_delta(before, served.statistics(client))
        if stats["success"] + stats["fail"] >= sent or time.perf_counter() >= deadline:
            return stats
        time.sleep(0.02)


def _windows(
    records: Sequence[tuple[float, float, str | None]], bounds: Sequence[tuple[float, float]], batch: int
) -> tuple[list[float], list[float]]:
    """Per window: images/s of the requests completed in it, and their median latency (ms)."""
    times = np.array([r[0] for r in records if r[2] is None])
    lat = np.array([r[1] for r in records if r[2] is None])
    thr, p50 = [], []
    for a, b in bounds:
        inside = (times >= a) & (times < b)
        thr.append(float(inside.sum()) * batch / (b - a) if b > a else 0.0)
        p50.append(float(np.median(lat[inside])) if inside.any() else math.nan)
    return thr, p50


def _row(
    c: int,
    batch: int,
    phase: LoadPhase,
    bounds: list[tuple[float, float]],
    rule: Stability | None,
    server: dict[str, Any] | None,
) -> SweepRow | None:
    records = phase.all_records()
    if not records or not bounds:
        return None
    thr, p50 = _windows(records, bounds, batch)  # every window, for the rule and the report
    judged = records
    thr_k, bounds_k = thr, bounds
    if rule is not None and len(bounds) >= rule.windows:
        # latency and throughput come from the windows the rule judged (the last K), as bench's
        # do; the request and failure counts stay the level's, as Triton's statistics are
        first, last = bounds[-rule.windows][0], bounds[-1][1]
        judged = [r for r in records if first <= r[0] < last]
        thr_k, bounds_k = thr[-rule.windows :], bounds[-rule.windows :]
    ok = np.array([r[1] for r in judged if r[2] is None])
    failed = [r for r in records if r[2] is not None] + [(0.0, 0.0, e) for e in phase.setup_errors]
    seconds = bounds_k[-1][1] - bounds_k[0][0]
    done = sum(t * (b - a) for t, (a, b) in zip(thr_k, bounds_k, strict=True)) / batch
    judge = rule or Stability(windows=min(len(bounds), DEFAULT_WINDOWS))
    spreads = [judge.spread_pct(s) for s in (thr, p50)] if len(bounds) >= 2 else [None]
    spread = None if any(s is None for s in spreads) else max(s for s in spreads if s is not None)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(ok, q)), 3) if ok.size else None

    return SweepRow(
        concurrency=c,
        batch=batch,
        requests=len(records) + len(phase.setup_errors),
        failures=len(failed),
        throughput_ips=round(done * batch / seconds, 2) if seconds > 0 else 0.0,
        throughput_rps=round(done / seconds, 2) if seconds > 0 else 0.0,
        latency_p50_ms=pct(50),
        latency_p90_ms=pct(90),
        latency_p95_ms=pct(95),
        latency_p99_ms=pct(99),
        latency_mean_ms=round(float(ok.mean()), 3) if ok.size else None,
        stable=None if rule is None else rule.settled(thr, p50),
        windows=len(bounds),
        spread_pct=None if spread is None or not math.isfinite(spread) else round(spread, 2),
        server=server,
        first_failure=failed[0][2] if failed else None,
        window_throughput_ips=[round(t, 2) for t in thr],
    )


def _measure(
    phase: LoadPhase, window_s: float, rule: Stability | None, max_s: float
) -> tuple[list[tuple[float, float]], bool]:
    """Run ``phase`` window by window until the rule is met (or DEFAULT_WINDOWS windows without a
    rule, or ``max_s`` measured seconds); returns the windows and whether Ctrl-C stopped it."""
    bounds: list[tuple[float, float]] = []
    start = math.inf  # no window yet
    try:
        start = t0 = phase.start()
        while True:
            end = start + window_s
            _sleep_until(end)
            bounds.append((start, end))
            start = end
            if rule is None and len(bounds) >= DEFAULT_WINDOWS:
                break
            if rule is not None:
                thr, p50 = _windows(phase.all_records(), bounds, phase.batch)
                if rule.settled(thr, p50) or end - t0 >= max_s - 1e-6:
                    break
    except KeyboardInterrupt:
        now = time.perf_counter()
        if now - start > 0.05:
            bounds.append((start, now))  # the part of a window that was measured
        return bounds, True
    finally:
        phase.stop()
    return bounds, False


def sweep_server(
    url: str,
    model: str,
    *,
    protocol: str = "grpc",
    concurrency: Sequence[int] = (1, 2, 4, 8),
    batch: int = 1,
    duration_s: float = 5.0,
    warmup_s: float = 1.0,
    stability: Stability | None = None,
    timeout_s: float = 30.0,
    seed: int = 0,
    progress: Progress | StepProgress | None = None,
) -> ServerSweep:
    """Throughput, latency percentiles and Triton's statistics of ``model`` on the server at
    ``url`` (``HOST:PORT``) at each concurrency. ``duration_s`` is the measured time per level (split into
    three windows), or with ``stability`` the length of one window (perf_analyzer's measurement
    interval) and the level runs until the rule holds or ``stability.max_duration_s`` (default 10
    windows) is spent. Failed requests are counted in the rows; Ctrl-C returns what was measured."""
    levels = check_concurrency(list(concurrency))
    _check_budget(duration_s, warmup_s, timeout_s, batch)
    if stability is not None:
        stability.check()
    served = describe_model(url, model, protocol=protocol, timeout_s=timeout_s)
    if served.max_batch_size == 0 and batch != 1:
        raise ConfigError(f"--batch {batch}: model {model!r} takes no batch axis (max_batch_size 0): use --batch 1")
    if batch > served.max_batch_size > 0:
        raise ConfigError(f"--batch {batch}: over the max_batch_size {served.max_batch_size} of model {model!r}")
    window_s = duration_s if stability is not None else duration_s / DEFAULT_WINDOWS
    max_s = (stability.max_duration_s or 10 * duration_s) if stability is not None else duration_s
    report = ServerSweep(
        environment=_environment(served),
        settings={
            "concurrency": levels,
            "batch": batch,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "window_s": window_s,
            "stability": None
            if stability is None
            else {"pct": stability.pct, "windows": stability.windows, "max_duration_s": max_s},
            "timeout_s": timeout_s,
            "inputs": f"random {served.datatype}, seed {seed}",
        },
    )
    say = Reporter(progress).step
    rng = np.random.default_rng(seed)
    stats_client = served.client()  # the statistics are read in this thread, between phases
    inputs = [served.random_batch(batch, rng)]
    try:
        for i, c in enumerate(levels):
            say(f"concurrency {c}: warming up", i, len(levels))
            baseline = _read_statistics(served, stats_client)
            warm = None
            if warmup_s > 0:
                warm = LoadPhase(served, c, inputs)
                try:
                    warm.start()
                    _sleep_until(time.perf_counter() + warmup_s)
                except KeyboardInterrupt:
                    report.interrupted = True
                    break
                finally:
                    warm.stop()
            before = _baseline(served, stats_client, baseline, warm if warmup_s > 0 else None)
            say(f"concurrency {c}: measuring", i, len(levels))
            phase = LoadPhase(served, c, inputs)
            bounds: list[tuple[float, float]] = []
            stats = None
            try:
                bounds, report.interrupted = _measure(phase, window_s, stability, max_s)
                if before is not None:
                    with contextlib.suppress(Exception):  # a server gone away: the row without its stats
                        stats = _statistics_after(served, stats_client, before, phase)
            except KeyboardInterrupt:
                report.interrupted = True
            finally:  # what was measured is kept, whatever stopped it
                row = _row(c, batch, phase, bounds, stability, stats)
                if row is not None:
                    report.rows.append(row)
            if report.interrupted:
                break
        say("done", len(levels), len(levels))
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        with contextlib.suppress(Exception):
            stats_client.close()
    return report


def _environment(served: ServedModel) -> dict[str, Any]:
    return {
        "client_host": socket.gethostname(),
        "client_cpu": cpu_model(),
        "client_cores": cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "toolkit": __version__,
        "tritonclient": dist_version("tritonclient"),
        "server_url": served.url,
        "protocol": served.protocol,
        "server": served.server,
        "model": served.config,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# ----------------------------------------------------------------------------------- the outputs


def write_sweep_csv(report: ServerSweep, path: str | os.PathLike[str]) -> Path:
    """One line per concurrency; Triton's statistics as ``server_*`` columns."""
    import csv
    import io
    import json

    rows = []
    for r in report.rows:
        row = {k: v for k, v in r.flat().items() if k not in ("server", "window_throughput_ips")}
        for k, v in (r.server or {}).items():
            row[f"server_{k}"] = json.dumps({str(b): n for b, n in v.items()}) if isinstance(v, dict) else v
        rows.append(row)
    fields = list(dict.fromkeys(k for row in rows for k in row)) or ["concurrency", "batch", "throughput_ips"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def write_sweep_plot(report: ServerSweep, path: str | os.PathLike[str]) -> Path:
    """Throughput, and latency p50 with p99 whiskers, against concurrency."""
    from .bench_plot import require_matplotlib
    from .reports import save_png

    plt = require_matplotlib()
    rows = sorted(report.rows, key=lambda r: r.concurrency)
    c = [r.concurrency for r in rows]
    fig, (ax_thr, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax_thr.plot(c, [r.throughput_ips for r in rows], marker="o")
    p50 = np.array([r.latency_p50_ms if r.latency_p50_ms is not None else np.nan for r in rows])
    p99 = np.array([r.latency_p99_ms if r.latency_p99_ms is not None else np.nan for r in rows])
    ax_lat.errorbar(c, p50, yerr=[np.zeros_like(p50), p99 - p50], marker="o", capsize=3, label="p50 (whisker: p99)")
    ax_lat.legend(fontsize=8)
    for ax, title, unit in ((ax_thr, "throughput", "images/s"), (ax_lat, "latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(c, [str(v) for v in c])
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    env = report.environment
    model = env.get("model", {}).get("name", "?")
    fig.suptitle(
        f"{model} on Triton at {env.get('server_url')} ({env.get('protocol')}), batch {report.settings.get('batch')}",
        fontsize=10,
    )
    fig.tight_layout()
    return save_png(fig, path)
