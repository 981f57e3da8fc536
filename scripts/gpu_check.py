"""GPU-machine checks for resnet-deploy (run by scripts/gpu_check.sh; under 5 minutes on one GPU).

1. torch CUDA runner for ResNet-50 (fp32, fp16, fp16 + channels_last, + CUDA graphs, bf16) checked
   against the CPU fp32 reference, with a quick latency at batch 8;
2. where TensorRT is importable: build fp16 and int8 engines and check them against their ONNX
   (``--work DIR`` keeps them there, for step 3).
Writes results.json to the output folder and prints a short table last. Parts that cannot run on
this machine (no TensorRT, no onnxscript, ...) are reported as skipped with the reason.

3. ``gpu_check.py --trt-timing PLAN OUT``: the TensorRT runner timed as trtexec times it, at batch 1
   and 8: plain enqueue, CUDA graph, 2 streams, 2 streams + CUDA graphs; wall and CUDA-event
   compute per call, images per call (batch x streams), logits against the plain enqueue (must be
   identical), NVML snapshots (clocks, power, clocks-event reasons) before and after each point.
   Writes trt_timing.json. Without PLAN on disk it builds a resnet50 fp16 engine (batch 1-8).
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


TIMING_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("plain enqueue", {}),
    ("cuda graph", {"cuda_graph": True}),
    ("2 streams", {"streams": 2}),
    ("2 streams + cuda graphs", {"streams": 2, "cuda_graph": True}),
]


def _fp16_plan(plan: Path) -> Path:
    """``plan`` if step 2 left it, else a resnet50 fp16 engine built beside it (batch 1-8)."""
    if plan.is_file():
        return plan
    from resnet_deploy import export_onnx
    from resnet_deploy.engine import build_engine
    from resnet_deploy.precision import to_fp16

    plan.parent.mkdir(parents=True, exist_ok=True)
    fp32 = plan.parent / "resnet50.onnx"
    export_onnx("resnet50", fp32, weights="random")
    src = Path(to_fp16(fp32).path)
    return Path(build_engine(src, plan, min_batch=1, opt_batch=8, max_batch=8).path)


def timing_point(runner: Any, x: np.ndarray, ref: np.ndarray | None, seconds: float) -> dict[str, Any]:
    """One (variant, batch) point: logits per stream vs the plain enqueue, then infer_timed for
    ``seconds``, NVML read right before and right after the timed loop."""
    from resnet_deploy.gpu_env import nvml_probe

    outs = runner.infer_streams(x)  # also captures the CUDA graphs of this shape
    diff = max(float(np.abs(o - (outs[0] if ref is None else ref)).max()) for o in outs)
    runner.warmup(len(x), iterations=20)
    gpu_start, why = nvml_probe()
    walls, phases = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        phases.append(runner.infer_timed(x))
        walls.append((time.perf_counter() - t0) * 1000)
    gpu_end, _ = nvml_probe()
    wall = np.asarray(walls)
    compute = np.asarray([p["compute"] for p in phases])
    images = len(x) * runner.streams
    return {
        "batch": len(x),
        "streams": runner.streams,
        "images_per_call": images,
        "cuda_graph": runner.describe()["cuda_graph"],
        "calls": len(walls),
        "wall_ms_p50": float(np.median(wall)),
        "compute_ms_p50": float(np.median(compute)),
        "h2d_ms_mean": float(np.mean([p["h2d"] for p in phases])),
        "d2h_ms_mean": float(np.mean([p["d2h"] for p in phases])),
        "ips_wall": images / (float(wall.mean()) / 1000),
        "ips_compute": images / (float(compute.mean()) / 1000),
        "max_abs_diff_vs_plain": diff,
        "status": "pass" if diff == 0.0 and bool((compute <= wall).all()) else "FAIL",
        "gpu_start": gpu_start if gpu_start is not None else {"unavailable": why},
        "gpu_end": gpu_end,
    }


def trt_timing(plan: Path, out: Path, seconds: float = 1.0) -> int:
    """Step 3 (see the module docstring): writes OUT/trt_timing.json and prints a table."""
    if importlib.util.find_spec("tensorrt") is None:
        print("tensorrt timing: skipped (tensorrt is not installed here)")
        return 0
    from resnet_deploy.runtime.trt import TensorRTRunner

    out.mkdir(parents=True, exist_ok=True)
    plan = _fp16_plan(plan)
    rows: list[dict[str, Any]] = []
    refs: dict[int, np.ndarray] = {}
    for name, options in TIMING_VARIANTS:
        try:
            with TensorRTRunner(plan, **options) as r:
                for batch in (1, 8):
                    x = r.preprocess.random(batch, np.random.default_rng(batch))
                    row = {"variant": name, **timing_point(r, x, refs.get(batch), seconds)}
                    refs.setdefault(batch, r.infer(x))
                    rows.append(row)
        except Exception as e:  # one broken variant must not hide the others
            rows.append({"variant": name, "status": "FAIL", "error": f"{type(e).__name__}: {e}"})
    (out / "trt_timing.json").write_text(json.dumps({"plan": str(plan), "rows": rows}, indent=2) + "\n")
    print(f"{'variant':26s} {'batch':>5s} {'img/call':>8s} {'wall p50':>9s} {'compute':>8s} {'img/s':>9s}  status")
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:26s} {'':>5s} {'':>8s} {'':>9s} {'':>8s} {'':>9s}  FAIL {r['error']}")
            continue
        slowed = (r["gpu_end"] or {}).get("slowed_by") or []
        print(
            f"{r['variant']:26s} {r['batch']:5d} {r['images_per_call']:8d} {r['wall_ms_p50']:9.3f} "
            f"{r['compute_ms_p50']:8.3f} {r['ips_wall']:9.0f}  {r['status']} {r['cuda_graph']}"
            + (f" slowed by {','.join(slowed)}" if slowed else "")
        )
    return 1 if any(r["status"] == "FAIL" for r in rows) else 0


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--trt-timing"]:
        if len(args) != 3:
            print("usage: gpu_check.py --trt-timing PLAN OUT", file=sys.stderr)
            return 2
        return trt_timing(Path(args[1]), Path(args[2]))
    work_dir = None
    if "--work" in args:
        i = args.index("--work")
        work_dir = Path(args[i + 1])
        del args[i : i + 2]
    out = Path(args[0] if args else "gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    import torch

    rows: list[dict[str, Any]] = []
    if not torch.cuda.is_available():
        rows.append({"check": "torch cuda runner", "status": "skipped", "error": "torch sees no CUDA GPU"})
    else:
        rows += torch_runner_rows()
    with tempfile.TemporaryDirectory() as tmp:
        work = work_dir or Path(tmp)  # --work DIR: the engines stay there for --trt-timing
        work.mkdir(parents=True, exist_ok=True)
        try:
            rows += tensorrt_rows(work)
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
