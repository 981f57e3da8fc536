"""Which parity metric can fail? (groundwork for issue 13's discriminative gate)

Random-weight ResNet logits of *different* images are nearly parallel (cosine >= 0.995), so the
cosine gate passes a candidate that computes on the wrong input. This script measures, for good
conversions (fp16, int8 with each recipe/method) and for wrong candidates (the fp32 model on the
mirrored or shifted input, another model's weights, outputs of the right model in the wrong order),
each candidate metric over one batch of inputs:

- ``cos_min``: the current gate, the worst per-sample cosine of raw logits;
- ``sqnr_db``: 10 log10( sum_i ||r_i - mean(r)||^2 / sum_i ||c_i - r_i||^2 ), the error against the
  spread of the reference logits across samples (the common mode removed from the signal only);
- ``worst_db``: the same per sample against the mean spread, worst sample;
- ``retrieval``: the fraction of samples whose candidate logits are nearest to their own reference
  logits among all the batch's (nearest-reference retrieval);
- ``top1``: top-1 agreement.

Run: ``OMP_NUM_THREADS=2 python benchmarks/parity_metric.py`` (writes benchmarks/results/parity_metric.md).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_deploy import export_onnx, quantize_int8, to_fp16
from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner

N = 64  # samples per batch


def metrics(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    ref, cand = ref.astype(np.float64), cand.astype(np.float64)
    spread = ((ref - ref.mean(0)) ** 2).sum(1)  # per sample, around the batch mean
    err = ((cand - ref) ** 2).sum(1)
    cos = (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1))
    dist = ((cand[:, None, :] - ref[None, :, :]) ** 2).sum(2)
    tiny = 1e-30
    return {
        "cos_min": float(cos.min()),
        "sqnr_db": float(10 * np.log10(spread.sum() / max(err.sum(), tiny))),
        "worst_db": float(10 * np.log10(spread.mean() / max(err.max(), tiny))),
        "retrieval": float((dist.argmin(1) == np.arange(len(ref))).mean()),
        "top1": float((ref.argmax(1) == cand.argmax(1)).mean()),
    }


def run(path: Path, x: np.ndarray) -> np.ndarray:
    with OnnxRuntimeRunner(path, threads=2) as r:
        return np.asarray(r.infer_all(x), dtype=np.float32)


def cases(name: str, model: Any, x: np.ndarray, calib: Any, folder: Path) -> list[dict[str, Any]]:
    """Good conversions and wrong candidates of one model, all against its fp32 ONNX."""
    fp32 = folder / f"{name}.onnx"
    export_onnx(model, fp32, weights="random" if isinstance(model, str) else None)
    ref = run(fp32, x)
    rows: list[dict[str, Any]] = []

    def add(kind: str, label: str, cand: np.ndarray) -> None:
        rows.append({"model": name, "kind": kind, "candidate": label, **metrics(ref, cand)})

    fp16 = folder / f"{name}.fp16.onnx"
    to_fp16(fp32, fp16, allow_mismatch=True)
    add("good", "fp16", run(fp16, x))
    for recipe, method in (
        ("tensorrt", "entropy"),
        ("tensorrt", "minmax"),
        ("tensorrt", "percentile"),
        ("cpu", "entropy"),
    ):
        q = folder / f"{name}.{recipe}.{method}.int8.onnx"
        quantize_int8(fp32, q, calib, recipe=recipe, method=method, count=64, cache=False, allow_mismatch=True)
        add("good", f"int8 {recipe} {method}", run(q, x))
    wrong: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        ("fp32 on the mirrored image", lambda a: run(fp32, np.ascontiguousarray(a[..., ::-1]))),
        ("fp32 on the image shifted 4 px", lambda a: run(fp32, np.ascontiguousarray(np.roll(a, 4, axis=-1)))),
        ("fp32, samples in the wrong order", lambda a: run(fp32, a)[np.roll(np.arange(len(a)), 1)]),
    ]
    for label, fn in wrong:
        add("wrong", label, fn(x))
    if isinstance(model, str):
        other = folder / f"{name}.seed1.onnx"
        export_onnx(model, other, weights="random", seed=1)
        add("wrong", "fp32 with other random weights", run(other, x))
    return rows


def main() -> None:
    from benchmarks.digits import train_digits

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        digits = train_digits(folder / "digits")
        x_digits = digits.x_test[:N].astype(np.float32)
        rows += cases("digits (trained r20)", digits.model, x_digits, digits.x_train[:256].astype(np.float32), folder)
        x32 = rng.standard_normal((N, 3, 32, 32)).astype(np.float32)
        rows += cases("resnet20 (random)", "resnet20", x32, "random", folder)
    cols = ["cos_min", "sqnr_db", "worst_db", "retrieval", "top1"]
    lines = [
        "# Parity metrics: which ones can fail (groundwork for issue 13)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.processor() or platform.machine()}, "
        f"{N} samples per batch (digits: held-out scans; random models: seeded N(0,1) inputs), "
        "every candidate against its fp32 ONNX in ONNX Runtime (CPU). "
        f"Command: `OMP_NUM_THREADS=2 python benchmarks/parity_metric.py` ({time.perf_counter() - t0:.0f} s).",
        "",
        "| model | kind | candidate | " + " | ".join(cols) + " |",
        "|---|---|---|" + "---:|" * len(cols),
    ]
    for r in rows:
        vals = [f"{r[c]:.4f}" if c == "cos_min" else f"{r[c]:.1f}" if c.endswith("db") else f"{r[c]:.2f}" for c in cols]
        lines.append(f"| {r['model']} | {r['kind']} | {r['candidate']} | " + " | ".join(vals) + " |")
    good = [r for r in rows if r["kind"] == "good"]
    bad = [r for r in rows if r["kind"] == "wrong"]
    lines += ["", "Separation (the worst good candidate against the best wrong one):", ""]
    for c in cols:
        worst_good, best_bad = min(r[c] for r in good), max(r[c] for r in bad)
        lines.append(
            f"- `{c}`: good >= {worst_good:.4g}, wrong <= {best_bad:.4g}: "
            + ("separates" if worst_good > best_bad else "does NOT separate")
        )
    out = Path(__file__).parent / "results" / "parity_metric.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
