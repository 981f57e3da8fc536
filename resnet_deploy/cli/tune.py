"""``ship --tune --latency-budget MS``: the options, their parsing, and the rendering of the search."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ._common import _emit_json, _stages, err, out

TUNE_OPT = typer.Option(
    "--tune",
    help="Serve candidate configs on loopback, sweep each, and ship the fastest whose p99 meets --latency-budget.",
)
BUDGET_OPT = typer.Option(
    "--latency-budget", help="--tune: the p99 latency budget in milliseconds (required).", show_default=False
)
INSTANCES_OPT = typer.Option(
    "--tune-instances", help="--tune: instance counts to try (default 1,2).", show_default=False
)
PREFERRED_OPT = typer.Option(
    "--tune-preferred-batch",
    help="--tune: preferred batch sizes to try, one per candidate, 'none' for none (default none).",
    show_default=False,
)
DELAYS_OPT = typer.Option(
    "--tune-queue-delay-us", help="--tune: max queue delays to try (default 0,500,2000).", show_default=False
)
CONCURRENCY_OPT = typer.Option(
    "--tune-concurrency",
    help="--tune: requests in flight to sweep per candidate (default 1,2,4,8).",
    show_default=False,
)
DURATION_OPT = typer.Option(
    "--tune-duration-s", help="--tune: seconds measured per concurrency level (default 3).", show_default=False
)
MAX_CANDIDATES_OPT = typer.Option(
    "--tune-max-candidates", help="--tune: refuse a grid of more candidates (default 12).", show_default=False
)
MAX_TIME_OPT = typer.Option(
    "--tune-max-time-s",
    help="--tune: start no candidate that would end after this; keep what was measured (default 900).",
    show_default=False,
)

SHIP_OWN = ("instances", "preferred_batch", "max_queue_delay_us", "no_dynamic_batching")  # what --tune chooses
_TUNE_ONLY = (
    "latency_budget",
    "tune_instances",
    "tune_preferred_batch",
    "tune_queue_delay_us",
    "tune_concurrency",
    "tune_duration_s",
    "tune_max_candidates",
    "tune_max_time_s",
)


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_tune_options(tune: bool, options: dict[str, Any]) -> None:
    """``--tune``'s options without it, or ship's own settings with it, are one-line usage errors."""
    if not tune:
        given = [_option(k) for k in _TUNE_ONLY if options.get(k) is not None]
        if given:
            raise ConfigError(f"{given[0]} applies to --tune (add --tune, or drop it)")
        return
    explicit = [
        o
        for o, k in (
            ("--instances", "instances"),
            ("--preferred-batch", "preferred_batch"),
            ("--max-queue-delay-us", "max_queue_delay_us"),
        )
        if options.get(k) is not None
    ]
    if options.get("no_dynamic_batching"):
        explicit.append("--no-dynamic-batching")
    if explicit:
        raise ConfigError(
            f"--tune chooses the instances, preferred batch and queue delay itself: drop {explicit[0]} "
            "(the --tune-* options list what to try)"
        )
    if options.get("latency_budget") is None:
        raise ConfigError("--tune needs --latency-budget MS (the p99 latency to meet, in milliseconds)")


def _int_list(text: str, option: str, *, none: bool = False) -> list[Any]:
    values: list[Any] = []
    for part in (p.strip() for p in text.split(",")):
        if none and part.lower() == "none":
            values.append(None)
            continue
        try:
            values.append(int(part))
        except ValueError:
            example = "none,4,8" if none else "1,2,4"
            raise ConfigError(f"{option} {text!r}: give comma-separated integers, e.g. {example}") from None
    return values


def tune_ship(
    artifact: Path, repo: Path, options: dict[str, Any], ship_options: dict[str, Any], json_out: bool
) -> None:
    """Run the search, render it (or print its JSON), and fail with TuneError when nothing meets."""
    from ..errors import TuneError
    from ..tune import tune_config

    kwargs: dict[str, Any] = {}
    for key, option, none in (
        ("tune_instances", "instances", False),
        ("tune_preferred_batch", "preferred_batch", True),
        ("tune_queue_delay_us", "max_queue_delay_us", False),
        ("tune_concurrency", "concurrency", False),
    ):
        if options.get(key) is not None:
            kwargs[option] = _int_list(options[key], _option(key), none=none)
    for key, option in (
        ("tune_duration_s", "duration_s"),
        ("tune_max_candidates", "max_candidates"),
        ("tune_max_time_s", "max_time_s"),
    ):
        if options.get(key) is not None:
            kwargs[option] = options[key]
    budget = options["latency_budget"]
    failure: TuneError | None = None
    # PyTriton echoes tritonserver's output on stdout: keep stdout for the report alone.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        with _stages() as progress:
            report = tune_config(artifact, repo, latency_budget_ms=budget, progress=progress, **kwargs, **ship_options)
    except TuneError as e:
        failure, report = e, e.report
    finally:
        sys.stdout = real_stdout
    if json_out:
        _emit_json(report)
    else:
        _render(report)
    if failure is not None:
        raise failure


def _cell(p99: float | None, ips: float, meets: bool) -> str:
    if p99 is None or not math.isfinite(p99):
        return "-"
    style = "green" if meets else "red"
    return f"[{style}]{p99:.3g}[/] / {ips:.0f}"


def _render(report: Any) -> None:
    levels = report.settings["concurrency"]
    table = Table(
        title=f"p99 ms / images/s per concurrency (budget {report.latency_budget_ms:g} ms)", title_justify="left"
    )
    for col in ("instances", "preferred", "delay us", *[f"c{c}" for c in levels], "best"):
        table.add_column(col, justify="right")
    for i, c in enumerate(report.candidates):
        by_level = {r["concurrency"]: r for r in c.levels}
        cells = []
        for level in levels:
            r = by_level.get(level)
            cells.append(
                _cell(r.get("latency_p99_ms"), r.get("throughput_ips", 0.0), level in c.meets_at) if r else "-"
            )
        if c.status != "measured":
            best = escape(f"{c.status}: {c.error or ''}"[:60])
        elif c.throughput_ips is None:
            best = "[red]over budget[/]"
        else:
            best = f"{c.throughput_ips:.0f} @ c{c.best_concurrency}" + (
                " [bold green]chosen[/]" if i == report.chosen else ""
            )
        pref = "-" if c.preferred_batch is None else str(c.preferred_batch)
        table.add_row(str(c.instances), pref, str(c.max_queue_delay_us), *cells, best)
    out.print(table)
    if report.timed_out:
        err.print("[bold yellow]warning:[/] --tune-max-time-s reached: the candidates marked skipped were not measured")
    if report.config_path:
        ship = report.ship or {}
        for warning in [*ship.get("warnings", []), *report.warnings]:
            err.print("[bold yellow]warning:[/] " + escape(warning), highlight=False)
        for problem in ship.get("forced", []):
            err.print("[bold red]warning:[/] shipped with --force: " + escape(problem), highlight=False)
        out.print(f"[bold green]tuned[/] {escape(report.message)}", highlight=False)
        out.print(f"  {escape(report.config_path)}", highlight=False)
        out.print(f"  {escape(str(report.report_path))}", highlight=False)
