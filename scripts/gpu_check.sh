#!/usr/bin/env bash
# GPU-machine check, under 5 minutes on one GPU. Usage: scripts/gpu_check.sh [LOG_DIR]
#   1. environment (GPU, driver, CUDA, torch, onnx, onnxruntime, TensorRT if any)
#   2. the gpu- and tensorrt-marked tests (those without TensorRT skip with a reason)
#   3. benchmarks/gpu_table.py (short): torch CUDA fp32 / fp16+channels_last / +CUDA graphs latency
#   4. scripts/gpu_check.py: torch CUDA runner variants vs the CPU reference (ResNet-50), and
#      fp16/int8 TensorRT engines built and checked where TensorRT is importable
# Works on a machine with torch+CUDA, onnx and a CPU-only onnxruntime, no TensorRT, no network:
# it then says which parts it skipped. Full logs go to LOG_DIR (default ./gpu_check_out, or $OUT).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG="${1:-${OUT:-$PWD/gpu_check_out}}"
mkdir -p "$LOG"
export RESNET_DEPLOY_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || echo "nvidia-smi: not available"
  "$PY" - <<'PY'
import importlib.util
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for mod in ("onnx", "onnxruntime", "onnxscript", "tensorrt", "typer", "rich", "PIL", "pytest"):
    if importlib.util.find_spec(mod) is None:
        print(f"{mod}: not installed")
    else:
        m = __import__(mod)
        print(mod, getattr(m, "__version__", "?"))
PY
} > "$LOG/environment.txt" 2>&1
cat "$LOG/environment.txt"

rc=0
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 180 "$PY" -m pytest -m "gpu or tensorrt" -p no:cacheprovider -q -rs --junitxml="$LOG/junit.xml" \
    tests/test_gpu.py tests/test_runners.py tests/test_engine.py tests/test_tensorrt_precision.py > "$LOG/pytest.txt" 2>&1
  rc=$?
  tail -n 15 "$LOG/pytest.txt"
else
  echo "pytest: not installed here, marked tests skipped" | tee "$LOG/pytest.txt"
fi
timeout 120 "$PY" benchmarks/gpu_table.py --batch-sizes 1,8,64 --duration-s 1 --rounds 2 --no-compile \
  --out "$LOG" > "$LOG/gpu_table.txt" 2>&1 || echo "gpu_table: failed or skipped (see $LOG/gpu_table.txt)"
tail -n 16 "$LOG/gpu_table.txt"
timeout 240 "$PY" scripts/gpu_check.py "$LOG" > "$LOG/gpu_check.txt" 2>&1
rc2=$?
tail -n 12 "$LOG/gpu_check.txt"
[ "$rc" -eq 0 ] && [ "$rc2" -eq 0 ]
