"""What `resnet-deploy export` costs per model: wall time per stage, peak memory, file size.

Each export runs in a fresh process (peak RSS is per process) with fixed thread counts.
Usage:  python benchmarks/export_cost.py [--models resnet18,resnet50] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
t0 = time.perf_counter()
from resnet_deploy import export_onnx
r = export_onnx(sys.argv[1], sys.argv[2], weights="random")
print(json.dumps({"model": sys.argv[1], "seconds": r.seconds, "wall_s": time.perf_counter() - t0,
                  "peak_mib": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024,
                  "size_mb": r.file_size_bytes / 1e6, "nodes": r.num_nodes, "params": r.params, "gmacs": r.gmacs,
                  "diff_to_scale": max(p.diff_to_scale for p in r.parity), "passed": r.parity_passed}))
"""


def environment(threads: int) -> dict[str, object]:
    import onnx
    import onnxruntime
    import torch

    from resnet_deploy.system import cpu_count, cpu_model

    return {
        "cpu": cpu_model(),
        "cores": cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": threads,
        "ort_intra_op_threads": cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="resnet18,resnet34,resnet50,resnet101,resnet152,resnet20,resnet110")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    rows = []
    env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, name, f"{tmp}/{name}.onnx", str(args.threads)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{name:10s} {row['wall_s']:6.1f} s  peak {row['peak_mib']:7.0f} MiB  {row['size_mb']:6.1f} MB  "
                f"diff/scale {row['diff_to_scale']:.1e}",
                flush=True,
            )
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "environment": environment(args.threads),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "| model | params | GMACs | export wall (s) | torch export (s) | check (s) | ORT verify (s) | peak RSS (MiB) | file (MB) | max diff / max logit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["seconds"]
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['gmacs']:.2f} | {r['wall_s']:.1f} | {s['export']:.1f} | "
            f"{s['check']:.1f} | {s['verify']:.1f} | {r['peak_mib']:.0f} | {r['size_mb']:.1f} | {r['diff_to_scale']:.1e} |"
        )
    e = result["environment"]
    lines += [
        "",
        f"Machine: {e['cpu']}, {e['cores']} cores; torch {e['torch']}, onnx {e['onnx']}, "
        f"onnxruntime {e['onnxruntime']}; {args.threads} threads; {e['date']}.",
        f"Command: `python {result['command']}`",
    ]
    (args.out / "export_cost.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
