"""``bench``: latency and throughput of artifacts and backends, measured side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ._common import (
    BackendChoice,
    DeviceChoice,
    Interrupted,
    PerformanceHintChoice,
    ProtocolChoice,
    TorchDtypeChoice,
    _output_paths,
    _parse_batch_sizes,
    _save_outputs,
    _stages,
    out,
)

# The options, one alias each (typer reads them from the annotations), so the command stays short.
_Artifacts = Annotated[
    list[str] | None,
    typer.Argument(help="ONNX files, engines or checkpoints to measure side by side.", show_default=False),
]
_Depth = Annotated[
    int | None,
    typer.Option(
        "--depth",
        "-d",
        help="Also a PyTorch zoo model (random weights), or the architecture of .pth artifacts.",
        show_default=False,
    ),
]
_Backend = Annotated[
    list[BackendChoice] | None,
    typer.Option(
        "--backend",
        help="Run each artifact with these backends (repeatable; default by file type). torch on an ONNX = the PyTorch model it was exported from.",
        show_default=False,
    ),
]
_Device = Annotated[DeviceChoice, typer.Option(help="cpu or cuda (torch; ONNX Runtime's CUDA provider).")]
_Precision = Annotated[TorchDtypeChoice, typer.Option(help="PyTorch dtype (ONNX/engines carry their own precision).")]
_BatchSizes = Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")]
_WarmupS = Annotated[float, typer.Option("--warmup-s", help="Warm-up seconds per target and batch (excluded).")]
_DurationS = Annotated[
    float | None,
    typer.Option(
        "--duration-s",
        help="Measured seconds per target and batch, over --rounds (default 5; --stable: one window is "
        "duration/rounds). --server: per concurrency level, in 3 windows (--stable: per window).",
        show_default=False,
    ),
]
_Iters = Annotated[
    int | None,
    typer.Option("--iters", help="Measured iterations per target and batch instead of a duration.", show_default=False),
]
_Rounds = Annotated[int, typer.Option(help="Interleaved rounds the budget is split into.")]
_Threads = Annotated[int | None, typer.Option(help="CPU threads for every backend (recorded).", show_default=False)]
_CudaGraphs = Annotated[
    bool, typer.Option("--cuda-graphs", help="torch on CUDA and TensorRT: replay captured CUDA graphs.")
]
_ChannelsLast = Annotated[bool, typer.Option("--channels-last", help="torch: channels_last memory format.")]
_CompileModel = Annotated[bool, typer.Option("--compile", help="torch: torch.compile the model.")]
_ComputeOnly = Annotated[
    bool, typer.Option("--compute-only", help="GPU: time compute only, without host<->device copies.")
]
_PeakGflops = Annotated[
    float | None,
    typer.Option("--peak-gflops", help="Report achieved GFLOP/s as a fraction of this peak.", show_default=False),
]
_Stable = Annotated[
    bool,
    typer.Option(
        "--stable", help="Measure each point in windows until the last --windows agree within --stability-pct."
    ),
]
_StabilityPct = Annotated[
    float, typer.Option("--stability-pct", help="--stable: how close the windows' medians must be (percent).")
]
_Windows = Annotated[int, typer.Option("--windows", help="--stable: how many recent windows must agree.")]
_MaxDurationS = Annotated[
    float | None,
    typer.Option(
        "--max-duration-s",
        help="--stable: give up on a point after this many measured seconds (default: 10 windows).",
        show_default=False,
    ),
]
_LatencyBudget = Annotated[
    float | None,
    typer.Option(
        "--latency-budget",
        help="Per target, search the batch size with the highest throughput whose p99 (ms) stays within this.",
        show_default=False,
    ),
]
_Hint = Annotated[
    PerformanceHintChoice | None,
    typer.Option("--hint", help="OpenVINO's performance hint (latency or throughput; recorded).", show_default=False),
]
_Streams = Annotated[
    int, typer.Option("--streams", help="TensorRT: run N CUDA streams, each with its own execution context.")
]
_Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="Sweep a live Triton server at HOST:PORT instead of local artifacts (perf_analyzer-style).",
        show_default=False,
    ),
]
_Model = Annotated[str | None, typer.Option("--model", help="--server: the served model's name.", show_default=False)]
_Protocol = Annotated[ProtocolChoice, typer.Option(help="--server: the client protocol.")]
_Concurrency = Annotated[
    str | None,
    typer.Option(
        "--concurrency",
        help="--server: comma-separated numbers of requests kept in flight (default 1,2,4,8).",
        show_default=False,
    ),
]
_Batch = Annotated[
    int | None,
    typer.Option("--batch", help="--server: images per request (default 1).", show_default=False),
]
_JsonPath = Annotated[
    Path | None,
    typer.Option("--json", help="Write the report as JSON to this file ('-' for stdout).", show_default=False),
]
_CsvPath = Annotated[Path | None, typer.Option("--csv", help="Write the rows as CSV to this file.", show_default=False)]
_PlotPath = Annotated[
    Path | None,
    typer.Option(
        "--plot",
        help='Write a PNG plot (needs matplotlib: pip install "resnet-deploy\\[plot]").',
        show_default=False,
    ),
]


def bench_cmd(
    artifacts: _Artifacts = None,
    depth: _Depth = None,
    backend: _Backend = None,
    device: _Device = DeviceChoice.cpu,
    precision: _Precision = TorchDtypeChoice.fp32,
    batch_sizes: _BatchSizes = "1,8,32",
    warmup_s: _WarmupS = 2.0,
    duration_s: _DurationS = None,
    iters: _Iters = None,
    rounds: _Rounds = 5,
    threads: _Threads = None,
    cuda_graphs: _CudaGraphs = False,
    channels_last: _ChannelsLast = False,
    compile_model: _CompileModel = False,
    compute_only: _ComputeOnly = False,
    peak_gflops: _PeakGflops = None,
    stable: _Stable = False,
    stability_pct: _StabilityPct = 5.0,
    windows: _Windows = 3,
    max_duration_s: _MaxDurationS = None,
    latency_budget: _LatencyBudget = None,
    hint: _Hint = None,
    streams: _Streams = 1,
    server: _Server = None,
    model: _Model = None,
    protocol: _Protocol = ProtocolChoice.grpc,
    concurrency: _Concurrency = None,
    batch: _Batch = None,
    json_path: _JsonPath = None,
    csv_path: _CsvPath = None,
    plot_path: _PlotPath = None,
) -> None:
    """Latency and throughput per batch size, several artifacts/backends measured side by side (interleaved)."""
    if server is not None:
        _bench_server(locals())
        return
    for option, value in (("--model", model), ("--concurrency", concurrency), ("--batch", batch)):
        if value is not None:
            raise ConfigError(f"{option} applies to --server HOST:PORT sweeps")
    stability = _stability(stable, stability_pct, windows, max_duration_s)
    _check_bench_options(artifacts, backend, duration_s, iters, warmup_s, rounds, csv_path, plot_path)
    _check_budget_options(latency_budget, batch_sizes, compute_only, peak_gflops)
    threads = _bench_threads(threads)
    sizes = _parse_batch_sizes(batch_sizes)
    if plot_path is not None:
        from ..bench import require_matplotlib

        require_matplotlib()  # fail before measuring, not after
    json_path, csv_path, plot_path = _output_paths(json_path, csv_path, plot_path, "bench")
    outputs = [p for p in (json_path, csv_path, plot_path) if p is not None and str(p) != "-"]
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from ..bench import bench_targets

    targets = bench_targets(
        list(artifacts or []),
        depth=depth,
        backends=list(backend or []),
        device=device.value,
        dtype=precision.value,
        threads=threads,
        hint=hint.value if hint else None,
        streams=streams,
        channels_last=channels_last,
        compile=compile_model,
        cuda_graphs=cuda_graphs,
    )
    if not targets:
        raise ConfigError("nothing to benchmark: give artifacts (ONNX, engine, checkpoint) or --depth N")
    measure: dict[str, Any] = {
        "warmup_s": warmup_s,
        "duration_s": None if iters is not None else (duration_s or 5.0),
        "iters": iters,
    }
    with _stages() as progress:  # enters (loads) each runner, and closes it after
        if latency_budget is not None:
            from ..sizing import search_batch
            from ..stability import Stability

            report = search_batch(  # every point measured as --stable does (the default rule unless given)
                targets,
                latency_budget,
                **measure,
                rounds=rounds,
                threads=threads,
                stability=stability or Stability(),
                progress=progress,
            )
        else:
            from ..bench import benchmark

            report = benchmark(
                targets,
                sizes,
                **measure,
                rounds=rounds,
                threads=threads,
                compute_only=compute_only,
                peak_gflops=peak_gflops,
                stability=stability,
                progress=progress,
            )
    _save_bench(report, json_path, csv_path, plot_path)
    if str(json_path) != "-":
        _render_bench(report)
    if report.interrupted:
        raise Interrupted("interrupted: the measurements so far are shown" + (" and saved" if outputs else ""))
    _check_budget_met(report)


def _check_budget_options(
    latency_budget: float | None, batch_sizes: str, compute_only: bool, peak_gflops: float | None
) -> None:
    if latency_budget is not None:
        from ..sizing import check_latency_budget

        check_latency_budget(latency_budget)
        if batch_sizes != "1,8,32":
            raise ConfigError("--latency-budget searches the batch sizes itself: drop --batch-sizes")
        if compute_only or peak_gflops is not None:
            raise ConfigError(
                "--latency-budget judges the wall-clock p99 a caller sees: drop --compute-only and --peak-gflops"
            )


def _check_budget_met(report: Any) -> None:
    """A budget search that found no batch: exit 1 (after the report is saved and shown)."""
    search = report.budget
    if search is not None and not search.met():
        from ..errors import BudgetError

        raise BudgetError(
            f"no batch size meets the p99 budget of {search.latency_budget_ms:g} ms; closest: {search.closest()}"
        )


def _bench_server(o: dict[str, Any]) -> None:
    """``--server``: the live-server sweep (cli/bench_server.py), after refusing the local options."""
    from .bench_server import bench_server_cmd

    local = ("artifacts", "depth", "backend", "latency_budget", "hint")
    if any(o[k] for k in local) or o["streams"] != 1:
        raise ConfigError(
            "--server measures a live server: drop the artifacts, --depth, --backend, --latency-budget, "
            "--hint and --streams"
        )
    # The options of a local measurement would do nothing against a server: refused, not ignored.
    unused = {"--iters": o["iters"] is not None, "--threads": o["threads"] is not None}
    unused |= {"--rounds": o["rounds"] != 5, "--batch-sizes": o["batch_sizes"] != "1,8,32"}
    unused |= {"--device": o["device"].value != "cpu", "--precision": o["precision"].value != "fp32"}
    unused |= {"--peak-gflops": o["peak_gflops"] is not None, "--compute-only": o["compute_only"]}
    unused |= {"--cuda-graphs": o["cuda_graphs"], "--channels-last": o["channels_last"]}
    unused |= {"--compile": o["compile_model"]}
    given = [flag for flag, on in unused.items() if on]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: not for --server (use --batch for images per request, --duration-s or --stable)"
        )
    bench_server_cmd(
        o["server"],
        o["model"],
        protocol=o["protocol"].value,
        concurrency=o["concurrency"],
        batch=o["batch"],
        duration_s=o["duration_s"],
        warmup_s=o["warmup_s"],
        stable=o["stable"],
        stability_pct=o["stability_pct"],
        windows=o["windows"],
        max_duration_s=o["max_duration_s"],
        json_path=o["json_path"],
        csv_path=o["csv_path"],
        plot_path=o["plot_path"],
    )


def _stability(stable: bool, pct: float, windows: int, max_duration_s: float | None) -> Any:
    """The --stable rule, checked; its options without --stable are refused (they would do nothing)."""
    from ..stability import Stability

    if not stable:
        changed = [o for o, v, d in (("--stability-pct", pct, 5.0), ("--windows", windows, 3)) if v != d]
        if max_duration_s is not None:
            changed.append("--max-duration-s")
        if changed:
            raise ConfigError(f"{', '.join(changed)} configure --stable: add --stable")
        return None
    return Stability(pct, windows, max_duration_s).check()


def _check_bench_options(
    artifacts: list[str] | None,
    backend: list[BackendChoice] | None,
    duration_s: float | None,
    iters: int | None,
    warmup_s: float,
    rounds: int,
    csv_path: Path | None,
    plot_path: Path | None,
) -> None:
    """The option combinations bench refuses, checked before anything is loaded."""
    if duration_s is not None and iters is not None:
        raise ConfigError("give --duration-s or --iters, not both")
    from ..bench import check_budget

    check_budget(duration_s, iters, warmup_s, rounds)
    if backend and not artifacts:
        raise ConfigError("--backend applies to artifacts; --depth alone always runs PyTorch")
    for option, value in (("--csv", csv_path), ("--plot", plot_path)):
        if value is not None and str(value) == "-":
            raise ConfigError(f"{option} needs a file path ('-' is only for --json)")


def _bench_threads(threads: int | None) -> int | None:
    """--threads, or every core: explicit and recorded, the same for every backend."""
    if threads is None:
        from ..system import cpu_count

        threads = cpu_count()
    from ..runtime.base import check_threads

    return check_threads(threads)


def _save_bench(report: Any, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    from ..bench import write_csv, write_plot

    _save_outputs(report, json_path, csv_path, plot_path, write_csv, write_plot)


def _schedule_text(settings: dict[str, Any]) -> str:
    rule = settings.get("stable")
    if not rule:
        return f"{settings.get('rounds')} interleaved rounds"
    limit = rule.get("max_duration_s")
    return f"interleaved windows until the last {rule['windows']} agree within {rule['pct']:g}% " + (
        f"(at most {limit:g} s per point)" if limit is not None else "(at most 10 windows per point)"
    )


def _render_budget(search: Any) -> None:
    table = Table(title=f"highest throughput with p99 <= {search.latency_budget_ms:g} ms")
    for col in ("target", "best batch", "p99 ms", "images/s", "batches tried (p99 ms)", "search stopped at"):
        table.add_column(col, justify="left" if col in ("target", "search stopped at") else "right")
    for t in search.targets:
        tried = ", ".join(f"{p.batch} ({p.p99_ms:.1f}{'' if p.meets else '!'})" for p in t.points)
        best = "[bold red]none[/]" if t.best_batch is None else str(t.best_batch)
        chosen = next((p for p in t.points if p.batch == t.best_batch), None)
        if chosen is not None and chosen.stable is False:
            best += " [bold red](unstable)[/]"
        p99 = f"{t.p99_ms:.2f}" if t.p99_ms is not None else "-"
        ips = f"{t.throughput_ips:.1f}" if t.throughput_ips is not None else "-"
        table.add_row(escape(t.target), best, p99, ips, tried, escape(t.bound))
    out.print(table)


def _render_bench(report: Any) -> None:
    env = report.environment
    where = env.get("gpu") or f"{env.get('cpu')}, {env.get('cpu_cores')} cores"
    table = Table(title=f"latency (ms) and throughput on {where}, threads {env.get('threads') or 'default'}")
    has_peak = any(r.peak_fraction is not None for r in report.rows)
    has_phases = any(r.phases_ms for r in report.rows)
    cols = ["target", "batch", "mean", "std", "p50", "p90", "p95", "p99", "min", "max", "images/s", "GFLOP/s"]
    cols += ["of peak"] if has_peak else []
    cols += ["h2d", "compute", "d2h"] if has_phases else []
    has_stable = any(r.stable is not None for r in report.rows)
    cols += ["windows", "spread", "stable"] if has_stable else []
    for col in cols:
        table.add_column(col, justify="left" if col == "target" else "right")
    for r in report.rows:
        s = r.latency_ms
        cells = [escape(r.target), str(r.batch)] + [
            f"{v:.2f}" for v in (s.mean, s.std, s.p50, s.p90, s.p95, s.p99, s.min, s.max)
        ]
        cells += [f"{r.throughput_ips:.1f}", f"{r.gflops:.1f}" if r.gflops is not None else "-"]
        if has_peak:
            cells.append(f"{r.peak_fraction:.1%}" if r.peak_fraction is not None else "-")
        if has_phases:
            cells += [f"{(r.phases_ms or {}).get(k, float('nan')):.2f}" for k in ("h2d", "compute", "d2h")]
        if has_stable:
            spread = f"{r.spread_pct:.1f}%" if r.spread_pct is not None else "-"
            cells += [str(r.windows), spread, "yes" if r.stable else "[bold red]NO[/]"]
        table.add_row(*cells)
    out.print(table)
    if has_stable and not all(r.stable for r in report.rows):
        out.print("[bold red]some points did not settle[/]: their windows still differed by more than --stability-pct")
    if report.budget is not None:
        _render_budget(report.budget)
    settings = report.settings
    versions = ", ".join(
        f"{k} {env[k]}" for k in ("torch", "onnxruntime-gpu", "onnxruntime", "openvino", "tensorrt") if k in env
    )
    out.print(
        f"[dim]{escape(versions)}; threads={env.get('threads')}; "
        f"{'compute only (CUDA events)' if settings.get('compute_only') else 'wall-clock per call'}; "
        f"{_schedule_text(settings)}{'; INTERRUPTED' if report.interrupted else ''}[/]"
    )
    ratios = report.ratios()
    if len({r.target for r in report.rows}) > 1:
        rt = Table(title=f"throughput relative to {escape(str(ratios[0]['vs']))} (same run, interleaved)")
        rt.add_column("target")
        batches = sorted({r["batch"] for r in ratios})
        for b in batches:
            rt.add_column(f"batch {b}", justify="right")
        for label in dict.fromkeys(r["target"] for r in ratios):
            cells = [
                next((f"{r['speedup']:.2f}x" for r in ratios if r["target"] == label and r["batch"] == b), "-")
                for b in batches
            ]
            rt.add_row(escape(label), *cells)
        out.print(rt)
