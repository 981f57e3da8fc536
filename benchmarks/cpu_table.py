"""The README's CPU performance table: ResNet-50 at batch 1, 8 and 32, four ways, side by side.

PyTorch eager fp32, ONNX Runtime fp32, ONNX Runtime int8 (cpu recipe) and int8 (tensorrt recipe),
measured by `resnet_deploy.bench` in interleaved rounds with fixed thread counts, so that the ratios
are comparable within the run. Random weights and random calibration: speed does not depend on them.
Usage:  python benchmarks/cpu_table.py [--threads 2] [--duration-s 4] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resnet_deploy import create_model, export_onnx
from resnet_deploy.bench import Target, benchmark, save_report
from resnet_deploy.models import count_macs
from resnet_deploy.precision import quantize_int8
from resnet_deploy.reports import atomic_write_text
from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner
from resnet_deploy.runtime.pyt import TorchRunner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--duration-s", type=float, default=4.0)
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    os.environ.setdefault("RESNET_DEPLOY_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / f"{args.model}.onnx"
        net = create_model(args.model, weights="random")
        export_onnx(net, fp32)
        cpu8 = quantize_int8(fp32, Path(tmp) / "cpu.int8.onnx", "random", recipe="cpu", method="minmax", cache=False)
        trt8 = quantize_int8(
            fp32, Path(tmp) / "trt.int8.onnx", "random", recipe="tensorrt", method="minmax", cache=False
        )
        size = (net.cfg.input_size[1], net.cfg.input_size[2]) if net.cfg else (224, 224)
        macs = count_macs(net, size)
        targets = [
            Target("PyTorch eager fp32", TorchRunner(net, threads=args.threads), macs),
            Target("ONNX Runtime fp32", OnnxRuntimeRunner(fp32, threads=args.threads), macs),
            Target("ONNX Runtime int8 (cpu recipe)", OnnxRuntimeRunner(cpu8.path, threads=args.threads), macs),
            Target("ONNX Runtime int8 (tensorrt recipe)", OnnxRuntimeRunner(trt8.path, threads=args.threads), macs),
        ]
        report = benchmark(
            targets, sizes, warmup_s=args.warmup_s, duration_s=args.duration_s, rounds=args.rounds, threads=args.threads
        )
    save_report(report, args.out, "cpu_table")
    env = report.environment
    ratio = {(r["target"], r["batch"]): r["speedup"] for r in report.ratios()}
    lines = [
        f"| {args.model} (224x224) | batch | p50 ms | p99 ms | images/s | vs PyTorch eager | vs ORT fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        vs_ort = r.throughput_ips / next(
            x.throughput_ips for x in report.rows if x.batch == r.batch and x.target == "ONNX Runtime fp32"
        )
        lines.append(
            f"| {r.target} | {r.batch} | {r.latency_ms.p50:.1f} | {r.latency_ms.p99:.1f} | "
            f"{r.throughput_ips:.1f} | {ratio[(r.target, r.batch)]:.2f}x | {vs_ort:.2f}x |"
        )
    lines += [
        "",
        f"Machine: {env['cpu']}, {env['cpu_cores']} cores, {args.threads} threads everywhere; torch "
        f"{env.get('torch')}, onnxruntime {env.get('onnxruntime-gpu') or env.get('onnxruntime')}; "
        f"{args.rounds} interleaved rounds of {args.duration_s} s per target and batch after {args.warmup_s} s "
        f"warm-up; {env['date']}.",
        "Command: `python benchmarks/cpu_table.py`",
    ]
    atomic_write_text(args.out / "cpu_table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
