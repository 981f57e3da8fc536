"""Accuracy per precision on a real trained model: the handwritten-digits ResNet-20.

Trains the model (benchmarks/digits.py, fixed seed), exports it, converts it to fp16 and to int8
with both recipes and every calibration method (calibrated on the training split's image files),
and evaluates top-1 on the 360 held-out images in ONNX Runtime (CPU).
Usage:  python benchmarks/accuracy.py [--out benchmarks/results] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.digits import WIDTHS, train_digits
from resnet_deploy import export_onnx
from resnet_deploy.precision import quantize_int8, run_onnx, to_fp16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import onnxruntime
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        d = train_digits(work, seed=args.seed)

        fp32 = work / "digits.onnx"
        export_onnx(d.model, fp32)
        ref = run_onnx(fp32, d.x_test)
        base = float((ref.argmax(1) == d.y_test).mean())

        def row(name: str, path: str | Path) -> dict[str, object]:
            logits = run_onnx(Path(path), d.x_test)
            cos = (logits * ref).sum(1) / np.linalg.norm(logits, axis=1) / np.linalg.norm(ref, axis=1)
            return {
                "artifact": name,
                "top1": float((logits.argmax(1) == d.y_test).mean()),
                "size_bytes": Path(path).stat().st_size,
                "cosine_vs_fp32_min": float(cos.min()),
                "cosine_vs_fp32_mean": float(cos.mean()),
                "top1_agreement_vs_fp32": float((logits.argmax(1) == ref.argmax(1)).mean()),
            }

        rows.append({"artifact": "PyTorch fp32", "top1": d.torch_accuracy, "size_bytes": None})
        rows.append(row("ONNX fp32", fp32))
        rows.append(row("ONNX fp16", to_fp16(fp32, work / "digits.fp16.onnx").path))
        for recipe in ("tensorrt", "cpu"):
            for method in ("minmax", "entropy", "percentile"):
                r8 = quantize_int8(
                    fp32,
                    work / f"digits.{recipe}.{method}.int8.onnx",
                    d.train_dir,
                    recipe=recipe,
                    method=method,
                    count=512,
                    cache=False,
                )
                rows.append(row(f"ONNX int8 {recipe} recipe, {method}", r8.path))
    for r in rows:
        r["delta_vs_fp32_points"] = round((r["top1"] - base) * 100, 2)
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "model": f"resnet20, widths {WIDTHS}, digits 8x8 -> 32x32",
        "test_images": len(d.y_test),
        "train_seconds": round(d.train_seconds, 1),
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    lines = [
        "| artifact | top-1 (360 held-out digits) | vs fp32 (points) | same top-1 as fp32 | logit cosine vs fp32 (min / mean) | file |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        size = f"{r['size_bytes'] / 1e3:.0f} kB" if r["size_bytes"] else "-"
        agree = f"{r['top1_agreement_vs_fp32'] * 100:.1f}%" if "top1_agreement_vs_fp32" in r else "-"
        cos = f"{r['cosine_vs_fp32_min']:.5f} / {r['cosine_vs_fp32_mean']:.5f}" if "cosine_vs_fp32_min" in r else "-"
        lines.append(
            f"| {r['artifact']} | {r['top1'] * 100:.2f}% | {r['delta_vs_fp32_points']:+.2f} | {agree} | {cos} | {size} |"
        )
    lines += [
        "",
        f"{env['model']}; trained {env['train_seconds']} s; torch {env['torch']}, onnxruntime "
        f"{env['onnxruntime']}; seed {args.seed}; {env['date']}.",
        "Command: `python benchmarks/accuracy.py`",
    ]
    (args.out / "accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
