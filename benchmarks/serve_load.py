"""A bounded load test of ``resnet-deploy serve``: real tritonclient clients against a real Triton.

    python -m benchmarks.serve_load MODEL.onnx [--clients 8] [--requests 200] [--protocol grpc|http]
        [--max-queue-delay-us 2000] [--out benchmarks/results/serve_load.md]

Starts the server as a subprocess (``python -m resnet_deploy serve --json``), waits for its ready
line, runs N client threads (one client object each: tritonclient's clients are not thread-safe)
sending batch-1 requests, then reads Triton's own Prometheus counters to show how many requests
the dynamic batcher merged into each execution, and stops the server with SIGTERM. The test
suite uses the same functions (tests/test_serve.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
    reader = threading.Thread(target=lambda: ready.append((proc.stdout or iter([""])).readline()), daemon=True)
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


def random_inputs(info: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded inputs of the type the server's ready line says it takes (pixels or floats)."""
    shape = info["input"]["shape"][1:]
    rng = np.random.default_rng(seed)
    if info["input"]["dtype"] == "uint8":
        return rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return rng.standard_normal((n, *shape)).astype(info["input"]["dtype"])


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
    inferences: float  # nv_inference_count delta: samples executed
    executions: float  # nv_inference_exec_count delta: model executions
    mean_batch: float  # inferences / executions: > 1 means the dynamic batcher merged requests
    batch_stats: dict[int, int]  # batch size -> executions, from Triton's statistics API

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_load(
    server: Server, inputs: np.ndarray, *, clients: int = 8, requests: int = 200, protocol: str = "grpc"
) -> LoadResult:
    """``clients`` threads x ``requests`` batch-1 requests each, cycling through ``inputs``; every
    answer is checked for shape. Stops by itself."""
    import tritonclient.grpc as tg
    import tritonclient.http as th

    model, in_name = server.info["model"], server.info["input"]["name"]
    dtype = {"float32": "FP32", "uint8": "UINT8"}[server.info["input"]["dtype"]]
    n_classes = server.info["output"]["shape"][1]
    before = metrics(server.info["metrics"], model)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        mod: Any = tg if protocol == "grpc" else th
        c = mod.InferenceServerClient(server.grpc if protocol == "grpc" else server.http)
        barrier.wait()
        for j in range(requests):
            x = inputs[(i * requests + j) % len(inputs)][None]
            inp = mod.InferInput(in_name, list(x.shape), dtype)
            inp.set_data_from_numpy(x)
            t0 = time.perf_counter()
            try:
                kwargs = {"client_timeout": 30} if protocol == "grpc" else {}
                r = c.infer(model, [inp], **kwargs)
                if r.as_numpy(server.info["output"]["name"]).shape != (1, n_classes):
                    raise ValueError("wrong output shape")
                latencies[i].append(time.perf_counter() - t0)
            except Exception as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {str(e)[:200]}")
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    after = metrics(server.info["metrics"], model)
    lat = np.array([v for part in latencies for v in part]) * 1e3
    inferences = after.get("nv_inference_count", 0) - before.get("nv_inference_count", 0)
    executions = after.get("nv_inference_exec_count", 0) - before.get("nv_inference_exec_count", 0)
    stats = th.InferenceServerClient(server.http).get_inference_statistics(model)
    batch_stats = {
        int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["model_stats"][0].get("batch_stats", [])
    }
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
        inferences=inferences,
        executions=executions,
        mean_batch=round(inferences / executions, 3) if executions else 0.0,
        batch_stats=dict(sorted(batch_stats.items())),
    )


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
    a = p.parse_args()
    extra = ["--max-queue-delay-us", str(a.max_queue_delay_us), "--instances", str(a.instances)]
    if a.threads:
        extra += ["--threads", str(a.threads)]
    server = start_server(a.artifact, *extra)
    try:
        x = random_inputs(server.info, 64)
        result = run_load(server, x, clients=a.clients, requests=a.requests, protocol=a.protocol)
    finally:
        code, seconds, orphans = stop_server(server)
    report = {
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
            "| ok | failed | p50 ms | p90 ms | p99 ms | max ms | requests/s | mean batch (Triton metrics) | batch sizes executed |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
            f"| {r.ok} | {r.failed} | {r.p50_ms} | {r.p90_ms} | {r.p99_ms} | {r.max_ms} | {r.requests_per_s} | "
            f"{r.mean_batch} | {r.batch_stats} |\n\n"
            f"Shutdown on SIGTERM: exit {code} in {seconds:.1f} s, orphaned tritonserver processes: {orphans or 'none'}.\n"
        )
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
