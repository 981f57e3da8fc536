"""The README's CPU performance table: ResNet-50, every CPU path side by side in one run.

PyTorch eager fp32, ONNX Runtime fp32 / int8 (cpu recipe) / int8 (tensorrt recipe), and OpenVINO
(the openvino extra) on the same fp32 and int8 ONNX files, measured by `resnet_deploy.bench` in
interleaved windows with fixed thread counts and perf_analyzer's stability rule (``--stable``: each
point until its last 3 windows' medians agree within 5%, or its time limit; the table says which
points settled), so that the ratios are comparable within the run. Random weights and random
calibration: speed does not depend on them.
Usage:  python benchmarks/cpu_table.py [--threads 2] [--batch-sizes 1] [--window-s 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resnet_deploy import create_model, export_onnx
from resnet_deploy.bench import Target, benchmark, save_report
from resnet_deploy.models import count_macs
from resnet_deploy.precision import quantize_int8
from resnet_deploy.reports import atomic_write_text
from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner
from resnet_deploy.runtime.pyt import TorchRunner
from resnet_deploy.stability import Stability


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--window-s", type=float, default=2.0, help="seconds per measuring window")
    ap.add_argument("--max-duration-s", type=float, default=30.0, help="per point, before giving up on stability")
    ap.add_argument("--stability-pct", type=float, default=5.0)
    ap.add_argument("--warmup-s", type=float, default=3.0)
    ap.add_argument("--no-openvino", action="store_true")
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
        if not args.no_openvino:
            from resnet_deploy.runtime.openvino import OpenVINORunner

            targets += [
                Target("OpenVINO fp32", OpenVINORunner(fp32, threads=args.threads, hint="latency"), macs),
                Target(
                    "OpenVINO int8 (cpu recipe)", OpenVINORunner(cpu8.path, threads=args.threads, hint="latency"), macs
                ),
                Target(
                    "OpenVINO int8 (tensorrt recipe)",
                    OpenVINORunner(trt8.path, threads=args.threads, hint="latency"),
                    macs,
                ),
            ]
        rule = Stability(args.stability_pct, 3, args.max_duration_s)
        report = benchmark(
            targets,
            sizes,
            warmup_s=args.warmup_s,
            duration_s=args.window_s,
            rounds=1,  # with a stability rule each round is one window of duration_s / rounds
            threads=args.threads,
            stability=rule,
        )
    save_report(report, args.out, "cpu_table")
    env = report.environment
    ratio = {(r["target"], r["batch"]): r["speedup"] for r in report.ratios()}
    lines = [
        f"| {args.model} (224x224) | batch | p50 ms | p99 ms | images/s | vs PyTorch eager | vs ORT fp32 "
        "| windows | spread | stable |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report.rows:
        vs_ort = r.throughput_ips / next(
            x.throughput_ips for x in report.rows if x.batch == r.batch and x.target == "ONNX Runtime fp32"
        )
        lines.append(
            f"| {r.target} | {r.batch} | {r.latency_ms.p50:.1f} | {r.latency_ms.p99:.1f} | "
            f"{r.throughput_ips:.1f} | {ratio[(r.target, r.batch)]:.2f}x | {vs_ort:.2f}x | {r.windows} | "
            f"{r.spread_pct or 0.0:.1f}% | {'yes' if r.stable else '**no**'} |"
        )
    lines += ["", *_targets_summary(report.rows)]
    lines += [
        "",
        f"Machine: {env['cpu']}, {env['cpu_cores']} cores ({_isa(env.get('cpu_isa'))}), {args.threads} threads "
        "everywhere; torch "
        f"{env.get('torch')}, onnxruntime {env.get('onnxruntime-gpu') or env.get('onnxruntime')}, openvino "
        f"{env.get('openvino', 'not installed')}; interleaved windows of {args.window_s} s per target after "
        f"{args.warmup_s} s warm-up, each point until its last 3 windows' medians agree within "
        f"{args.stability_pct}% (stable) or {args.max_duration_s} s of measuring; {env['date']}.",
        f"Command: `python benchmarks/cpu_table.py --threads {args.threads} --batch-sizes {args.batch_sizes}`",
    ]
    atomic_write_text(args.out / "cpu_table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _isa(isa: dict[str, bool] | None) -> str:
    if not isa:
        return "instruction sets unknown"
    have = [k for k, v in isa.items() if v]
    lacks = [k for k, v in isa.items() if not v]
    return f"has {', '.join(have) or 'none of them'}; lacks {', '.join(lacks) or 'none'}"


def _targets_summary(rows: list[Any]) -> list[str]:
    """Issue 14's targets at each batch: the best CPU path against PyTorch eager fp32 and ONNX
    Runtime fp32, and ONNX Runtime against OpenVINO on the same int8 ONNX."""
    out = []
    for batch in sorted({r.batch for r in rows}):
        at = {r.target: r for r in rows if r.batch == batch}
        best = max(at.values(), key=lambda r: r.throughput_ips)
        line = (
            f"- batch {batch}: fastest is **{best.target}** ({best.throughput_ips:.1f} images/s): "
            f"{best.throughput_ips / at['PyTorch eager fp32'].throughput_ips:.2f}x PyTorch eager fp32, "
            f"{best.throughput_ips / at['ONNX Runtime fp32'].throughput_ips:.2f}x ONNX Runtime fp32"
        )
        ov = at.get("OpenVINO int8 (cpu recipe)")
        if ov is not None:
            ort = at["ONNX Runtime int8 (cpu recipe)"]
            line += (
                f"; ONNX Runtime int8 is {ort.throughput_ips / ov.throughput_ips:.2f}x OpenVINO on the same int8 ONNX"
            )
        out.append(line + ".")
    return out


if __name__ == "__main__":
    main()
