"""Full-size exports: ResNet-152 within its memory budget, measured in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# VmHWM is this process's own peak. (ru_maxrss is not: Linux carries the forking parent's
# high-water mark across fork + exec, so it would report pytest's size, not the export's.)
SCRIPT = """
import json, sys
from resnet_deploy import export_onnx
report = export_onnx("resnet152", sys.argv[1], weights="random")
peak_mib = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"passed": report.parity_passed, "size": report.file_size_bytes,
                  "conv": report.nodes_by_op["Conv"], "peak_mib": peak_mib}))
"""


@pytest.mark.slow
def test_resnet152_exports_under_2_5_gb_peak(tmp_path: Path) -> None:
    env = {**os.environ, "RESNET_DEPLOY_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "r152.onnx")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["passed"] and result["conv"] == 155
    assert 230e6 < result["size"] < 250e6  # 60.2 M fp32 parameters inside the file
    assert result["peak_mib"] < 2.5 * 1024, result
