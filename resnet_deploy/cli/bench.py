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
    _emit_json,
    _parse_batch_sizes,
    _stages,
    out,
)


def bench_cmd(
    artifacts: Annotated[
        list[str] | None,
        typer.Argument(help="ONNX files, engines or checkpoints to measure side by side.", show_default=False),
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            "-d",
            help="Also a PyTorch zoo model (random weights), or the architecture of .pth artifacts.",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        list[BackendChoice] | None,
        typer.Option(
            "--backend",
            help="Run each artifact with these backends (repeatable; default by file type). torch on an ONNX = the PyTorch model it was exported from.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        DeviceChoice, typer.Option(help="cpu or cuda (torch; ONNX Runtime's CUDA provider).")
    ] = DeviceChoice.cpu,
    precision: Annotated[
        TorchDtypeChoice, typer.Option(help="PyTorch dtype (ONNX/engines carry their own precision).")
    ] = TorchDtypeChoice.fp32,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")] = "1,8,32",
    warmup_s: Annotated[
        float, typer.Option("--warmup-s", help="Warm-up seconds per target and batch (excluded).")
    ] = 2.0,
    duration_s: Annotated[
        float | None,
        typer.Option("--duration-s", help="Measured seconds per target and batch (default 5).", show_default=False),
    ] = None,
    iters: Annotated[
        int | None,
        typer.Option(
            "--iters", help="Measured iterations per target and batch instead of a duration.", show_default=False
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds the budget is split into.")] = 5,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for every backend (recorded).", show_default=False)
    ] = None,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="torch on CUDA: replay captured CUDA graphs.")
    ] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="torch: channels_last memory format.")] = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch: torch.compile the model.")] = False,
    compute_only: Annotated[
        bool, typer.Option("--compute-only", help="GPU: time compute only, without host<->device copies.")
    ] = False,
    peak_gflops: Annotated[
        float | None,
        typer.Option("--peak-gflops", help="Report achieved GFLOP/s as a fraction of this peak.", show_default=False),
    ] = None,
    stable: Annotated[
        bool,
        typer.Option(
            "--stable", help="Measure each point in windows until the last --windows agree within --stability-pct."
        ),
    ] = False,
    stability_pct: Annotated[
        float, typer.Option("--stability-pct", help="--stable: how close the windows' medians must be (percent).")
    ] = 5.0,
    windows: Annotated[int, typer.Option("--windows", help="--stable: how many recent windows must agree.")] = 3,
    max_duration_s: Annotated[
        float | None,
        typer.Option(
            "--max-duration-s",
            help="--stable: give up on a point after this many measured seconds (default 10 windows).",
            show_default=False,
        ),
    ] = None,
    latency_budget: Annotated[
        float | None,
        typer.Option(
            "--latency-budget",
            help="Per target, search the batch size with the highest throughput whose p99 (ms) stays within this.",
            show_default=False,
        ),
    ] = None,
    hint: Annotated[
        PerformanceHintChoice | None,
        typer.Option(
            "--hint", help="OpenVINO's performance hint (latency or throughput; recorded).", show_default=False
        ),
    ] = None,
    streams: Annotated[
        int, typer.Option("--streams", help="TensorRT: run N CUDA streams, each with its own execution context.")
    ] = 1,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Sweep a live Triton server at HOST:PORT instead of local artifacts (perf_analyzer-style).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="--server: the served model's name.", show_default=False)
    ] = None,
    protocol: Annotated[ProtocolChoice, typer.Option(help="--server: the client protocol.")] = ProtocolChoice.grpc,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            help="--server: comma-separated numbers of requests kept in flight [default: 1,2,4,8].",
            show_default=False,
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", help="--server: images per request [default: 1].", show_default=False),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the report as JSON to this file ('-' for stdout).", show_default=False),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Write the rows as CSV to this file.", show_default=False)
    ] = None,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help='Write a PNG plot (needs matplotlib: pip install "resnet-deploy\\[plot]").',
            show_default=False,
        ),
    ] = None,
) -> None:
    """Latency and throughput per batch size, several artifacts/backends measured side by side (interleaved)."""
    if server is not None:
        from .bench_server import bench_server_cmd

        if artifacts or depth is not None or backend or latency_budget is not None or hint or streams != 1:
            raise ConfigError(
                "--server measures a live server: drop the artifacts, --depth, --backend, --latency-budget, "
                "--hint and --streams"
            )
        bench_server_cmd(
            server,
            model,
            protocol=protocol.value,
            concurrency=concurrency,
            batch=batch,
            duration_s=duration_s,
            warmup_s=warmup_s,
            stable=stable,
            stability_pct=stability_pct,
            windows=windows,
            max_duration_s=max_duration_s,
            json_path=json_path,
            csv_path=csv_path,
            plot_path=plot_path,
        )
        return
    for option, value in (("--model", model), ("--concurrency", concurrency), ("--batch", batch)):
        if value is not None:
            raise ConfigError(f"{option} applies to --server HOST:PORT sweeps")
    from ..bench import bench_targets, benchmark, require_matplotlib

    _check_bench_options(artifacts, backend, duration_s, iters, warmup_s, rounds, csv_path, plot_path)
    threads = _bench_threads(threads)
    sizes = _parse_batch_sizes(batch_sizes)
    if plot_path is not None:
        require_matplotlib()  # fail before measuring, not after
    json_path, csv_path, plot_path = _output_paths(json_path, csv_path, plot_path)
    outputs = [p for p in (json_path, csv_path, plot_path) if p is not None and str(p) != "-"]
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    torch_options = {"channels_last": channels_last, "compile": compile_model, "cuda_graphs": cuda_graphs}
    targets = bench_targets(
        list(artifacts or []),
        depth=depth,
        backends=list(backend or []),
        device=device.value,
        dtype=precision.value,
        threads=threads,
        **torch_options,
    )
    if not targets:
        raise ConfigError("nothing to benchmark: give artifacts (ONNX, engine, checkpoint) or --depth N")
    with _stages() as progress:
        report = benchmark(  # enters (loads) each runner, and closes it after
            targets,
            sizes,
            warmup_s=warmup_s,
            duration_s=None if iters is not None else (duration_s or 5.0),
            iters=iters,
            rounds=rounds,
            threads=threads,
            compute_only=compute_only,
            peak_gflops=peak_gflops,
            progress=progress,
        )
    _save_bench(report, json_path, csv_path, plot_path)
    if str(json_path) != "-":
        _render_bench(report)
    if report.interrupted:
        raise Interrupted("interrupted: the measurements so far are shown" + (" and saved" if outputs else ""))


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


def _output_paths(
    json_path: Path | None, csv_path: Path | None, plot_path: Path | None
) -> tuple[Path | None, Path | None, Path | None]:
    """The output files, checked before measuring; an existing folder gets the default name inside
    it (as export's -o does)."""
    from ..reports import check_output_path

    def checked(path: Path | None, name: str) -> Path | None:
        return path if path is None or str(path) == "-" else check_output_path(path, name)

    return checked(json_path, "bench.json"), checked(csv_path, "bench.csv"), checked(plot_path, "bench.png")


def _bench_threads(threads: int | None) -> int | None:
    """--threads, or every core: explicit and recorded, the same for every backend."""
    if threads is None:
        from ..system import cpu_count

        threads = cpu_count()
    from ..runtime.base import check_threads

    return check_threads(threads)


def _save_bench(report: Any, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    """The report as JSON (a file, or stdout for '-'), its rows as CSV, and the plot, as asked."""
    from ..bench import write_csv, write_plot
    from ..reports import atomic_write_text, dumps

    if json_path is not None:
        if str(json_path) == "-":
            _emit_json(report)
        else:
            atomic_write_text(json_path, dumps(report))
    if csv_path is not None:
        write_csv(report, csv_path)
    if plot_path is not None and report.rows:
        write_plot(report, plot_path)


def _render_bench(report: Any) -> None:
    env = report.environment
    where = env.get("gpu") or f"{env.get('cpu')}, {env.get('cpu_cores')} cores"
    table = Table(title=f"latency (ms) and throughput on {where}, threads {env.get('threads') or 'default'}")
    has_peak = any(r.peak_fraction is not None for r in report.rows)
    has_phases = any(r.phases_ms for r in report.rows)
    cols = ["target", "batch", "mean", "std", "p50", "p90", "p95", "p99", "min", "max", "images/s", "GFLOP/s"]
    cols += ["of peak"] if has_peak else []
    cols += ["h2d", "compute", "d2h"] if has_phases else []
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
        table.add_row(*cells)
    out.print(table)
    settings = report.settings
    versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "onnxruntime-gpu", "onnxruntime", "tensorrt") if k in env)
    out.print(
        f"[dim]{escape(versions)}; threads={env.get('threads')}; "
        f"{'compute only (CUDA events)' if settings.get('compute_only') else 'wall-clock per call'}; "
        f"{settings.get('rounds')} interleaved rounds{'; INTERRUPTED' if report.interrupted else ''}[/]"
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
