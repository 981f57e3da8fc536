"""Load tests of ``resnet-deploy serve``: real tritonclient clients against a real Triton.

    python -m benchmarks.serve_load MODEL.onnx [--clients 8] [--requests 200] [--protocol grpc|http]
        [--max-queue-delay-us 2000] [--out benchmarks/results/serve_load.md]
    python -m benchmarks.serve_load MODEL.onnx --sweep [--concurrency 1,2,4,8] [--duration-s 5]
        [--max-queue-delay-us 2000] [--threads N] [--sweep-out benchmarks/results/serve_sweep]

Starts the server as a subprocess (``python -m resnet_deploy serve --json``) and waits for its
ready line. The bounded load runs N client threads sending a fixed number of batch-1 requests
each; ``--sweep`` runs ``resnet-deploy bench --server`` against it (a perf_analyzer-style
concurrency sweep) and writes its JSON and a markdown table with the exact commands. Both read
Triton's own statistics (queue and compute times, the batch sizes the dynamic batcher executed)
and stop the server with SIGTERM. The clients, inputs and statistics are
``resnet_deploy.loadgen``'s; the test suite uses the same functions (tests/test_serve.py,
tests/test_loadgen.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from resnet_deploy.reports import sha256_file


def free_ports(n: int = 3) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Server:
    proc: subprocess.Popen[str]
    info: dict[str, Any]
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return str(self.info["http"]).removeprefix("http://")

    @property
    def grpc(self) -> str:
        return str(self.info["grpc"])

    def children(self) -> list[int]:
        """Processes whose parent is the server process (tritonserver), from /proc."""
        return _children(self.proc.pid)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry))
    return kids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_server(artifact: str | Path, *extra: str, timeout: float = 120.0) -> Server:
    """``python -m resnet_deploy serve ARTIFACT --json`` on free loopback ports; returns once ready."""
    http, grpc, metrics = free_ports(3)
    cmd = [
        sys.executable,
        "-m",
        "resnet_deploy",
        "serve",
        str(artifact),
        "--json",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True).start()
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    if not ready or not ready[0].strip():
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"server did not become ready (exit {proc.returncode}): {''.join(lines)[-2000:]}")
    return Server(proc, json.loads(ready[0]), lines)


def stop_server(server: Server, sig: int = signal.SIGTERM, timeout: float = 60.0) -> tuple[int, float, list[int]]:
    """Send ``sig``; returns (exit code, seconds to exit, tritonserver pids still alive afterwards)."""
    kids = server.children()
    t0 = time.perf_counter()
    server.proc.send_signal(sig)
    code = server.proc.wait(timeout)
    seconds = time.perf_counter() - t0
    deadline = time.monotonic() + 10
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return code, seconds, [k for k in kids if alive(k)]


def metrics(url: str, model: str) -> dict[str, float]:
    """Triton's per-model Prometheus counters (summed over versions)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(nv_inference_\w+)\{([^}]*)\}\s+([0-9.e+-]+)$", line)
        if m and f'model="{model}"' in m.group(2):
            key = m.group(1)
            reason = re.search(r'reason="(\w+)"', m.group(2))
            if reason:
                key += f"[{reason.group(1)}]"
            out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


@dataclass
class LoadResult:
    protocol: str
    clients: int
    requests_per_client: int
    ok: int
    failed: int
    errors: list[str]
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests_per_s: float
    inferences: float  # Triton's inference_count delta: samples executed
    executions: float  # Triton's execution_count delta: model executions
    mean_batch: float  # inferences / executions: > 1 means the dynamic batcher merged requests
    batch_stats: dict[int, int]  # batch size -> executions, from Triton's statistics API
    server: dict[str, Any] = field(default_factory=dict)  # loadgen.server_delta: queue/compute times too

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_load(
    server: Server,
    inputs: NDArray[Any] | None = None,
    *,
    clients: int = 8,
    requests: int = 200,
    protocol: str = "grpc",
) -> LoadResult:
    """``clients`` threads x ``requests`` batch-1 requests each, cycling through ``inputs`` (default:
    random inputs of the type the server declares); every answer is checked for its batch. Stops by
    itself. The clients, the inputs and Triton's statistics are ``resnet_deploy.loadgen``'s (the
    sweep of ``bench --server``); only the bounded request count is this benchmark's own."""
    from resnet_deploy.loadgen import LoadPhase, describe_model, server_delta

    model = describe_model(server.grpc if protocol == "grpc" else server.http, server.info["model"], protocol=protocol)
    x = model.random_batch(16, np.random.default_rng(0)) if inputs is None else inputs
    stats_client = model.client()
    before = model.statistics(stats_client)
    phase = LoadPhase(model, clients, [x[i : i + 1] for i in range(len(x))], limit=requests)
    t0 = phase.start()
    phase.join(until_done=True)
    seconds = time.perf_counter() - t0
    delta = server_delta(before, model.statistics(stats_client))
    stats_client.close()
    records = phase.all_records()
    lat = np.array([r[1] for r in records if r[2] is None])
    errors = [r[2] for r in records if r[2] is not None] + phase.setup_errors
    pct = (lambda q: float(np.percentile(lat, q))) if len(lat) else (lambda q: float("nan"))
    return LoadResult(
        protocol=protocol,
        clients=clients,
        requests_per_client=requests,
        ok=len(lat),
        failed=len(errors),
        errors=errors[:5],
        seconds=round(seconds, 3),
        p50_ms=round(pct(50), 3),
        p90_ms=round(pct(90), 3),
        p99_ms=round(pct(99), 3),
        max_ms=round(float(lat.max()) if len(lat) else float("nan"), 3),
        requests_per_s=round(len(lat) / seconds, 1),
        inferences=delta["inference_count"],
        executions=delta["execution_count"],
        mean_batch=delta["mean_batch"] or 0.0,
        batch_stats=delta["batch_sizes"],
        server=delta,
    )


def sweep(a: argparse.Namespace, extra: list[str]) -> None:
    """``resnet-deploy bench --server`` against a fresh server: ``<sweep-out>.json`` (the command's
    report, plus the server's ready line and the commands) and ``<sweep-out>.md`` (a table)."""
    load_before = os.getloadavg()[0]  # other jobs on this machine: the numbers' noise
    server = start_server(a.artifact, *extra)
    out = Path(a.sweep_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model, url = server.info["model"], server.grpc if a.protocol == "grpc" else server.http
    bench = ["bench", "--server", url, "--model", model, "--protocol", a.protocol, "--concurrency", a.concurrency]
    bench += ["--duration-s", str(a.duration_s), "--warmup-s", str(a.warmup_s), "--json", f"{out}.json"]
    try:
        done = subprocess.run([sys.executable, "-m", "resnet_deploy", *bench], capture_output=True, text=True)
    finally:
        code, seconds, orphans = stop_server(server)
    if done.returncode != 0:
        raise SystemExit(f"bench --server failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    report = json.loads(Path(f"{out}.json").read_text())
    serve_cmd = f"resnet-deploy serve {Path(a.artifact).name} " + " ".join(extra)
    report["commands"] = {
        "benchmark": "python -m benchmarks.serve_load " + shlex.join(sys.argv[1:]),
        "serve": serve_cmd,
        "bench": "resnet-deploy " + " ".join(bench).replace(url, "127.0.0.1:PORT"),
    }
    report["load_average_1min_before"] = round(load_before, 2)
    report["artifact"] = {"name": Path(a.artifact).name, "sha256": sha256_file(a.artifact), "made_by": a.made_by}
    report["server_info"] = {
        k: server.info[k] for k in ("model", "runner", "input", "max_batch_size", "max_queue_delay_us")
    }
    report["shutdown"] = {"signal": "SIGTERM", "exit_code": code, "seconds": round(seconds, 2), "orphans": orphans}
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{out}.md").write_text(_sweep_markdown(report) + "\n")
    print(done.stdout)


def _sweep_markdown(report: dict[str, Any]) -> str:
    env, settings, cmds = report["environment"], report["settings"], report["commands"]
    model = env["model"]
    lines = [
        f"# Serving sweep: {model['name']} on Triton {env['server'].get('version')} through `resnet-deploy serve`",
        "",
        f"`{cmds['benchmark']}`, which runs (the artifact's sha256 {report['artifact']['sha256'][:16]}...):",
        "",
        *([f"    {report['artifact']['made_by']}"] if report["artifact"]["made_by"] else []),
        f"    {cmds['serve']}",
        f"    {cmds['bench']}",
        "",
        f"Client and server on the same machine ({env['client_cpu']}, {env['client_cores']} cores, "
        f"{env['platform']}; 1-minute load average {report['load_average_1min_before']} before it started: other jobs share the cores), {env['protocol']}, tritonclient {env['tritonclient']}, Python {env['python']}, "
        f"{env['date']}. Model: input {model['input']}, max_batch_size {model['max_batch_size']}, "
        f"dynamic batching {model['dynamic_batching']}, instances {model['instance_group']}; runner "
        f"{report['server_info']['runner']}. Each level: {settings['warmup_s']:g} s warm-up, then "
        f"{settings['duration_s']:g} s measured in windows of {settings['window_s']:.3g} s; random inputs; "
        "batch-1 requests.",
        "",
        "| concurrency | images/s | p50 ms | p90 ms | p99 ms | requests | failed | window spread | "
        "queue ms | compute ms | mean executed batch | batch sizes executed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        s = r["server"] or {}
        compute = sum(s.get(k) or 0 for k in ("compute_input_us", "compute_infer_us", "compute_output_us")) / 1e3
        lines.append(
            f"| {r['concurrency']} | {r['throughput_ips']:.1f} | {r['latency_p50_ms']:.2f} | {r['latency_p90_ms']:.2f} | "
            f"{r['latency_p99_ms']:.2f} | {r['requests']} | {r['failures']} | {r['spread_pct']}% | "
            f"{(s.get('queue_us') or 0) / 1e3:.2f} | {compute:.2f} | {s.get('mean_batch')} | {s.get('batch_sizes')} |"
        )
    shut = report["shutdown"]
    lines += [
        "",
        "Queue and compute: Triton's statistics endpoint, mean per request over exactly the measured requests "
        "(read with no request in flight). Window spread: the largest distance of a window's throughput or "
        "median latency from the mean of the windows.",
        f"Server stopped with SIGTERM: exit {shut['exit_code']} in {shut['seconds']} s, orphans: {shut['orphans'] or 'none'}.",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="append a markdown section here")
    p.add_argument("--sweep", action="store_true", help="a concurrency sweep (bench --server) instead")
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--duration-s", type=float, default=5.0)
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--sweep-out", default="benchmarks/results/serve_sweep")
    p.add_argument("--made-by", default="", help="--sweep: the command that made the artifact (recorded)")
    a = p.parse_args()
    extra = ["--max-queue-delay-us", str(a.max_queue_delay_us), "--instances", str(a.instances)]
    if a.threads:
        extra += ["--threads", str(a.threads)]
    if a.sweep:
        sweep(a, extra)
        return
    server = start_server(a.artifact, *extra)
    try:
        result = run_load(server, clients=a.clients, requests=a.requests, protocol=a.protocol)
    finally:
        code, seconds, orphans = stop_server(server)
    report: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.serve_load", *sys.argv[1:]]),
        "server": {k: server.info[k] for k in ("model", "runner", "input", "max_batch_size", "max_queue_delay_us")},
        "load": result.to_dict(),
        "shutdown": {"signal": "SIGTERM", "exit_code": code, "seconds": round(seconds, 2), "orphans": orphans},
        "environment": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "pytriton": server.info.get("pytriton_version"),
        },
    }
    print(json.dumps(report, indent=2))
    if a.out:
        r = result
        text = (
            f"\n## {server.info['model']} ({Path(a.artifact).name}), {a.protocol}, {a.clients} clients x "
            f"{a.requests} requests, queue delay {a.max_queue_delay_us} us, {a.instances} instance(s)\n\n"
            f"`{report['command']}` on {report['environment']['cores']} cores, pytriton "
            f"{report['environment']['pytriton']}\n\n"
            "| ok | failed | p50 ms | p90 ms | p99 ms | max ms | requests/s | mean batch (Triton statistics) | batch sizes executed |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
            f"| {r.ok} | {r.failed} | {r.p50_ms} | {r.p90_ms} | {r.p99_ms} | {r.max_ms} | {r.requests_per_s} | "
            f"{r.mean_batch} | {r.batch_stats} |\n\n"
            f"Shutdown on SIGTERM: exit {code} in {seconds:.1f} s, orphaned tritonserver processes: {orphans or 'none'}.\n"
        )
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
