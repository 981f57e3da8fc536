"""GPU table for a GPU machine: the torch CUDA runner for ResNet-50, batch 1 to 256, side by side.

fp32, fp16 + channels_last, + CUDA graphs, + torch.compile, measured by `resnet_deploy.bench` in
interleaved rounds with CUDA-event timing (h2d / compute / d2h reported apart). Writes
benchmarks/results/gpu_table.{json,csv,md,png}. Needs torch with CUDA and a GPU; exits with one line
saying so otherwise. Usage:  python benchmarks/gpu_table.py [--batch-sizes 1,8,32,128,256] [--duration-s 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resnet_deploy import create_model
from resnet_deploy.bench import Target, benchmark, save_report
from resnet_deploy.models import count_macs
from resnet_deploy.reports import atomic_write_text
from resnet_deploy.runtime.pyt import TorchRunner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch-sizes", default="1,8,32,128,256")
    ap.add_argument("--duration-s", type=float, default=2.0)
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (slow to compile)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    os.environ.setdefault("RESNET_DEPLOY_OFFLINE", "1")
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch: run this on a GPU machine", file=sys.stderr)
        return 2
    net = create_model(args.model, weights="random")
    macs = count_macs(net, (224, 224))
    variants = [
        ("cuda fp32", {}),
        ("cuda fp16 channels_last", {"dtype": "fp16", "channels_last": True}),
        ("cuda fp16 channels_last cuda_graphs", {"dtype": "fp16", "channels_last": True, "cuda_graphs": True}),
    ]
    if not args.no_compile:
        variants.append(("cuda fp16 channels_last compile", {"dtype": "fp16", "channels_last": True, "compile": True}))
    targets = [Target(label, TorchRunner(net, device="cuda", **opts), macs) for label, opts in variants]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    report = benchmark(targets, sizes, warmup_s=args.warmup_s, duration_s=args.duration_s, rounds=args.rounds)
    save_report(report, args.out, "gpu_table")
    env = report.environment
    ratio = {(r["target"], r["batch"]): r["speedup"] for r in report.ratios()}
    lines = [
        f"| {args.model} | batch | p50 ms | p99 ms | images/s | h2d / compute / d2h ms | vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        ph = r.phases_ms or {}
        phases = " / ".join(f"{ph.get(k, float('nan')):.2f}" for k in ("h2d", "compute", "d2h"))
        lines.append(
            f"| {r.target} | {r.batch} | {r.latency_ms.p50:.2f} | {r.latency_ms.p99:.2f} | "
            f"{r.throughput_ips:.0f} | {phases} | {ratio[(r.target, r.batch)]:.2f}x |"
        )
    lines += [
        "",
        f"GPU: {env.get('gpu')} (sm {env.get('compute_capability')}, driver {env.get('driver')}, CUDA "
        f"{env.get('cuda')}); torch {env.get('torch')}; {args.rounds} interleaved rounds of {args.duration_s} s; "
        f"{env['date']}.",
        "Command: `python benchmarks/gpu_table.py`",
    ]
    atomic_write_text(args.out / "gpu_table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
