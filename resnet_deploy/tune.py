"""``ship --tune``: a small Model Analyzer. Serve candidate Triton configurations of an artifact on
loopback, sweep each with the live-server load generator, and ship the best one that meets a p99
latency budget, with the measurements in its ``config.pbtxt`` header and a ``tune.json`` beside it.

The candidates are the product of instance counts, preferred batch sizes and dynamic-batcher queue
delays, bounded in number (``max_candidates``, refused above it) and in time (``max_time_s``: no
candidate is started that would end past it; what was measured is kept and the report says so).
Each one is a real Triton (``serve.TritonServer``) on free loopback ports with the cores divided
among its instances, swept over the concurrency levels, then stopped.

A candidate *meets* the budget at a concurrency level when that level's p99 is within the budget
and no request failed; its *value* is its highest throughput among the levels that meet. The best
candidate has the highest value (ties: fewer instances, then no or smaller preferred batch, then
the shorter queue delay). Nothing is written unless one meets the budget: otherwise a
``TuneError`` names the closest candidates (lowest p99 at the lowest concurrency) and carries the
report. Every ``ship`` check runs (as a dry run) before the first server starts, so a repository
that would refuse the result refuses it before minutes of measuring.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import platform
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import ConfigError, Interrupted, ServeError, TuneError
from .loadgen import MAX_CONCURRENCY
from .reports import Progress, Reporter, StepProgress, atomic_write_text, dumps
from .triton import check_instances, check_queue_delay

__all__ = ["REPORT_NAME", "CandidateResult", "TuneReport", "tune_config"]

REPORT_NAME = "tune.json"  # beside config.pbtxt, in the model's folder
DEFAULT_INSTANCES = (1, 2)
DEFAULT_PREFERRED: tuple[int | None, ...] = (None,)  # None: no preferred_batch_size
DEFAULT_QUEUE_DELAYS_US = (0, 500, 2000)
DEFAULT_CONCURRENCY = (1, 2, 4, 8)
DEFAULT_DURATION_S = 3.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_MAX_CANDIDATES = 12
DEFAULT_MAX_TIME_S = 900.0
MAX_BUDGET_MS = 600_000.0  # ten minutes: a p99 budget beyond that is a typo
MAX_CANDIDATES = 1000
MAX_SECONDS = 24 * 3600.0
_CLOSEST = 3  # candidates named when none meets the budget


@dataclass
class CandidateResult:
    """One served configuration and what its sweep measured (``levels``: one row per concurrency)."""

    instances: int
    preferred_batch: int | None
    max_queue_delay_us: int
    threads: int  # CPU threads per instance
    status: str = "pending"  # measured | failed | skipped (time limit)
    error: str | None = None
    startup_s: float | None = None
    seconds: float | None = None
    levels: list[dict[str, Any]] = field(default_factory=list)
    meets_at: list[int] = field(default_factory=list)  # concurrency levels within the budget, no failures
    best_concurrency: int | None = None
    throughput_ips: float | None = None  # the value: best throughput among the levels that meet
    p99_ms: float | None = None  # at best_concurrency
    lowest_p99_ms: float | None = None  # p99 at the lowest concurrency measured (closeness when none meets)

    @property
    def label(self) -> str:
        pref = "-" if self.preferred_batch is None else str(self.preferred_batch)
        return f"{self.instances} instance(s), preferred batch {pref}, delay {self.max_queue_delay_us} us"

    @property
    def key(self) -> str:
        """Compact: instances/preferred/delay."""
        pref = "-" if self.preferred_batch is None else str(self.preferred_batch)
        return f"{self.instances}/{pref}/{self.max_queue_delay_us}"


@dataclass
class TuneReport:
    artifact: str
    model: str
    repository: str
    latency_budget_ms: float
    settings: dict[str, Any]
    environment: dict[str, Any]
    candidates: list[CandidateResult]
    chosen: int | None = None  # index into candidates
    timed_out: bool = False  # candidates skipped at max_time_s
    elapsed_s: float = 0.0
    date: str = ""
    config_path: str | None = None  # written only when a candidate met the budget
    report_path: str | None = None
    ship: dict[str, Any] | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def best(self) -> CandidateResult | None:
        return None if self.chosen is None else self.candidates[self.chosen]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "candidates"}
        d["candidates"] = [{"key": c.key, **asdict(c)} for c in self.candidates]
        return d


# --------------------------------------------------------------------------- arguments


def check_budget(latency_budget_ms: float) -> float:
    """A finite p99 budget in (0, MAX_BUDGET_MS] milliseconds."""
    if isinstance(latency_budget_ms, bool) or not (
        isinstance(latency_budget_ms, (int, float))
        and math.isfinite(latency_budget_ms)
        and 0 < latency_budget_ms <= MAX_BUDGET_MS
    ):
        raise ConfigError(
            f"--latency-budget {latency_budget_ms}: must be a p99 latency in milliseconds in (0, {MAX_BUDGET_MS:g}]"
        )
    return float(latency_budget_ms)


def _check_seconds(value: float, option: str, *, zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    low_ok = ok and (value >= 0 if zero else value > 0)
    if not ok or not low_ok or value > MAX_SECONDS:
        low = "[0" if zero else "(0"
        raise ConfigError(f"{option} {value}: must be a number of seconds in {low}, {MAX_SECONDS:g}]")
    return float(value)


def _distinct(values: Sequence[Any], option: str) -> list[Any]:
    if not values:
        raise ConfigError(f"{option}: give at least one value")
    return list(dict.fromkeys(values))


def _check_grid(
    instances: Sequence[int],
    preferred_batch: Sequence[int | None],
    max_queue_delay_us: Sequence[int],
    concurrency: Sequence[int],
    max_candidates: int,
) -> tuple[list[int], list[int | None], list[int], list[int]]:
    inst = _distinct(instances, "--tune-instances")
    for n in inst:
        check_instances(n)
    pref = _distinct(preferred_batch, "--tune-preferred-batch")
    if any(p is not None and (isinstance(p, bool) or p <= 0) for p in pref):
        raise ConfigError(f"--tune-preferred-batch {pref}: sizes must be positive integers (or none)")
    delays = _distinct(max_queue_delay_us, "--tune-queue-delay-us")
    for d in delays:
        check_queue_delay(d)
    levels = sorted(_distinct(concurrency, "--tune-concurrency"))
    if levels[0] < 1 or levels[-1] > MAX_CONCURRENCY:
        raise ConfigError(f"--tune-concurrency {levels}: levels must be in 1-{MAX_CONCURRENCY}")
    if isinstance(max_candidates, bool) or not 0 < max_candidates <= MAX_CANDIDATES:
        raise ConfigError(f"--tune-max-candidates {max_candidates}: must be in 1-{MAX_CANDIDATES}")
    count = len(inst) * len(pref) * len(delays)
    if count > max_candidates:
        raise ConfigError(
            f"{count} candidates ({len(inst)} instance counts x {len(pref)} preferred batches x {len(delays)} "
            f"queue delays) exceed --tune-max-candidates {max_candidates}: narrow the lists or raise the bound"
        )
    return inst, pref, delays, levels


# --------------------------------------------------------------------------- measuring


def _free_ports(n: int = 3) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held together while chosen, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@dataclass(frozen=True)
class _CandidateProgress:
    """The sweep's progress inside candidate ``done`` of ``total``: one bar, the level as its text."""

    outer: Reporter
    prefix: str
    done: int
    total: int

    def __call__(self, stage: str) -> None:
        self.outer.step(f"{self.prefix}: {stage}", self.done, self.total)

    def step(self, stage: str, _done: int, _total: int) -> None:
        self(stage)


def _row(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        return dict(row)
    if hasattr(row, "to_dict"):
        return dict(row.to_dict())
    if is_dataclass(row) and not isinstance(row, type):
        return asdict(row)
    return dict(vars(row))


def _score(c: CandidateResult, budget_ms: float) -> None:
    """Which levels meet the budget, and the candidate's value (its best throughput among them)."""
    if c.levels:
        c.lowest_p99_ms = c.levels[0].get("latency_p99_ms")
    meeting = [
        r
        for r in c.levels
        if r.get("requests", 0) > 0
        and not r.get("failures", 0)
        and r.get("latency_p99_ms") is not None
        and r["latency_p99_ms"] <= budget_ms
    ]
    c.meets_at = [int(r["concurrency"]) for r in meeting]
    if meeting:
        top = max(meeting, key=lambda r: (r["throughput_ips"], -r["concurrency"]))
        c.best_concurrency = int(top["concurrency"])
        c.throughput_ips = float(top["throughput_ips"])
        c.p99_ms = float(top["latency_p99_ms"])


def _measure(
    c: CandidateResult,
    artifact: Path,
    name: str | None,
    max_batch: int | None,
    sweep: Callable[..., Any],
    sweep_args: dict[str, Any],
    environment: dict[str, Any],
) -> None:
    """Serve candidate ``c``, sweep it, stop it; a server that does not start or a sweep that
    breaks is this candidate's failure (recorded), a bad option (ConfigError) everyone's."""
    from .serve import ServeOptions, TritonServer

    http, grpc, metrics = _free_ports(3)
    server = TritonServer(
        ServeOptions(
            str(artifact),
            name=name,
            http_port=http,
            grpc_port=grpc,
            metrics_port=metrics,
            max_batch=max_batch,
            max_queue_delay_us=c.max_queue_delay_us,
            preferred_batch=[] if c.preferred_batch is None else [c.preferred_batch],
            instances=c.instances,
            threads=c.threads,
            max_restarts=0,
        )
    )
    t0 = time.perf_counter()
    try:
        info = server.start()
        c.startup_s = info.startup_seconds
        environment.setdefault("runner", info.runner)
        environment.setdefault("pytriton", info.pytriton_version)
        url = info.grpc if sweep_args.get("protocol", "grpc") == "grpc" else info.http
        result = sweep(url, info.model, **sweep_args)
        if getattr(result, "interrupted", False):
            raise Interrupted("tuning interrupted: nothing written")
        environment.setdefault("client", getattr(result, "environment", None))
        c.levels = [_row(r) for r in result.rows]
        c.status = "measured"
    except Interrupted:
        raise
    except ServeError as e:
        c.status, c.error = "failed", str(e)
    except Exception as e:  # the server died under the sweep (tritonclient's errors, a ConfigError
        # from a server that stopped answering): this candidate failed, the others are still tried
        c.status, c.error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        server.stop()
        c.seconds = round(time.perf_counter() - t0, 2)


def _chosen(candidates: list[CandidateResult]) -> int | None:
    ranked = [
        (
            -(c.throughput_ips or 0.0),
            c.instances,
            -1 if c.preferred_batch is None else c.preferred_batch,
            c.max_queue_delay_us,
            i,
        )
        for i, c in enumerate(candidates)
        if c.throughput_ips is not None
    ]
    return min(ranked)[-1] if ranked else None


def _no_candidate_message(report: TuneReport) -> str:
    budget = report.latency_budget_ms
    measured = sorted(
        (c for c in report.candidates if c.lowest_p99_ms is not None), key=lambda c: c.lowest_p99_ms or math.inf
    )
    limit = "; stopped at --tune-max-time-s" if report.timed_out else ""
    if not measured:
        errors = [c.error for c in report.candidates if c.error]
        why = f": {errors[0]}" if errors else ""
        return f"no candidate could be measured{why}{limit}; nothing written"
    closest = "; ".join(
        f"{c.label}: p99 {c.lowest_p99_ms:.3g} ms at concurrency {c.levels[0]['concurrency']}"
        + (f" ({c.levels[0]['failures']} failed)" if c.levels[0].get("failures") else "")
        for c in measured[:_CLOSEST]
    )
    return f"no candidate meets the p99 budget of {budget:g} ms without failures; closest: {closest}{limit}; nothing written"


# --------------------------------------------------------------------------- the config header


def _fmt_ips(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.3g}"


def _mismatch(report: TuneReport) -> list[str]:
    """A config shipped for GPU instances but measured with a CPU runner describes this host, not
    the GPU it will run on: say so."""
    providers = (report.environment.get("runner") or {}).get("providers") or []
    if report.settings["kind"] == "gpu" and providers and all(p == "CPUExecutionProvider" for p in providers):
        return [
            "measured with ONNX Runtime on this host's CPU, shipped for KIND_GPU instances: tune on the GPU "
            "host, or ship with --kind cpu"
        ]
    return []


def _evidence(report: TuneReport) -> list[str]:
    """The header lines of the shipped config.pbtxt: the budget, the choice, every candidate."""
    best = report.best
    assert best is not None
    env, s = report.environment, report.settings
    runner = env.get("runner") or {}
    providers = ", ".join(runner.get("providers") or []) or runner.get("device") or ""
    lines = [
        f"tuned by 'ship --tune' {report.date}: host {env['cpu']} ({env['cores']} cores), "
        f"runner {runner.get('runner', '?')}{f' ({providers})' if providers else ''}, "
        f"{s['protocol']} batch-{s['batch']} requests, {s['duration_s']:g} s per level",
        f"p99 budget {report.latency_budget_ms:g} ms -> {best.label}: {_fmt_ips(best.throughput_ips or 0)} images/s "
        f"at concurrency {best.best_concurrency}, p99 {best.p99_ms:.3g} ms",
        "candidates instances/preferred/delay_us: p99 ms and images/s per concurrency ('!' over budget or failed):",
    ]
    budget = report.latency_budget_ms
    for i, c in enumerate(report.candidates):
        if c.status != "measured":
            lines.append(f"  {c.key}: {c.status}" + (f" ({c.error[:80]})" if c.error else ""))
            continue
        cells = []
        for r in c.levels:
            p99 = r.get("latency_p99_ms")
            bad = r.get("failures", 0) or p99 is None or p99 > budget
            cells.append(
                f"c{r['concurrency']} {p99 if p99 is None else f'{p99:.3g}'}{'!' if bad else ''}/{_fmt_ips(r['throughput_ips'])}"
            )
        lines.append(f"  {c.key}: " + " ".join(cells) + ("  <- chosen" if i == report.chosen else ""))
    lines.append(f"every level of every candidate: {REPORT_NAME} beside this file")
    return lines


# --------------------------------------------------------------------------- the search


def _dry_runs(
    artifact: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    grid: tuple[list[int], list[int | None], list[int]],
    ship_options: dict[str, Any],
) -> str:
    """Every check ``ship`` makes (evidence, repository, preferred sizes vs max_batch_size), for
    each preferred size, before any server starts. Returns the model's name in the repository."""
    from .ship import ship

    inst, pref, delays = grid
    model = ""
    for p in pref:
        try:
            dry = ship(
                artifact,
                repo,
                instances=max(inst),
                preferred_batch=None if p is None else [p],
                max_queue_delay_us=max(delays),
                dry_run=True,
                **ship_options,
            )
        except ConfigError as e:  # name the option this command took
            raise ConfigError(str(e).replace("--preferred-batch", "--tune-preferred-batch")) from None
        if dry.max_batch_size == 0:
            raise ConfigError(
                f"{Path(artifact).name} has a fixed batch: tuning needs a dynamic batch axis "
                "(re-export with --batch dynamic)"
            )
        model = dry.name
    return model


def _search(report: TuneReport, sweep_args: dict[str, Any], progress: Progress | StepProgress | None) -> None:
    """Measure the candidates in order; skip the rest once the next would end past max_time_s
    (judged by the mean time of those measured so far)."""
    from .loadgen import sweep_server

    candidates, settings = report.candidates, report.settings
    max_time_s = settings["max_time_s"]
    rep = Reporter(progress)
    t0 = time.monotonic()
    spent: list[float] = []
    for k, c in enumerate(candidates):
        if spent and time.monotonic() - t0 + sum(spent) / len(spent) > max_time_s:
            report.timed_out = True
            for rest in candidates[k:]:
                rest.status, rest.error = "skipped", f"--tune-max-time-s {max_time_s:g} reached"
            break
        prefix = f"candidate {k + 1}/{len(candidates)} ({c.key})"
        rep.step(f"{prefix}: starting Triton", k, len(candidates))
        started = time.monotonic()
        args = {**sweep_args, "progress": _CandidateProgress(rep, prefix, k, len(candidates))}
        _measure(
            c, Path(report.artifact), settings["name"], settings["max_batch"], sweep_server, args, report.environment
        )
        spent.append(time.monotonic() - started)
        _score(c, report.latency_budget_ms)
    rep.step("tuned", len(candidates), len(candidates))
    report.elapsed_s = round(time.monotonic() - t0, 1)


def tune_config(
    artifact: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    *,
    latency_budget_ms: float,
    instances: Sequence[int] = DEFAULT_INSTANCES,
    preferred_batch: Sequence[int | None] = DEFAULT_PREFERRED,
    max_queue_delay_us: Sequence[int] = DEFAULT_QUEUE_DELAYS_US,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    duration_s: float = DEFAULT_DURATION_S,
    warmup_s: float = DEFAULT_WARMUP_S,
    protocol: str = "grpc",
    batch: int = 1,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    max_time_s: float = DEFAULT_MAX_TIME_S,
    progress: Progress | StepProgress | None = None,
    name: str | None = None,
    version: int = 1,
    max_batch: int | None = None,
    kind: str = "gpu",
    accelerator: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    force: bool = False,
    replace: bool = False,
) -> TuneReport:
    """Serve each candidate configuration of ``artifact`` on loopback, sweep it, and ship the best
    one that meets ``latency_budget_ms`` (p99, no failed request) into ``repo`` with the evidence
    in its header and ``tune.json`` beside its config. ``preferred_batch``: one preferred size per
    candidate (None: none). The ``ship`` options (``name`` ... ``replace``) are ship's. Raises
    ``TuneError`` (with the report, nothing written) when no candidate meets the budget."""
    from .ship import ship
    from .system import cpu_count, cpu_model

    budget = check_budget(latency_budget_ms)
    inst, pref, delays, levels = _check_grid(
        instances, preferred_batch, max_queue_delay_us, concurrency, max_candidates
    )
    duration_s = _check_seconds(duration_s, "--tune-duration-s")
    warmup_s = _check_seconds(warmup_s, "--warmup-s", zero=True)
    max_time_s = _check_seconds(max_time_s, "--tune-max-time-s")
    if protocol not in ("grpc", "http"):
        raise ConfigError(f"protocol {protocol!r}: choose grpc or http")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch {batch}: images per request must be a positive integer")
    ship_options: dict[str, Any] = dict(name=name, version=version, max_batch=max_batch, kind=kind)
    ship_options.update(accelerator=accelerator, labels=labels, force=force, replace=replace)
    model = _dry_runs(artifact, repo, (inst, pref, delays), ship_options)
    cores = cpu_count()
    report = TuneReport(
        artifact=str(Path(artifact).resolve()),
        model=model,
        repository=str(Path(repo).expanduser().resolve()),
        latency_budget_ms=budget,
        settings=dict(
            instances=inst,
            preferred_batch=pref,
            max_queue_delay_us=delays,
            concurrency=levels,
            protocol=protocol,
            batch=batch,
            duration_s=duration_s,
            warmup_s=warmup_s,
            max_candidates=max_candidates,
            max_time_s=max_time_s,
            name=name,
            max_batch=max_batch,
            kind=kind,
        ),
        environment=dict(
            cpu=cpu_model(),
            cores=cores,
            machine=platform.machine(),
            python=platform.python_version(),
            resnet_deploy=__version__,
        ),
        candidates=[CandidateResult(i, p, d, max(1, cores // i)) for i, p, d in itertools.product(inst, pref, delays)],
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    sweep_args = dict(protocol=protocol, concurrency=tuple(levels), batch=batch, duration_s=duration_s)
    _search(report, {**sweep_args, "warmup_s": warmup_s}, progress)
    report.chosen = _chosen(report.candidates)
    best = report.best
    if best is None:
        report.message = _no_candidate_message(report)
        raise TuneError(report.message, report)
    shipped = ship(
        artifact,
        repo,
        instances=best.instances,
        preferred_batch=None if best.preferred_batch is None else [best.preferred_batch],
        max_queue_delay_us=best.max_queue_delay_us,
        evidence=_evidence(report),
        **ship_options,
    )
    report.ship = shipped.to_dict()
    report.warnings = _mismatch(report)
    report.config_path = str(Path(shipped.model_dir) / "config.pbtxt")
    report.report_path = str(Path(shipped.model_dir) / REPORT_NAME)
    report.message = (
        f"{best.label}: {_fmt_ips(best.throughput_ips or 0)} images/s at concurrency {best.best_concurrency}, "
        f"p99 {best.p99_ms:.3g} ms within {budget:g} ms"
    )
    atomic_write_text(report.report_path, dumps(report))
    return report
