"""Serving on this machine: Triton (through ``resnet-deploy serve``) under a bounded load, configurations
compared side by side in interleaved rounds (each round restarts every server in turn).

    python -m benchmarks.serve_table [--rounds 2] [--out benchmarks/results]

Configurations: ResNet-20 (CIFAR, 32x32) with the dynamic batcher waiting 0 vs 2000 us, and two
instances of one thread vs one of two threads; ResNet-50 (224x224) taking float32 NCHW vs uint8 NHWC
pixels. The clients run on the same 2 cores as the server, so absolute numbers are low and noisy;
compare the ratios within one run. Writes serve_table.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.serve_load import run_load, start_server, stop_server


def _artifacts(workdir: Path) -> dict[str, Path]:
    from resnet_deploy import export_onnx
    from resnet_deploy.pixels import add_pixel_input

    paths = {}
    for name in ("resnet20", "resnet50"):
        out = workdir / f"{name}.onnx"
        export_onnx(name, out, weights="random")
        paths[name] = out
    paths["resnet50-uint8"] = Path(add_pixel_input(paths["resnet50"]).path)
    return paths


CONFIGS: list[dict[str, Any]] = [
    {
        "label": "resnet20, delay 0 us, 1 instance x 2 threads",
        "model": "resnet20",
        "args": ["--max-queue-delay-us", "0", "--threads", "2"],
        "requests": 200,
    },
    {
        "label": "resnet20, delay 2000 us, 1 instance x 2 threads",
        "model": "resnet20",
        "args": ["--max-queue-delay-us", "2000", "--threads", "2"],
        "requests": 200,
    },
    {
        "label": "resnet20, delay 2000 us, 2 instances x 1 thread",
        "model": "resnet20",
        "args": ["--max-queue-delay-us", "2000", "--instances", "2", "--threads", "1"],
        "requests": 200,
    },
    {
        "label": "resnet50 float32 NCHW, delay 2000 us",
        "model": "resnet50",
        "args": ["--max-queue-delay-us", "2000", "--threads", "2"],
        "requests": 12,
    },
    {
        "label": "resnet50 uint8 NHWC, delay 2000 us",
        "model": "resnet50-uint8",
        "args": ["--max-queue-delay-us", "2000", "--threads", "2"],
        "requests": 12,
    },
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {c["label"]: [] for c in CONFIGS}
    shutdowns: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = _artifacts(Path(tmp))
        for r in range(a.rounds):
            for c in CONFIGS:
                server = start_server(paths[c["model"]], *c["args"])
                try:
                    result = run_load(
                        server,
                        clients=a.clients,
                        requests=c["requests"],
                        protocol=a.protocol,
                    )
                finally:
                    code, seconds, orphans = stop_server(server)
                shutdowns.append({"exit_code": code, "seconds": round(seconds, 2), "orphans": orphans})
                rows[c["label"]].append(result.to_dict())
                print(
                    f"round {r + 1} {c['label']}: {result.requests_per_s} req/s, p50 {result.p50_ms} ms, "
                    f"p99 {result.p99_ms} ms, mean batch {result.mean_batch}, failed {result.failed}",
                    file=sys.stderr,
                )
    summary = []
    for c in CONFIGS:
        runs = rows[c["label"]]
        summary.append(
            {
                "label": c["label"],
                "requests": sum(x["ok"] + x["failed"] for x in runs),
                "failed": sum(x["failed"] for x in runs),
                "requests_per_s": statistics.median(x["requests_per_s"] for x in runs),
                "p50_ms": statistics.median(x["p50_ms"] for x in runs),
                "p99_ms": statistics.median(x["p99_ms"] for x in runs),
                "mean_batch": statistics.median(x["mean_batch"] for x in runs),
                "max_batch_seen": max(max(map(int, x["batch_stats"]), default=0) for x in runs),
            }
        )
    env = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import importlib.metadata as md

        for dist in ("nvidia-pytriton", "tritonclient", "onnxruntime-gpu", "torch"):
            env[dist] = md.version(dist)
    except Exception:
        pass
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": "python -m benchmarks.serve_table " + " ".join(sys.argv[1:]),
        "clients": a.clients,
        "protocol": a.protocol,
        "rounds": a.rounds,
        "environment": env,
        "summary": summary,
        "runs": rows,
        "shutdowns": shutdowns,
    }
    (out / "serve_table.json").write_text(json.dumps(data, indent=2) + "\n")
    base20 = summary[0]["requests_per_s"]
    base50 = summary[3]["requests_per_s"]
    lines = [
        "# Serving: Triton through `resnet-deploy serve`, bounded load",
        "",
        f"`{data['command']}`: {a.clients} {a.protocol} clients, each sending batch-1 requests one after another, "
        f"{a.rounds} interleaved rounds (medians shown), the clients on the same machine as the server. "
        f"Environment: {env}. Random weights (the load does not depend on them).",
        "",
        "| configuration | requests | failed | requests/s | vs first of its model | p50 ms | p99 ms | mean batch (Triton statistics) | largest batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        base = base20 if s["label"].startswith("resnet20") else base50
        lines.append(
            f"| {s['label']} | {s['requests']} | {s['failed']} | {s['requests_per_s']:.1f} | "
            f"{s['requests_per_s'] / base:.2f}x | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['mean_batch']:.2f} | "
            f"{s['max_batch_seen']} |"
        )
    lines += [
        "",
        f"Every server was stopped with SIGTERM: exit codes {sorted({x['exit_code'] for x in shutdowns})}, "
        f"{max(x['seconds'] for x in shutdowns):.1f} s at most, orphaned tritonserver processes: "
        f"{sum(len(x['orphans']) for x in shutdowns)}.",
    ]
    (out / "serve_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
