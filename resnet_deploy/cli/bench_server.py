"""``bench --server``: a perf_analyzer-style concurrency sweep against a live Triton server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError, ResnetDeployError
from ._common import Interrupted, _output_paths, _save_outputs, _stages, out


def bench_server_cmd(
    server: str,
    model: str | None,
    *,
    protocol: str = "grpc",
    concurrency: str | None = None,
    batch: int | None = None,
    duration_s: float | None = None,
    warmup_s: float = 2.0,
    stable: bool = False,
    stability_pct: float = 5.0,
    windows: int = 3,
    max_duration_s: float | None = None,
    json_path: Path | None = None,
    csv_path: Path | None = None,
    plot_path: Path | None = None,
) -> None:
    """Sweep ``model`` on the Triton at ``server`` over the concurrency levels; render and save."""
    from ..bench_plot import require_matplotlib
    from ..loadgen import parse_concurrency, parse_url, sweep_server
    from ..stability import Stability

    if model is None or not model.strip():
        raise ConfigError("--server needs --model NAME: the served model to measure")
    parse_url(server, protocol)
    levels = parse_concurrency(concurrency if concurrency is not None else "1,2,4,8")
    if not stable:
        given = [o for o, v, d in (("--stability-pct", stability_pct, 5.0), ("--windows", windows, 3)) if v != d]
        given += ["--max-duration-s"] if max_duration_s is not None else []
        if given:
            raise ConfigError(f"{', '.join(given)}: {'applies' if len(given) == 1 else 'apply'} only with --stable")
    rule = Stability(stability_pct, windows, max_duration_s).check() if stable else None
    for option, value in (("--csv", csv_path), ("--plot", plot_path)):
        if value is not None and str(value) == "-":
            raise ConfigError(f"{option} needs a file path ('-' is only for --json)")
    if plot_path is not None:
        require_matplotlib()  # fail before measuring, not after
    json_path, csv_path, plot_path = _output_paths(json_path, csv_path, plot_path, "sweep")
    with _stages() as progress:
        report = sweep_server(
            server,
            model,
            protocol=protocol,
            concurrency=levels,
            batch=1 if batch is None else batch,
            duration_s=5.0 if duration_s is None else duration_s,
            warmup_s=warmup_s,
            stability=rule,
            progress=progress,
        )
    _save(report, json_path, csv_path, plot_path)
    if str(json_path) != "-":
        _render(report)
    saved = any(p is not None and str(p) != "-" for p in (json_path, csv_path, plot_path))
    if report.interrupted:
        raise Interrupted("interrupted: the measurements so far are shown" + (" and saved" if saved else ""))
    failed = [r for r in report.rows if r.failures]
    if failed:
        total = sum(r.failures for r in report.rows)
        raise ResnetDeployError(
            f"{total} of {sum(r.requests for r in report.rows)} requests failed (first at concurrency "
            f"{failed[0].concurrency}: {failed[0].first_failure})" + ("; the report is saved" if saved else "")
        )


def _save(report: Any, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    from ..loadgen import write_sweep_csv, write_sweep_plot

    _save_outputs(report, json_path, csv_path, plot_path, write_sweep_csv, write_sweep_plot)


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1e3:.2f}"


def _render(report: Any) -> None:
    env, settings = report.environment, report.settings
    srv = env.get("server") or {}
    table = Table(
        title=f"{escape(str(env['model'].get('name')))} on {escape(str(srv.get('name') or 'Triton'))} "
        f"{escape(str(srv.get('version') or ''))} at {escape(str(env.get('server_url')))} ({env.get('protocol')}), "
        f"batch {settings.get('batch')}"
    )
    cols = ["concurrency", "images/s", "requests/s", "p50 ms", "p90 ms", "p99 ms", "requests", "failed", "stable"]
    cols += ["queue ms", "compute ms", "mean batch"]
    for col in cols:
        table.add_column(col, justify="right")
    for r in report.rows:
        s = r.server or {}
        parts = [s.get(k) for k in ("compute_input_us", "compute_infer_us", "compute_output_us")]
        compute = None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
        lat = [f"{v:.2f}" if v is not None else "-" for v in (r.latency_p50_ms, r.latency_p90_ms, r.latency_p99_ms)]
        stable = "-" if r.stable is None else ("yes" if r.stable else "no")
        spread = f" ({r.spread_pct:.0f}%)" if r.spread_pct is not None else ""
        table.add_row(
            str(r.concurrency),
            f"{r.throughput_ips:.1f}",
            f"{r.throughput_rps:.1f}",
            *lat,
            str(r.requests),
            str(r.failures),
            stable + spread,
            _ms(s.get("queue_us")),
            _ms(compute),
            "-" if s.get("mean_batch") is None else f"{s['mean_batch']:.2f}",
        )
    out.print(table)
    rule = settings.get("stability")
    how = (
        f"windows of {settings['window_s']:g} s until the last {rule['windows']} agree within {rule['pct']:g}% "
        f"(at most {rule['max_duration_s']:g} s)"
        if rule
        else f"{settings['duration_s']:g} s in {len(report.rows[0].window_throughput_ips) if report.rows else 3} windows"
    )
    out.print(
        f"[dim]{settings['warmup_s']:g} s warm-up, then {how} per level; {escape(str(settings.get('inputs')))}; "
        f"tritonclient {env.get('tritonclient')}; queue/compute: Triton's mean per request"
        f"{'; INTERRUPTED' if report.interrupted else ''}[/]"
    )
