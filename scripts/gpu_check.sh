#!/usr/bin/env bash
# GPU-machine check, under 5 minutes on one GPU. Usage: scripts/gpu_check.sh [LOG_DIR]
#   1. environment (GPU, driver, CUDA, torch, onnx, onnxruntime, TensorRT if any)
#   2. the gpu- and tensorrt-marked tests (those without TensorRT skip with a reason), among them
#      the engine's layer report (tests/test_gpu.py: every conv of an int8 resnet20 engine in int8)
#   2b. where TensorRT is importable: 'resnet-deploy build --strict-precision --json' of an int8
#      resnet20 (layer3.2.conv2 excluded where convert has --exclude); TensorRT's layer information
#      (r20.int8.plan.layers.json) and the build report (engine_layers.json) are kept in LOG
#   3. benchmarks/gpu_table.py (short): torch CUDA fp32 / fp16+channels_last / +CUDA graphs latency
#   4. scripts/gpu_check.py: torch CUDA runner variants vs the CPU reference (ResNet-50), and
#      fp16/int8 TensorRT engines built and checked where TensorRT is importable
#   5. where TensorRT is importable (under 60 s): the resnet50 fp16 engine of step 4 timed as
#      trtexec times it, batch 1 and 8, plain / CUDA graph / 2 streams / 2 streams + CUDA graphs,
#      NVML clocks, power and clocks-event reasons before and after each point (trt_timing.json)
# environment.txt also holds one NVML snapshot (nvidia-ml-py; the reason where it cannot read one).
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
import json
try:
    from resnet_deploy.gpu_env import nvml_probe
    snap, why = nvml_probe()
    print("nvml", json.dumps(snap) if snap is not None else f"unavailable: {why}")
except Exception as e:  # the environment block must never stop the check
    print(f"nvml: {type(e).__name__}: {e}")
PY
} > "$LOG/environment.txt" 2>&1
cat "$LOG/environment.txt"

rc=0
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 180 "$PY" -m pytest -m "gpu or tensorrt" -p no:cacheprovider -q -rs --junitxml="$LOG/junit.xml" \
    tests/test_gpu.py tests/test_runners.py tests/test_engine.py tests/test_tensorrt_precision.py \
    tests/test_gpu_timing.py > "$LOG/pytest.txt" 2>&1
  rc=$?
  tail -n 15 "$LOG/pytest.txt"
else
  echo "pytest: not installed here, marked tests skipped" | tee "$LOG/pytest.txt"
fi
rc3=0
if "$PY" -c "import tensorrt" 2>/dev/null; then
  W="$(mktemp -d)"
  EXCLUDE=()
  "$PY" -m resnet_deploy convert --help 2>/dev/null | grep -q -- "--exclude" && EXCLUDE=(--exclude layer3.2.conv2)
  {
    timeout 60 "$PY" -m resnet_deploy export -m resnet20 -w random -o "$W/r20.onnx" &&
      timeout 60 "$PY" -m resnet_deploy convert "$W/r20.onnx" --precision int8 --calib random ${EXCLUDE[@]+"${EXCLUDE[@]}"} \
        -o "$W/r20.int8.onnx" &&
      timeout 120 "$PY" -m resnet_deploy build "$W/r20.int8.onnx" --min-batch 1 --opt-batch 4 --max-batch 8 \
        --strict-precision --json > "$LOG/engine_layers.json"
  } > "$LOG/engine_layers.txt" 2>&1
  rc3=$?
  cp "$W/r20.int8.plan.layers.json" "$LOG/" 2>/dev/null
  rm -rf "$W"
  echo "engine layer report (build --strict-precision ${EXCLUDE[*]-}): exit $rc3; see $LOG/engine_layers.txt"
  tail -n 5 "$LOG/engine_layers.txt"
else
  echo "engine layer report: skipped (tensorrt is not installed here)" | tee "$LOG/engine_layers.txt"
fi
timeout 120 "$PY" benchmarks/gpu_table.py --batch-sizes 1,8,64 --duration-s 1 --rounds 2 --no-compile \
  --out "$LOG" > "$LOG/gpu_table.txt" 2>&1 || echo "gpu_table: failed or skipped (see $LOG/gpu_table.txt)"
tail -n 16 "$LOG/gpu_table.txt"
PLANS="$(mktemp -d)"
timeout 240 "$PY" scripts/gpu_check.py "$LOG" --work "$PLANS" > "$LOG/gpu_check.txt" 2>&1
rc2=$?
tail -n 12 "$LOG/gpu_check.txt"
rc4=0
if "$PY" -c "import tensorrt" 2>/dev/null; then
  timeout 60 "$PY" scripts/gpu_check.py --trt-timing "$PLANS/resnet50.fp16.plan" "$LOG" > "$LOG/trt_timing.txt" 2>&1
  rc4=$?
  [ "$rc4" -eq 124 ] && echo "trt timing: stopped at its 60 s limit" >> "$LOG/trt_timing.txt"
  echo "tensorrt timing (CUDA graphs, 2 streams, NVML): exit $rc4; see $LOG/trt_timing.json"
  tail -n 10 "$LOG/trt_timing.txt"
else
  echo "tensorrt timing: skipped (tensorrt is not installed here)" | tee "$LOG/trt_timing.txt"
fi
rm -rf "$PLANS"
[ "$rc" -eq 0 ] && [ "$rc2" -eq 0 ] && [ "$rc3" -eq 0 ] && [ "$rc4" -eq 0 ]
