"""``check``, ``eval`` and ``info``: what an artifact computes, how accurate it is, and what it is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ..reports import printable
from ._common import PROVIDER_OPT, SEED_BOUNDS, BackendChoice, _emit_json, _parse_batch_sizes, _stages, err, out

MIN_SQNR_OPT = typer.Option(
    "--min-sqnr-db",
    help="Require this SQNR (dB) of the error against the logits' spread across samples "
    "(fp16 25, int8 5). Judged on batches of 8 or more.",
    show_default=False,
)
MIN_RETRIEVAL_OPT = typer.Option(
    "--min-retrieval",
    help="Require this fraction of samples whose nearest reference output is their own (fp32/fp16 1, int8 0.9).",
    show_default=False,
)
LAYERS_OPT = typer.Option(
    "--layers",
    help="Compare every layer (torchvision module names) and name the first divergent one: a diagnosis, "
    "no parity record is written. Inputs: --images, else the --batch-sizes random inputs as one set (8+ samples).",
)
BACKEND_OPT = typer.Option(
    "--backend",
    help="Run the artifact on this backend (auto: ONNX Runtime for an ONNX; openvino: OpenVINO's CPU plugin).",
)
PLOT_OPT = typer.Option(
    "--plot",
    help='With --layers: write a PNG of SQNR by depth (needs matplotlib: pip install "resnet-deploy\\[plot]").',
    show_default=False,
)


def check_cmd(
    artifact: Annotated[
        str, typer.Argument(help="The artifact to check: an ONNX file of any precision.", show_default=False)
    ],
    reference: Annotated[
        str,
        typer.Option(
            help="'torch' (the PyTorch model rebuilt from the artifact's metadata, weights hash checked) or another artifact."
        ),
    ] = "torch",
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Seeded random inputs at these batch sizes.")
    ] = "1,8",
    images: Annotated[
        Path | None,
        typer.Option(
            help="Also compare on real images from this folder (preprocessed like everywhere else).", show_default=False
        ),
    ] = None,
    max_images: Annotated[
        int, typer.Option("--max-images", min=1, help="At most this many images, spread over the folder.")
    ] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the random inputs.", **SEED_BOUNDS)] = 0,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            "-w",
            help="Weights for the torch reference when the metadata cannot name them (a file).",
            show_default=False,
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(help="Require max|diff| <= RTOL x max|reference logit| (fp32 default 1e-4).", show_default=False),
    ] = None,
    min_cosine: Annotated[
        float | None,
        typer.Option(
            "--min-cosine",
            help="Require this per-sample cosine similarity (fp16 0.999, int8 0.95).",
            show_default=False,
        ),
    ] = None,
    min_top1: Annotated[
        float | None,
        typer.Option(
            "--min-top1", help="Require this top-1 agreement (images: fp16 0.98, int8 0.9).", show_default=False
        ),
    ] = None,
    min_sqnr_db: Annotated[float | None, MIN_SQNR_OPT] = None,
    min_retrieval: Annotated[float | None, MIN_RETRIEVAL_OPT] = None,
    provider: Annotated[str, PROVIDER_OPT] = "cpu",
    backend: Annotated[BackendChoice, BACKEND_OPT] = BackendChoice.auto,
    layers: Annotated[bool, LAYERS_OPT] = False,
    plot: Annotated[Path | None, PLOT_OPT] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Prove an artifact computes what its PyTorch model (or another artifact) computes; exit 1 if not.
    With --layers, find where it stops doing so."""
    from ..check import check
    from ..errors import ParityError
    from ..metrics import Tolerance
    from ..runtime.onnxrt import providers_for

    providers = providers_for(provider)
    sizes = _parse_batch_sizes(batch_sizes)
    if plot is not None and not layers:
        raise ConfigError("--plot draws the per-layer comparison: add --layers")
    if layers and providers != providers_for("cpu"):
        raise ConfigError("--layers runs both models on ONNX Runtime's CPU provider: drop --provider")
    if layers and backend is not BackendChoice.auto:
        raise ConfigError("--layers runs both models on ONNX Runtime's CPU provider: drop --backend")
    tolerance = None
    given = (rtol, min_cosine, min_top1, min_sqnr_db, min_retrieval)
    if any(v is not None for v in given):  # the given criteria replace the precision's defaults
        tolerance = Tolerance(
            scale_rtol=rtol,
            min_cosine=min_cosine,
            min_top1_agreement=min_top1,
            min_sqnr_db=min_sqnr_db,
            min_retrieval=min_retrieval,
        )
    if layers:
        options = {"images": images, "max_images": max_images, "seed": seed, "weights": weights}
        _check_layers(artifact, reference, sizes, tolerance, options, plot, json_out)
        return
    failure: ParityError | None = None
    with _stages() as progress:
        progress("comparing")
        try:  # compares, writes the artifact's parity record, raises on a failure
            report = check(
                artifact,
                reference,
                batch_sizes=sizes,
                images=images,
                max_images=max_images,
                seed=seed,
                tolerance=tolerance,
                weights=weights,
                providers=providers,
                backend=backend,
            )
        except ParityError as e:
            failure, report = e, e.report
    for note in report.notes or []:
        err.print("[bold yellow]note:[/] " + escape(note), highlight=False)
    if json_out:
        _emit_json(report)
    else:
        _render_check(report, artifact, reference)
    if failure is not None:
        raise failure


def _render_check(report: Any, artifact: str, reference: str) -> None:
    """The verdict line and one table row per compared input set."""
    status = "[bold green]passed[/]" if report.passed else "[bold red]FAILED[/]"
    out.print(
        f"{status}  {escape(str(report.candidate.get('path', artifact)))} ({report.precision}) vs "
        f"{escape(str(report.reference.get('model') or report.reference.get('path') or reference))}"
    )
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in (
        "inputs",
        "max abs",
        "max rel",
        "mean abs",
        "max/|logit|",
        "cosine min",
        "top-1",
        "top-5",
        "tolerance",
        "",
    ):
        table.add_column(col, justify="left" if col in ("inputs", "tolerance") else "right")
    for row in report.rows:
        r = row.result
        table.add_row(
            escape(row.inputs),
            f"{r.max_abs_diff:.2e}",
            f"{r.max_rel_diff:.2e}",
            f"{r.mean_abs_diff:.2e}",
            f"{r.diff_to_scale:.2e}",
            f"{r.cosine_min:.6f}",
            f"{r.top1_agreement:.0%}",
            f"{r.top5_agreement:.0%}",
            escape(r.tolerance),
            "ok" if r.passed else "[red]FAIL[/]",
        )
    out.print(table)


def _check_layers(
    artifact: str,
    reference: str,
    sizes: list[int],
    tolerance: Any,
    options: dict[str, Any],
    plot: Path | None,
    json_out: bool,
) -> None:
    """check --layers: compare every layer, render (and plot) the report, then fail if a layer
    diverged or the logits fail. Nothing is written but the plot, and only once the comparison ran."""
    from ..errors import ParityError
    from ..layers import check_layers, write_layer_plot

    if plot is not None:
        from ..bench import require_matplotlib
        from ..reports import check_output_path

        require_matplotlib()  # fail before comparing, not after
        plot = check_output_path(plot, "layers.png")
    failure: ParityError | None = None
    with _stages() as progress:
        try:
            report = check_layers(
                artifact, reference, batch_sizes=sizes, tolerance=tolerance, progress=progress, **options
            )
        except ParityError as e:
            failure, report = e, e.report
    for note in report.notes:
        err.print("[bold yellow]note:[/] " + escape(note), highlight=False)
    if plot is not None:
        write_layer_plot(report, plot)
    if json_out:
        _emit_json(report)
    else:
        _render_layers(report)
    if failure is not None:
        raise failure


def _render_layers(report: Any) -> None:
    """The verdict, one row per layer (diverged rows in red, the first one bold), and the logits."""
    first = report.first_divergent
    status = "[bold green]passed[/]" if report.ok else "[bold red]FAILED[/]"
    ref = report.reference.get("path") or report.reference.get("model") or "torch"
    out.print(
        f"{status}  {_safe(report.candidate.get('path'))} ({report.precision}) vs {_safe(ref)} "
        f"({_safe(report.reference.get('runner'))}), layer by layer on {_safe(report.inputs)}; "
        f"a layer diverges under {report.threshold_db:g} dB",
        highlight=False,
    )
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("#", "module", "shape", "SQNR dB", "drop dB", "max|diff|", "cosine min", ""):
        table.add_column(col, justify="left" if col in ("module", "shape", "") else "right")
    for r in report.layers:
        sqnr = "-" if r.sqnr_db is None else ("inf/NaN" if not r.finite else f"{r.sqnr_db:.1f}")
        mark = "" if not r.diverged else ("FIRST DIVERGENT" if r is first else "diverged")
        style = ("bold red" if r is first else "red") if r.diverged else None
        table.add_row(
            str(r.index),
            _safe(r.module),
            "x".join(map(str, r.shape)),
            sqnr,
            "-" if r.drop_db is None else f"{r.drop_db:+.1f}",
            f"{r.max_abs_diff:.2e}",
            f"{r.cosine_min:.6f}",
            mark,
            style=style,
        )
    out.print(table)
    from ..metrics import describe_parity

    o = report.output
    logits = "[green]ok[/]" if o.passed else "[red]FAIL[/]"
    out.print(f"logits: {logits}  {escape(describe_parity(o))} ({escape(o.tolerance)})", highlight=False)
    if first is not None:
        out.print(f"[bold red]first divergent layer:[/] {_safe(first.module)}", highlight=False)
    elif report.largest_drop is not None:
        d = report.largest_drop
        out.print(f"no layer diverged; largest drop: {_safe(d.module)} ({d.drop_db:+.1f} dB)", highlight=False)


def eval_cmd(
    artifact: Annotated[
        str,
        typer.Argument(
            help="An ONNX file (any precision), a model id/depth (with --weights), or a .pth checkpoint (with --depth).",
            show_default=False,
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="ImageFolder dataset: DIR/<class>/<image>.", show_default=False)],
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per inference call.")] = 32,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate this many images, spread evenly over the dataset.", show_default=False)
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Class names, one per line, in index order (default: sorted folder names).",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", "-w", help="Weights for a model id/depth artifact.", show_default=False)
    ] = None,
    depth: Annotated[
        int | None,
        typer.Option("--depth", "-d", help="Architecture of a .pth checkpoint artifact.", show_default=False),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).", show_default=False)] = None,
    min_sqnr_db: Annotated[float | None, MIN_SQNR_OPT] = None,
    min_retrieval: Annotated[float | None, MIN_RETRIEVAL_OPT] = None,
    provider: Annotated[str, PROVIDER_OPT] = "cpu",
    backend: Annotated[BackendChoice, BACKEND_OPT] = BackendChoice.auto,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Top-1 / top-5 accuracy of an artifact on an image folder."""
    from ..evaluation import evaluate
    from ..runtime.onnxrt import providers_for

    with _stages() as progress:  # drawn from the first batch: bad input fails before any bar
        report = evaluate(
            artifact,
            data,
            batch_size=batch_size,
            limit=limit,
            labels_file=labels,
            weights=weights,
            depth=depth,
            threads=threads,
            providers=providers_for(provider),
            progress=progress,
            backend=backend,
        )
    if report.skipped:
        err.print(
            f"[bold yellow]warning:[/] skipped {len(report.skipped)} unreadable image(s), e.g. "
            + escape(report.skipped[0][0]),
            highlight=False,
        )
    if json_out:
        _emit_json(report)
        return
    out.print(
        f"[bold]{escape(report.artifact)}[/] on {escape(report.data)}: {report.count} images, {report.classes} classes",
        highlight=False,
    )
    out.print(
        f"top-1 [bold]{report.top1 * 100:.2f}%[/]   top-5 [bold]{report.top5 * 100:.2f}%[/]   "
        f"({report.seconds:.1f} s, {report.count / max(report.seconds, 1e-9):.1f} images/s)"
    )


def _safe(value: object) -> str:
    """One table cell of text read from a file: control characters escaped, markup inert."""
    return escape(printable(value))


def info_cmd(
    artifact: Annotated[Path, typer.Argument(help="An ONNX file exported by resnet-deploy.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what an exported artifact is: its metadata, signature and graph."""
    from ..artifacts import describe_onnx

    desc = describe_onnx(artifact)
    if json_out:
        _emit_json(desc)
        return
    out.print(f"[bold]{_safe(desc['path'])}[/]  ({desc['file_size_bytes'] / 1e6:.1f} MB)", highlight=False)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for io_ in desc["inputs"] + desc["outputs"]:
        grid.add_row(_safe(io_["name"]), _safe(f"{io_['dtype']} {io_['shape']}"))
    grid.add_row("opset", str(desc["opset"]))
    grid.add_row("nodes", ", ".join(f"{op} {n}" for op, n in desc["nodes_by_op"].items()))
    rec = desc["parity_record"]
    if rec["ok"]:
        grid.add_row("parity", _safe(f"passed ({rec['step']} vs {rec['reference']}, {rec['created']})"))
    else:
        grid.add_row("parity", "[yellow]" + _safe(str(rec["problem"])) + "[/]")
    for key, value in desc["metadata"].items():
        grid.add_row(_safe(key), _safe(value))
    out.print(grid)
