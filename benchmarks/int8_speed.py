"""ONNX Runtime CPU latency of ResNet-50 fp32 vs int8 (both recipes), interleaved, threads fixed.

A first look at what the int8 recipes buy on a CPU (the full benchmark is `resnet-deploy bench`).
Random weights and random calibration: latency does not depend on the values.
Usage:  python benchmarks/int8_speed.py [--threads 2] [--batch 1] [--rounds 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import onnxruntime as ort

from resnet_deploy import export_onnx
from resnet_deploy.precision import quantize_int8
from resnet_deploy.system import cpu_count, cpu_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    os.environ.setdefault("RESNET_DEPLOY_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / f"{args.model}.onnx"
        export_onnx(args.model, fp32, weights="random")
        paths = {"fp32": fp32}
        for recipe in ("cpu", "tensorrt"):
            paths[f"int8 {recipe} recipe"] = Path(
                quantize_int8(
                    fp32, Path(tmp) / f"{recipe}.onnx", "random", recipe=recipe, method="minmax", cache=False
                ).path
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
        x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
        for s in sessions.values():
            for _ in range(3):
                s.run(None, {"input": x})
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.rounds):  # interleaved: machine drift hits every variant alike
            for k, s in sessions.items():
                t = time.perf_counter()
                for _ in range(args.iters):
                    s.run(None, {"input": x})
                times[k].append((time.perf_counter() - t) / args.iters * 1000)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rows = [
        {
            "variant": k,
            "median_ms": round(m, 2),
            "p90_ms": round(float(np.percentile(times[k], 90)), 2),
            "speedup_vs_fp32": round(med["fp32"] / m, 2),
        }
        for k, m in med.items()
    ]
    cpu = cpu_model()
    env = {
        "cpu": cpu,
        "cores": cpu_count(),
        "threads": args.threads,
        "batch": args.batch,
        "model": args.model,
        "onnxruntime": ort.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_speed.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    lines = [
        f"| {args.model}, batch {args.batch}, {args.threads} threads | median ms | p90 ms | vs fp32 |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| ONNX Runtime {r['variant']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['speedup_vs_fp32']:.2f}x |"
        for r in rows
    ]
    lines += [
        "",
        f"{cpu}, {env['cores']} cores; onnxruntime {ort.__version__}; {args.rounds} interleaved rounds of "
        f"{args.iters}; {env['date']}.",
        "Command: `python benchmarks/int8_speed.py`",
    ]
    (args.out / "int8_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
