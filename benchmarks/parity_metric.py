"""The parity gate's evidence: every good conversion passes its precision's default gate, every
wrong candidate fails, and by how much (issue 13).

Random-weight ResNet logits of *different* images are nearly parallel (cosine >= 0.98), so a
cosine gate passes a candidate that computes on the wrong input. The gate (``metrics.Tolerance``,
thresholds in ``precisions.PRECISIONS``) adds the SQNR of the error against the reference's spread
across samples and nearest-reference retrieval. This script measures, for four models:

- the trained digits ResNet-20 (benchmarks/digits.py) on its real held-out test images,
- resnet20 with random weights on smooth random colour blobs (32x32),
- resnet18 with random weights on blobs at 64x64,
- resnet50 with random weights on blobs at 96x96,

the good conversions (fp16; int8 tensorrt recipe with each calibration method in the default
layout, fp16 between the Q/DQ pairs and the classifier in float, and in the old one, fp32 between
the pairs and the classifier quantized; int8 cpu recipe with entropy), each calibrated on its own
image folder (count 128, the held-out images beyond it), and the wrong candidates (the fp32 model
on the mirrored image, on the image shifted 4 px, its outputs for the samples in the wrong order,
other weights), each over one batch of ``N`` images against the fp32 ONNX in ONNX Runtime (CPU):

- ``cos_min``: the worst per-sample cosine of raw logits (the old gate, now a floor);
- ``sqnr_db``: 10 log10( sum_i ||r_i - mean(r)||^2 / sum_i ||c_i - r_i||^2 ) (``compare_outputs``);
- ``worst_db``: the same per sample against the mean spread, worst sample (not gated);
- ``retrieval``: the fraction of samples whose candidate row is nearest its own reference row;
- ``top1``: top-1 agreement;

and the verdict of the default gate, ``precision_spec(p).gate("images", trained)``: a good
conversion under its own precision's gate, a wrong candidate under fp32's (what it pretends to be)
and under fp16's and int8's (a wrong candidate could claim to be any precision; fp32 on the wrong
input is the best case of a wrong int8 candidate, which would add its quantization error).
The gate is judged on batches of 8 or more, so each candidate is also judged on the batch's 8
disjoint batches of 8 samples (the smallest judged batch, where a wrong candidate's retrieval
is likeliest to pass by chance).

Run: ``OMP_NUM_THREADS=2 python benchmarks/parity_metric.py`` (writes benchmarks/results/parity_metric.md).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_deploy import export_onnx, quantize_int8, to_fp16
from resnet_deploy.calibration import CACHE_ENV, HELD_OUT
from resnet_deploy.data import Preprocess, load_image
from resnet_deploy.metrics import MIN_JUDGED_SAMPLES, ParityResult, Tolerance, compare_outputs
from resnet_deploy.onnx_io import ArtifactMeta, load_onnx
from resnet_deploy.precisions import precision_spec
from resnet_deploy.runtime.onnxrt import OnnxRuntimeRunner

N = 64  # samples per judged batch (check's default --max-images)
CALIB_COUNT = 128
THREADS = 2
GATES = ("fp32", "fp16", "int8")
COMMAND = "OMP_NUM_THREADS=2 python benchmarks/parity_metric.py"


def environment(command: str, seconds: float) -> list[str]:
    """The results file's header lines: date, machine, versions, command, runtime."""
    import onnxruntime
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs visible, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, ONNX Runtime intra-op {THREADS}",
        f"- python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}",
        f"- command: `{command}`",
        f"- runtime: {seconds:.0f} s",
    ]


def worst_db(ref: NDArray[Any], cand: NDArray[Any]) -> float:
    ref, cand = ref.astype(np.float64), cand.astype(np.float64)
    spread = ((ref - ref.mean(0)) ** 2).sum(1).mean()
    err = ((cand - ref) ** 2).sum(1).max()
    return float(10 * np.log10(spread / max(err, 1e-30)))


def run(path: Path, x: NDArray[Any]) -> NDArray[Any]:
    with OnnxRuntimeRunner(path, threads=THREADS) as r:
        return np.asarray(r.infer_all(x), dtype=np.float32)


def failed_criteria(r: ParityResult, tol: Tolerance) -> list[str]:
    """Which criteria of ``tol`` the result fails (empty: it passes)."""
    out = []
    if tol.scale_rtol is not None and not r.diff_to_scale <= tol.scale_rtol:
        out.append("rtol")
    if tol.min_cosine is not None and not r.cosine_min >= tol.min_cosine:
        out.append("cos")
    if tol.min_top1_agreement is not None and not r.top1_agreement >= tol.min_top1_agreement:
        out.append("top1")
    if r.judged_across_samples:
        if tol.min_sqnr_db is not None and r.sqnr_db is not None and not r.sqnr_db >= tol.min_sqnr_db:
            out.append("sqnr")
        if tol.min_retrieval is not None and r.retrieval is not None and not r.retrieval >= tol.min_retrieval:
            out.append("retr")
    assert (not out) == r.passed, (out, r)
    return out


@dataclass
class Row:
    model: str
    trained: bool
    kind: str  # good | wrong
    candidate: str
    precision: str  # good: its precision; wrong: the fp32 model
    result: ParityResult  # under fp32's gate (all numbers; the verdict per gate is in verdicts)
    worst_db: float
    verdicts: dict[str, list[str]]  # gate -> failed criteria
    chunks: dict[str, int]  # gate -> how many 8-sample batches pass
    chunk_info: dict[str, list[tuple[float | None, list[str]]]]  # gate -> per batch of 8: SQNR, failed criteria

    def gates(self) -> tuple[str, ...]:
        return (self.precision,) if self.kind == "good" else GATES


def judge(
    model: str, trained: bool, kind: str, label: str, precision: str, ref: NDArray[Any], cand: NDArray[Any]
) -> Row:
    gates = (precision,) if kind == "good" else GATES
    verdicts, chunks, info = {}, {}, {}
    result = compare_outputs(ref, cand, precision_spec("fp32").gate("images", trained))
    for g in gates:
        tol = precision_spec(g).gate("images", trained)
        verdicts[g] = failed_criteria(compare_outputs(ref, cand, tol), tol)
        parts = range(0, len(ref) - MIN_JUDGED_SAMPLES + 1, MIN_JUDGED_SAMPLES)
        judged = [
            compare_outputs(ref[i : i + MIN_JUDGED_SAMPLES], cand[i : i + MIN_JUDGED_SAMPLES], tol) for i in parts
        ]
        chunks[g] = sum(j.passed for j in judged)
        info[g] = [(j.sqnr_db, failed_criteria(j, tol)) for j in judged]
    return Row(model, trained, kind, label, precision, result, worst_db(ref, cand), verdicts, chunks, info)


def sqnr_floor_evidence(rows: list[Row]) -> list[str]:
    """Where an SQNR floor alone must do the work: per gate with an SQNR floor and per weights kind,
    the worst good conversion's SQNR against the best SQNR of a wrong candidate that every other
    criterion of the gate lets through, on the whole batch and on batches of 8."""
    lines = [
        "| gate | weights | floor now | batch | worst good SQNR | best wrong SQNR that only SQNR catches "
        "| separating floors |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for gate in ("fp16", "int8"):
        for trained in (True, False):
            floor = precision_spec(gate).gate("images", trained).min_sqnr_db
            good = [r for r in rows if r.kind == "good" and r.precision == gate and r.trained == trained]
            wrong = [r for r in rows if r.kind == "wrong" and r.trained == trained]
            whole_good = [r.result.sqnr_db for r in good if r.result.sqnr_db is not None]
            whole_wrong = [
                (r.result.sqnr_db, r)
                for r in wrong
                if set(r.verdicts[gate]) <= {"sqnr"} and r.result.sqnr_db is not None
            ]
            at8_good = [s for r in good for s, _ in r.chunk_info[gate] if s is not None]
            at8_wrong = [(s, r) for r in wrong for s, f in r.chunk_info[gate] if set(f) <= {"sqnr"} and s is not None]
            for batch, g, w in ((f"{N}", whole_good, whole_wrong), ("8", at8_good, at8_wrong)):
                if not g:
                    continue
                lo = min(g)
                if w:
                    hi, who = max(w, key=lambda t: t[0])
                    w_cell = f"{hi:.1f} ({who.candidate}, {who.model})"
                    sep = f"({hi:.1f}, {lo:.1f}] dB" if hi < lo else "**none**"
                else:
                    w_cell, sep = "(none: another criterion catches every one)", f"any <= {lo:.1f} dB"
                lines.append(
                    f"| {gate} | {'trained' if trained else 'random'} | {floor:g} dB | {batch} | {lo:.1f} | {w_cell} | {sep} |"
                )
    return lines


INT8_VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    (f"int8 tensorrt {m}, default layout", "tensorrt", {"method": m}) for m in ("minmax", "entropy", "percentile")
] + [
    (
        f"int8 tensorrt {m}, old layout (fp32 remainder, int8 fc)",
        "tensorrt",
        {"method": m, "high_precision": "fp32", "quantize_classifier": True},
    )
    for m in ("minmax", "entropy", "percentile")
]
INT8_VARIANTS.append(("int8 cpu entropy", "cpu", {"method": "entropy"}))


def cases(
    name: str,
    fp32: Path,
    x: NDArray[Any],
    calib: Path,
    trained: bool,
    others: list[tuple[str, Path]],
    folder: Path,
    torch_model: Any,
) -> list[Row]:
    """Good conversions and wrong candidates of one model, all against its fp32 ONNX."""
    ref = run(fp32, x)
    rows: list[Row] = []

    def add(kind: str, label: str, precision: str, cand: NDArray[Any]) -> None:
        rows.append(judge(name, trained, kind, label, precision, ref, cand))
        r = rows[-1]
        print(f"  {label}: sqnr {r.result.sqnr_db} retr {r.result.retrieval} {r.verdicts}", flush=True)

    import torch

    with torch.no_grad():  # fp32's good candidate: PyTorch itself (what check compares the ONNX with)
        add("good", "PyTorch fp32 (vs its ONNX)", "fp32", torch_model.eval()(torch.from_numpy(x)).numpy())
    stem = fp32.name.removesuffix(".onnx")
    fp16 = folder / f"{stem}.fp16.onnx"
    to_fp16(fp32, fp16, allow_mismatch=True)
    add("good", "fp16", "fp16", run(fp16, x))
    for k, (label, recipe, options) in enumerate(INT8_VARIANTS):
        q = folder / f"{stem}.v{k}.int8.onnx"
        quantize_int8(fp32, q, calib, recipe=recipe, count=CALIB_COUNT, cache=True, allow_mismatch=True, **options)
        add("good", label, "int8", run(q, x))
    wrong: list[tuple[str, Callable[[NDArray[Any]], NDArray[Any]]]] = [
        ("fp32 on the mirrored image", lambda a: run(fp32, np.ascontiguousarray(a[..., ::-1]))),
        ("fp32 on the image shifted 4 px", lambda a: run(fp32, np.ascontiguousarray(np.roll(a, 4, axis=-1)))),
        ("fp32, samples in the wrong order (rolled)", lambda a: run(fp32, a)[np.roll(np.arange(len(a)), 1)]),
    ]
    for label, fn in wrong:
        add("wrong", label, "fp32", fn(x))
    for label, other in others:
        add("wrong", label, "fp32", run(other, x))
    return rows


def blobs(folder: Path, count: int, side: int, seed: int) -> Path:
    """Smooth random colour images (6x6 random colours, bicubic-upsampled), as the tests make."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        blob = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(blob).resize((side, side), Image.Resampling.BICUBIC).save(folder / f"{i:03d}.png")
    return folder


def preprocessed(onnx_path: Path, folder: Path, n: int) -> NDArray[Any]:
    pre = Preprocess.from_metadata(ArtifactMeta.from_model(load_onnx(onnx_path, load_weights=False)))
    return np.stack([pre(load_image(p)) for p in sorted(folder.glob("*.png"))[:n]]).astype(np.float32)  # type: ignore[no-any-return]


def random_model(name: str, size: int | None, folder: Path) -> list[Row]:
    label = f"{name} random" + (f" {size}x{size}" if size else "")
    print(label, flush=True)
    fp32 = folder / f"{name}_{size}.onnx"
    export_onnx(name, fp32, weights="random", image_size=size)
    other = folder / f"{name}_{size}.seed1.onnx"
    export_onnx(name, other, weights="random", image_size=size, seed=1)
    side = int((size or 32) * 1.25)
    calib = blobs(folder / f"calib_{side}", CALIB_COUNT + HELD_OUT, side, seed=0)
    x = preprocessed(fp32, blobs(folder / f"eval_{side}", N, side, seed=1), N)
    from resnet_deploy import create_model

    net = create_model(name, weights="random", seed=0)
    return cases(label, fp32, x, calib, False, [("fp32 with other random weights", other)], folder, net)


def digits_model(folder: Path) -> list[Row]:
    from benchmarks.digits import WIDTHS, train_digits
    from resnet_deploy import create_model

    print("digits", flush=True)
    d = train_digits(folder / "digits", seed=0, threads=THREADS)
    fp32 = folder / "digits.onnx"
    export_onnx(d.model, fp32)
    other = train_digits(folder / "digits_seed1", seed=1, threads=THREADS)
    retrained = folder / "digits.seed1.onnx"
    export_onnx(other.model, retrained)
    untrained = folder / "digits.untrained.onnx"
    export_onnx(create_model("resnet20", weights="random", widths=WIDTHS, seed=1), untrained)
    others = [
        ("fp32 of another training run (seed 1)", retrained),
        ("fp32 with random (untrained) weights", untrained),
    ]
    x = d.x_test[:N].astype(np.float32)
    return cases("digits r20 trained", fp32, x, d.train_dir, True, others, folder, d.model)


def fmt(v: float | None, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def verdict(row: Row, gate: str) -> str:
    if gate not in row.verdicts:
        return ""
    failed = row.verdicts[gate]
    if row.kind == "good":
        return "pass" if not failed else f"**FAIL** ({', '.join(failed)})"
    return f"fail ({', '.join(failed)})" if failed else "**PASS**"


CRITERIA = (  # (name, ParityResult field, Tolerance field, unit)
    ("cosine", "cosine_min", "min_cosine", ""),
    ("sqnr_db", "sqnr_db", "min_sqnr_db", " dB"),
    ("retrieval", "retrieval", "min_retrieval", ""),
    ("top1", "top1_agreement", "min_top1_agreement", ""),
)


def separation(rows: list[Row]) -> tuple[list[str], list[str]]:
    """Per gate and criterion: the worst good conversion and the best wrong candidate against the
    threshold. Returns the section's lines and the alarms (a good one failing, a wrong one passing)."""
    lines: list[str] = []
    alarms: list[str] = []
    wrong = [r for r in rows if r.kind == "wrong"]
    for gate in ("fp32", "fp16", "int8"):
        good = [r for r in rows if r.kind == "good" and r.precision == gate]
        lines += ["", f"### {gate} gate", ""]
        for trained in (True, False):
            tol = precision_spec(gate).gate("images", trained)
            lines.append(f"- {'trained weights' if trained else 'random weights'}: {tol.describe()}")
        lines += [
            "",
            "| criterion | weights | threshold | worst good | margin above | best wrong | margin below "
            "| alone separates |",
            "|---|---|---:|---|---:|---|---:|---|",
        ]
        for trained in (True, False):
            tol = precision_spec(gate).gate("images", trained)
            g = [r for r in good if r.trained == trained]
            w = [r for r in wrong if r.trained == trained]
            if not w:
                continue
            crits = list(CRITERIA)
            if tol.scale_rtol is not None:
                crits.insert(0, ("rtol (diff/scale)", "diff_to_scale", "scale_rtol", ""))
            for name, field, tfield, unit in crits:
                thr = getattr(tol, tfield)
                if thr is None:
                    continue
                lower_is_better = tfield == "scale_rtol"
                sign = -1 if lower_is_better else 1

                def val(r: Row, field: str = field) -> float:
                    v = getattr(r.result, field)
                    return float("-inf") if v is None else float(v)

                worst_g = min(g, key=lambda r: sign * val(r)) if g else None
                best_w = max(w, key=lambda r: sign * val(r))
                digits = 1 if unit else (6 if lower_is_better else 4 if name == "cosine" else 3)
                if worst_g is not None:
                    gv = val(worst_g)
                    g_cell = (
                        f"{gv:.{digits}g} ({worst_g.candidate}, {worst_g.model})"
                        if lower_is_better
                        else (f"{gv:.{digits}f} ({worst_g.candidate}, {worst_g.model})")
                    )
                    g_margin = f"{sign * (gv - thr):+.{digits}f}{unit}" if not lower_is_better else f"x{thr / gv:.3g}"
                else:
                    g_cell, g_margin, gv = "(no good conversion of this precision)", "", None
                wv = val(best_w)
                w_cell = (
                    f"{wv:.3g} ({best_w.candidate}, {best_w.model})"
                    if lower_is_better
                    else f"{wv:.{digits}f} ({best_w.candidate}, {best_w.model})"
                )
                w_margin = f"{sign * (thr - wv):+.{digits}f}{unit}" if not lower_is_better else f"x{wv / thr:.3g}"
                alone = "" if gv is None else ("yes" if sign * gv > sign * wv else "no")
                shown_thr = f"{thr:g}{unit}"
                lines.append(
                    f"| {name} | {'trained' if trained else 'random'} | {shown_thr} | {g_cell} | {g_margin} "
                    f"| {w_cell} | {w_margin} | {alone} |"
                )
        for r in good:
            if r.verdicts[gate]:
                alarms.append(
                    f"good conversion FAILS the {gate} gate: {r.model}, {r.candidate} "
                    f"({', '.join(r.verdicts[gate])}; SQNR {fmt(r.result.sqnr_db, 1)} dB, "
                    f"retrieval {fmt(r.result.retrieval, 3)}, cos {r.result.cosine_min:.4f}, top-1 {r.result.top1_agreement:.3f})"
                )
        for r in wrong:
            if not r.verdicts[gate]:
                alarms.append(
                    f"wrong candidate PASSES the {gate} gate: {r.model}, {r.candidate} "
                    f"(SQNR {fmt(r.result.sqnr_db, 1)} dB, retrieval {fmt(r.result.retrieval, 3)}, "
                    f"cos {r.result.cosine_min:.4f}, top-1 {r.result.top1_agreement:.3f})"
                )
    return lines, alarms


def main() -> None:
    import torch

    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ[CACHE_ENV] = str(folder / "cache")  # the two layouts share one calibration per method
        rows += digits_model(folder)
        rows += random_model("resnet20", None, folder)
        rows += random_model("resnet18", 64, folder)
        rows += random_model("resnet50", 96, folder)
    seconds = time.perf_counter() - t0
    sep, alarms = separation(rows)
    chunk_alarms = []
    n_chunks = N // MIN_JUDGED_SAMPLES
    for r in rows:
        for g in r.gates():
            if r.kind == "good" and r.chunks[g] < n_chunks:
                chunk_alarms.append(
                    f"{r.model}, {r.candidate}: {n_chunks - r.chunks[g]} of {n_chunks} batches of 8 fail the {g} gate"
                )
            if r.kind == "wrong" and r.chunks[g] > 0:
                chunk_alarms.append(
                    f"{r.model}, {r.candidate}: {r.chunks[g]} of {n_chunks} batches of 8 pass the {g} gate"
                )
    lines = ["# The parity gate's evidence: good conversions against wrong candidates (issue 13)", ""]
    if alarms:
        lines += ["**WARNING: the default gates do not separate every case below.**", ""]
        lines += [f"- **{a}**" for a in alarms]
    else:
        lines.append(
            f"Under the default gates (precisions.py), on batches of {N}: every good conversion passes its "
            "precision's gate and every wrong candidate fails the fp32, fp16 and int8 gates."
        )
    lines += ["", *environment(COMMAND, seconds)]
    lines += [
        "",
        f"Every candidate is compared with its fp32 ONNX in ONNX Runtime (CPU) on one batch of {N} images: "
        "the digits model's held-out test scans; smooth random colour blobs (6x6 random colours, "
        "bicubic-upsampled) for the random-weight models. int8 is calibrated on a separate folder "
        f"(digits: the training split; random models: {CALIB_COUNT + HELD_OUT} other blobs), "
        f"{CALIB_COUNT} images; the default and old layouts share the same calibration ranges. "
        "Gates: `precision_spec(p).gate('images', trained)` (top-1 is required on trained weights only). "
        "Good rows: the verdict of their own precision's gate. Wrong rows: the verdict of each gate "
        "(fail lists the failing criteria; rtol = max|diff| <= 1e-4 x max|logit|). The shift is `np.roll` by 4 px "
        "along the width (wrapping): 12.5% of the width at 32x32, 6% at 64x64, 4% at 96x96. "
        f"`@8 pass`: of the batch's {n_chunks} disjoint batches of 8 (the smallest judged batch), how many pass "
        "the gate (own gate for good rows; fp32/fp16/int8 for wrong rows).",
        "",
        "| model | kind | candidate | cos_min | sqnr_db | worst_db | retrieval | top1 | fp32 gate | fp16 gate "
        "| int8 gate | @8 pass |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        res = r.result
        at8 = "/".join(str(r.chunks[g]) for g in r.gates())
        lines.append(
            f"| {r.model} | {r.kind} | {r.candidate} | {res.cosine_min:.4f} | {fmt(res.sqnr_db, 1)} "
            f"| {r.worst_db:.1f} | {fmt(res.retrieval, 3)} | {res.top1_agreement:.3f} "
            f"| {verdict(r, 'fp32')} | {verdict(r, 'fp16')} | {verdict(r, 'int8')} | {at8} |"
        )
    lines += [
        "",
        "## Separation per gate criterion",
        "",
        "For each default gate and criterion: the worst good conversion of that precision and the best "
        "wrong candidate (over all four models, split by trained and random weights since the thresholds "
        "differ), with the margin of the good one above the threshold and of the wrong one below it (negative: "
        "the wrong one passes that criterion, and another criterion must catch it). `alone separates`: the "
        "worst good is better than the best wrong on this criterion by itself.",
        *sep,
        "",
        "## Batches of 8",
        "",
    ]
    if chunk_alarms:
        lines += [f"- {a}" for a in chunk_alarms]
    else:
        lines.append(
            f"Every good conversion passes, and every wrong candidate fails, on each of the {n_chunks} batches of 8."
        )
    lines += [
        "",
        "## Where the SQNR floor alone decides",
        "",
        "A wrong candidate that passes every other criterion of a gate (cosine, retrieval, top-1) is caught by "
        "the SQNR floor or not at all. Per gate: the worst good conversion's SQNR against the best such wrong "
        f"candidate's, on the whole batch of {N} and on each batch of 8 (the smallest judged batch), and the "
        "floors that would separate them.",
        "",
        *sqnr_floor_evidence(rows),
    ]
    lines += [
        "",
        "## Verdict",
        "",
        *(
            [f"- {a}" for a in alarms]
            if alarms
            else ["No good conversion fails its default gate and no wrong candidate passes any of the three gates."]
        ),
    ]
    out = Path(__file__).parent / "results" / "parity_metric.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
