"""``ship``, ``serve`` and ``predict``: a verified artifact into a Triton repository, onto a running
Triton server, or straight onto images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import ConfigError
from ..reports import to_jsonable
from . import tune as tune_cli
from ._common import KindChoice, PrecisionChoice, _emit_json, err, out


def ship_cmd(
    artifact: Annotated[
        Path, typer.Argument(help="A verified ONNX file or TensorRT plan (with its sidecar).", show_default=False)
    ],
    repo: Annotated[
        Path, typer.Option("--repo", help="Triton model repository folder (created if missing).", show_default=False)
    ],
    name: Annotated[
        str | None, typer.Option(help="Model name in the repository (default: the model id).", show_default=False)
    ] = None,
    version: Annotated[int, typer.Option(help="Version folder to write.")] = 1,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch", help="max_batch_size (default: an engine's profile max, else 64).", show_default=False
        ),
    ] = None,
    instances: Annotated[
        int | None, typer.Option(help="Model instances (instance_group count; default 1).", show_default=False)
    ] = None,
    kind: Annotated[KindChoice, typer.Option(help="Instance kind: gpu, or cpu (ONNX only).")] = KindChoice.gpu,
    preferred_batch: Annotated[
        str | None,
        typer.Option("--preferred-batch", help="Dynamic batcher's preferred sizes, e.g. 8,16.", show_default=False),
    ] = None,
    max_queue_delay_us: Annotated[
        int | None,
        typer.Option(
            "--max-queue-delay-us",
            help="How long the dynamic batcher waits to fill a batch (default 100).",
            show_default=False,
        ),
    ] = None,
    no_dynamic_batching: Annotated[
        bool, typer.Option("--no-dynamic-batching", help="Leave Triton's dynamic batcher off.")
    ] = False,
    accelerator: Annotated[
        PrecisionChoice | None,
        typer.Option(
            help="ONNX on GPU: run it through ONNX Runtime's TensorRT provider at this precision.", show_default=False
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Class names, one per line (default: ImageNet's / CIFAR-10's).", show_default=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Ship without a passing parity record, or with random weights.")
    ] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing version.")] = False,
    tune: Annotated[bool, tune_cli.TUNE_OPT] = False,
    latency_budget: Annotated[float | None, tune_cli.BUDGET_OPT] = None,
    tune_instances: Annotated[str | None, tune_cli.INSTANCES_OPT] = None,
    tune_preferred_batch: Annotated[str | None, tune_cli.PREFERRED_OPT] = None,
    tune_queue_delay_us: Annotated[str | None, tune_cli.DELAYS_OPT] = None,
    tune_concurrency: Annotated[str | None, tune_cli.CONCURRENCY_OPT] = None,
    tune_duration_s: Annotated[float | None, tune_cli.DURATION_OPT] = None,
    tune_max_candidates: Annotated[int | None, tune_cli.MAX_CANDIDATES_OPT] = None,
    tune_max_time_s: Annotated[float | None, tune_cli.MAX_TIME_OPT] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Write a Triton model repository entry (config.pbtxt, labels, model) for a verified artifact."""
    from ..ship import ship

    options = {k: v for k, v in locals().items() if k.startswith(("tune_", "latency_")) or k in tune_cli.SHIP_OWN}
    tune_cli.check_tune_options(tune, options)
    if no_dynamic_batching and max_queue_delay_us is not None:
        raise ConfigError("--max-queue-delay-us configures the dynamic batcher: drop --no-dynamic-batching")
    common: dict[str, Any] = dict(
        name=name, version=version, max_batch=max_batch, kind=kind.value, labels=labels, force=force
    )
    common.update(accelerator=accelerator.value if accelerator else None, replace=replace)
    if tune:
        return tune_cli.tune_ship(artifact, repo, options, common, json_out)
    report = ship(
        artifact,
        repo,
        instances=1 if instances is None else instances,
        preferred_batch=preferred_batch,
        max_queue_delay_us=None if no_dynamic_batching else (100 if max_queue_delay_us is None else max_queue_delay_us),
        **common,
    )
    for problem in report.forced:
        err.print("[bold red]warning:[/] shipped with --force: " + escape(problem), highlight=False)
    for warning in report.warnings:
        err.print("[bold yellow]warning:[/] " + escape(warning), highlight=False)
    if json_out:
        _emit_json(report)
        return
    out.print(
        f"[bold]{escape(report.model_dir)}[/]  ({report.platform}, version {report.version}, "
        f"max_batch_size {report.max_batch_size})",
        highlight=False,
    )
    for f in report.files:
        out.print(f"  {escape(f)}", highlight=False)
    inp = report.input
    out.print(
        f"[dim]input {escape(inp['name'])} {inp['dtype']} {inp['dims']} {inp['format']}; output "
        f"{escape(report.output['name'])} {report.output['dtype']} {report.output['dims']}"
        + (f"; config validated with {report.validated_with}" if report.validated_with else "")
        + "[/]",
        highlight=False,
    )


def serve_cmd(
    artifact: Annotated[
        str,
        typer.Argument(help="An ONNX file, a TensorRT plan, a model id or a checkpoint.", show_default=False),
    ],
    name: Annotated[
        str | None, typer.Option(help="Model name clients use (default: its model id).", show_default=False)
    ] = None,
    address: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP/REST port (KServe v2).")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port", help="Prometheus metrics port.")] = 8002,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch", help="Largest batch (default: an engine's profile max, else 64).", show_default=False
        ),
    ] = None,
    max_queue_delay_us: Annotated[
        int, typer.Option("--max-queue-delay-us", help="How long the dynamic batcher waits to fill a batch.")
    ] = 100,
    preferred_batch: Annotated[
        str | None,
        typer.Option("--preferred-batch", help="Dynamic batcher's preferred sizes, e.g. 8,16.", show_default=False),
    ] = None,
    instances: Annotated[int, typer.Option(help="Model instances (each with its own runner).")] = 1,
    backend: Annotated[
        str,
        typer.Option(
            help="auto | onnxruntime | onnxruntime-cuda | onnxruntime-tensorrt | tensorrt | torch | openvino."
        ),
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per instance (default: cores / instances).", show_default=False)
    ] = None,
    log_file: Annotated[
        str | None, typer.Option("--log-file", help="Keep tritonserver's log here.", show_default=False)
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", "-d", help="Architecture of a .pth checkpoint.", show_default=False)
    ] = None,
    max_restarts: Annotated[
        int,
        typer.Option("--max-restarts", help="Restart a tritonserver that died at most N times per window (0: never)."),
    ] = 5,
    restart_window_s: Annotated[
        float, typer.Option("--restart-window-s", help="The window for --max-restarts, in seconds.")
    ] = 60.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the server's endpoints as one JSON line once it is ready.")
    ] = False,
) -> None:
    """Serve an artifact on a real Triton Inference Server (PyTriton): HTTP, gRPC, metrics, dynamic batching."""
    import json

    from ..reports import check_output_path
    from ..serve import ServeOptions, TritonServer
    from ..triton import parse_batch_list

    options = ServeOptions(
        artifact=artifact,
        name=name,
        address=address,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us,
        preferred_batch=parse_batch_list(preferred_batch),
        instances=instances,
        backend=backend,
        depth=depth,
        threads=threads,
        log_file=str(check_output_path(log_file, "tritonserver.log")) if log_file is not None else None,
        max_restarts=max_restarts,
        restart_window_s=restart_window_s,
    )
    server = TritonServer(options)  # checks every option (a ConfigError) before anything starts
    # PyTriton echoes tritonserver's own output on stdout: send it to stderr, so stdout carries
    # only the ready line(s) below (--json: exactly one JSON line).
    real_stdout = sys.stdout
    console = Console(file=real_stdout, highlight=False)
    sys.stdout = sys.stderr
    try:
        with err.status("starting Triton Inference Server", spinner="dots"):
            info = server.start()

        def announce() -> None:
            if json_out:
                real_stdout.write(json.dumps(to_jsonable(info)) + "\n")
                real_stdout.flush()
            else:
                console.print(
                    f"[bold green]ready[/] model [bold]{escape(info.model)}[/] ({escape(str(info.runner.get('runner')))}, "
                    f"max batch {info.max_batch_size}, {info.instances} instance(s), started in {info.startup_seconds:.1f} s)",
                    highlight=False,
                )
                inp = info.input
                console.print(
                    f"  input   {escape(inp['name'])} {inp['dtype']} {inp['shape']} ({inp['format']})", highlight=False
                )
                console.print(
                    f"  output  {escape(info.output['name'])} float32 {info.output['shape']}", highlight=False
                )
                console.print(f"  HTTP    {info.http}   (health: {info.http}/v2/health/ready)", highlight=False)
                console.print(f"  gRPC    {info.grpc}", highlight=False)
                console.print(f"  metrics {info.metrics}", highlight=False)
                console.print("[dim]Ctrl-C or SIGTERM stops the server[/]")
                real_stdout.flush()

        received = server.wait(announce)  # the signals are ours before the ready line goes out
    finally:
        server.stop()
        sys.stdout = real_stdout
    err.print(f"stopped ({received})", highlight=False)


def predict_cmd(
    artifact: Annotated[
        str, typer.Argument(help="An ONNX file, a TensorRT plan, a model id or a checkpoint.", show_default=False)
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    topk: Annotated[int, typer.Option("--topk", help="Classes to show per image.")] = 5,
    backend: Annotated[
        str,
        typer.Option(
            help="auto | onnxruntime | onnxruntime-cuda | onnxruntime-tensorrt | tensorrt | torch | openvino."
        ),
    ] = "auto",
    labels: Annotated[
        Path | None, typer.Option(help="Class names, one per line (default: from the model).", show_default=False)
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per inference call.")] = 32,
    threads: Annotated[int | None, typer.Option(help="CPU threads.", show_default=False)] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", "-d", help="Architecture of a .pth checkpoint.", show_default=False)
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify images with an artifact: top-k labels and probabilities."""
    from ..predictor import Predictor

    if topk <= 0:
        raise ConfigError(f"--topk {topk}: must be a positive integer")
    with Predictor.from_artifact(
        artifact, backend, labels=labels, batch_size=batch_size, threads=threads, depth=depth
    ) as p:
        if not p.metadata.weights_trained:
            err.print(
                "[bold yellow]warning:[/] random (untrained) weights: the labels are meaningless", highlight=False
            )
        results = p.predict(images, topk=topk)
        described = p.describe()
    if json_out:
        _emit_json({"artifact": artifact, "runner": described, "predictions": results})
        return
    for r in results:
        out.print(f"[bold]{escape(r.source)}[/]", highlight=False)
        for label, index, prob in zip(r.labels, r.indices, r.probabilities, strict=True):
            out.print(f"  {prob:7.2%}  {escape(label)} [dim]({index})[/]", highlight=False)
