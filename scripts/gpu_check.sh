#!/usr/bin/env bash
# Run on a GPU machine (e.g. the lent H200): the GPU- and TensorRT-marked tests plus a quick export,
# writing everything it measured to $OUT (or ./gpu_check_out). Usage: scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
export RESNET_DEPLOY_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
  python -c "import torch, onnx, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available()); print('onnx', onnx.__version__, 'onnxruntime', o.__version__, o.get_available_providers())"
  python -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 || true
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
python -m pytest -m "gpu or tensorrt" -p no:cacheprovider -q -rs --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/pytest.txt"
rc=${PIPESTATUS[0]}
python -m resnet_deploy.cli export --depth 50 -o "$OUT/resnet50.onnx" --json > "$OUT/export_resnet50.json" 2> "$OUT/export_resnet50.err"
rm -f "$OUT/resnet50.onnx"
exit "$rc"
