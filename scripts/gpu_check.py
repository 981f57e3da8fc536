"""GPU-machine checks for resnet-deploy (run by scripts/gpu_check.sh; under 5 minutes on one GPU).

1. torch CUDA runner for ResNet-50 (fp32, fp16, fp16 + channels_last, + CUDA graphs, bf16) checked
   against the CPU fp32 reference, with a quick latency at batch 8;
2. where TensorRT is importable: build fp16 and int8 engines and check them against their ONNX.
Writes results.json to the output folder and prints a short table last. Parts that cannot run on
this machine (no TensorRT, no onnxscript, ...) are reported as skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def torch_runner_rows() -> list[dict[str, Any]]:
    import torch

    from resnet_deploy import create_model
    from resnet_deploy.runtime.pyt import TorchRunner
    from tests.test_fold import randomize_bn

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = randomize_bn(create_model("resnet50", weights="random", seed=2))
    x = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    with TorchRunner(model) as cpu:
        ref = cpu.infer(x)
    rows = []
    variants: list[tuple[str, dict[str, Any], float]] = [
        ("cuda fp32", {}, 0.99999),
        ("cuda fp16", {"dtype": "fp16"}, 0.999),
        ("cuda fp16 channels_last", {"dtype": "fp16", "channels_last": True}, 0.999),
        ("cuda fp16 channels_last cuda_graphs", {"dtype": "fp16", "channels_last": True, "cuda_graphs": True}, 0.999),
        ("cuda bf16", {"dtype": "bf16"}, 0.99),
    ]
    for name, options, min_cos in variants:
        try:
            with TorchRunner(model, device="cuda", **options) as r:
                out = r.infer(x)
                for _ in range(5):
                    r.infer(x)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(20):
                    r.infer(x)
                ms = (time.perf_counter() - t0) / 20 * 1000
            cos = cosine(out, ref)
            rows.append(
                {
                    "check": f"torch {name}",
                    "cosine_vs_cpu": cos,
                    "max_diff_over_max_logit": float(np.abs(out - ref).max() / np.abs(ref).max()),
                    "ms_batch8_incl_copies": round(ms, 2),
                    "status": "pass" if cos >= min_cos else "FAIL",
                }
            )
        except Exception as e:  # report and go on: one broken variant must not hide the others
            rows.append({"check": f"torch {name}", "status": "FAIL", "error": f"{type(e).__name__}: {e}"})
    return rows


def tensorrt_rows(work: Path) -> list[dict[str, Any]]:
    if importlib.util.find_spec("tensorrt") is None:
        return [{"check": "tensorrt engines", "status": "skipped", "error": "tensorrt is not installed here"}]
    from resnet_deploy import export_onnx
    from resnet_deploy.engine import build_engine
    from resnet_deploy.parity import compare
    from resnet_deploy.precision import quantize_int8, to_fp16

    rows = []
    fp32 = work / "resnet50.onnx"
    export_onnx("resnet50", fp32, weights="random")
    for precision in ("fp16", "int8"):
        try:
            if precision == "fp16":
                src = Path(to_fp16(fp32).path)
            else:
                src = Path(quantize_int8(fp32, calibration="random", count=32, cache=False).path)
            built = build_engine(src, src.with_suffix(".plan"), min_batch=1, opt_batch=8, max_batch=32)
            check = compare(built.path, src, batch_sizes=(1, 8))
            rows.append(
                {
                    "check": f"tensorrt {precision} engine",
                    "status": "pass" if check.passed else "FAIL",
                    "build_seconds": built.sidecar.build_seconds,
                    "tensorrt": built.sidecar.tensorrt_version,
                    "cosine_vs_onnx": min(r.result.cosine_min for r in check.rows),
                }
            )
        except Exception as e:
            rows.append(
                {
                    "check": f"tensorrt {precision} engine",
                    "status": "FAIL",
                    "error": f"{type(e).__name__}: {e}",
                    "trace": traceback.format_exc()[-2000:],
                }
            )
    return rows


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    import torch

    rows: list[dict[str, Any]] = []
    if not torch.cuda.is_available():
        rows.append({"check": "torch cuda runner", "status": "skipped", "error": "torch sees no CUDA GPU"})
    else:
        rows += torch_runner_rows()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows += tensorrt_rows(Path(tmp))
        except Exception as e:
            rows.append({"check": "tensorrt engines", "status": "FAIL", "error": f"{type(e).__name__}: {e}"})
    env = {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    (out / "results.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    print(f"\n{'check':42s} {'status':8s} detail")
    for r in rows:
        detail = r.get("error") or ", ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in r.items()
            if k not in ("check", "status", "trace")
        )
        print(f"{r['check']:42s} {r['status']:8s} {detail}")
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
