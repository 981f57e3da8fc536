"""Latency and throughput per batch size, for one or several runners measured side by side.

Targets are measured in interleaved rounds (A B C, B C A, C A B, ...) at each batch size, so that
drift on a shared machine (other jobs, thermal state, frequency) hits all of them alike; ratios are
then taken within one run. Warm-up is excluded. CPU timings use ``perf_counter_ns`` with the thread
counts recorded; on GPUs runners that can time phases with CUDA events report host-to-device,
compute and device-to-host separately (as trtexec does), and ``compute_only`` times compute alone.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._version import __version__
from .choices import Backend
from .errors import ConfigError, MissingDependencyError
from .metrics import check_batch_sizes as _check_sizes
from .models.profile import count_macs
from .models.registry import model_stats
from .onnx_io import ArtifactMeta
from .reports import Progress, Reporter, StepProgress, atomic_write_text, dumps, sha256_file
from .runtime.pyt import TorchRunner
from .runtime.registry import artifact_kind, open_backend, resolve_backend
from .system import cpu_count, cpu_model, dist_version

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics in milliseconds (percentiles by linear interpolation, numpy's default)."""

    count: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p95, p99 = (float(np.percentile(a, q)) for q in PERCENTILES)
        return cls(
            int(a.size),
            float(a.mean()),
            float(a.std(ddof=1)) if a.size > 1 else 0.0,
            float(a.min()),
            p50,
            p90,
            p95,
            p99,
            float(a.max()),
        )


@dataclass
class Target:
    """Something to measure: a label, and a runner (entered once for the whole benchmark)."""

    label: str
    runner: Any
    macs_per_image: int | None = None
    sha256: str | None = None


@dataclass
class BenchRow:
    target: str
    backend: str
    batch: int
    latency_ms: LatencyStats
    throughput_ips: float  # images per second = batch / mean latency
    gflops: float | None  # achieved: MACs x 2 x images/s / 1e9
    peak_fraction: float | None
    phases_ms: dict[str, float] | None = None  # mean h2d / compute / d2h on GPUs

    def flat(self) -> dict[str, Any]:
        row: dict[str, Any] = {"target": self.target, "backend": self.backend, "batch": self.batch}
        row |= {f"latency_{k}_ms" if k != "count" else "iterations": v for k, v in asdict(self.latency_ms).items()}
        row |= {"throughput_ips": self.throughput_ips, "gflops": self.gflops, "peak_fraction": self.peak_fraction}
        for phase in ("h2d", "compute", "d2h"):
            row[f"{phase}_ms"] = (self.phases_ms or {}).get(phase)
        return row


@dataclass
class BenchReport:
    environment: dict[str, Any]
    settings: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)
    schedule: list[tuple[int, int, str]] = field(default_factory=list)  # (batch, round, target) in run order
    interrupted: bool = False

    def ratios(self) -> list[dict[str, Any]]:
        """Each target's throughput relative to the first target, per batch size."""
        out = []
        first = self.rows[0].target if self.rows else None
        for batch in sorted({r.batch for r in self.rows}):
            base = next((r for r in self.rows if r.batch == batch and r.target == first), None)
            for r in self.rows:
                if r.batch == batch and base is not None:
                    out.append(
                        {
                            "batch": batch,
                            "target": r.target,
                            "vs": first,
                            "speedup": r.throughput_ips / base.throughput_ips,
                        }
                    )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "settings": self.settings,
            "interrupted": self.interrupted,
            "rows": [r.flat() for r in self.rows],
            "ratios": self.ratios(),
        }


def environment(threads: int | None, targets: Sequence[Target]) -> dict[str, Any]:
    """Where the numbers come from: CPU, GPU, driver/CUDA, library versions, threads, model hashes."""
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "toolkit": __version__,
        "threads": threads,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    for pkg in ("torch", "onnxruntime-gpu", "onnxruntime", "onnx", "numpy", "tensorrt"):
        version = dist_version(pkg)
        if version is not None:
            env[pkg] = version
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
            env["cuda"] = torch.version.cuda
            major, minor = torch.cuda.get_device_capability()
            env["compute_capability"] = f"{major}.{minor}"
            env["driver"] = _nvidia_driver()
    except ImportError:
        pass
    env["models"] = {t.label: t.sha256 for t in targets}
    return env


def _nvidia_driver() -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


MAX_SECONDS = 24 * 3600.0  # a benchmark point's duration or warm-up
MAX_ITERS = 10**7
MAX_ROUNDS = 10_000


def check_budget(duration_s: float | None, iters: int | None, warmup_s: float, rounds: int) -> None:
    """Finite, positive, bounded: a NaN, infinite or 1e30-second budget would never end."""
    import math

    if duration_s is not None and not (math.isfinite(duration_s) and 0 < duration_s <= MAX_SECONDS):
        raise ConfigError(f"--duration-s {duration_s}: must be a number of seconds in (0, {MAX_SECONDS:g}]")
    if iters is not None and not 0 < iters <= MAX_ITERS:
        raise ConfigError(f"--iters {iters}: must be in 1-{MAX_ITERS}")
    if not (math.isfinite(warmup_s) and 0 <= warmup_s <= MAX_SECONDS):
        raise ConfigError(f"--warmup-s {warmup_s}: must be a number of seconds in [0, {MAX_SECONDS:g}]")
    if not 0 < rounds <= MAX_ROUNDS:
        raise ConfigError(f"--rounds {rounds}: must be in 1-{MAX_ROUNDS}")


def check_batch_sizes(batch_sizes: Sequence[int], targets: Sequence[Target]) -> list[int]:
    sizes = _check_sizes(list(batch_sizes))
    for t in targets:
        fixed, limit = t.runner.fixed_batch, t.runner.max_batch
        low = getattr(t.runner, "min_batch", None) or 1
        if fixed is not None and any(b != fixed for b in sizes):
            raise ConfigError(f"{t.label} has a fixed batch of {fixed}: use --batch-sizes {fixed}")
        bad = [b for b in sizes if (limit is not None and b > limit) or b < low]
        if bad:
            raise ConfigError(f"batch size {bad[0]} is outside {t.label}'s profile range {low}-{limit}")
    return sizes


def _phase_timed(runner: Any) -> bool:
    """Whether a runner reports h2d / compute / d2h from CUDA events (GPU runners)."""
    timed = getattr(runner, "infer_timed", None)
    return timed is not None and getattr(runner, "device", "cuda") == "cuda"


def _time_once(runner: Any, x: NDArray[Any], compute_only: bool) -> tuple[float, dict[str, float] | None]:
    """Wall-clock latency of one call (everything the caller pays), plus GPU phases when available;
    with ``compute_only`` the latency is the CUDA-event compute time alone."""
    t0 = time.perf_counter_ns()
    phases = runner.infer_timed(x) if _phase_timed(runner) else None
    if phases is None:
        runner.infer(x)
    wall = (time.perf_counter_ns() - t0) / 1e6
    if compute_only and phases is not None:
        return phases["compute"], phases
    return wall, phases


def benchmark(
    targets: Sequence[Target],
    batch_sizes: Sequence[int] = (1, 8, 32),
    *,
    warmup_s: float = 2.0,
    duration_s: float | None = None,
    iters: int | None = None,
    rounds: int = 5,
    threads: int | None = None,
    compute_only: bool = False,
    peak_gflops: float | None = None,
    seed: int = 0,
    progress: Progress | StepProgress | None = None,
) -> BenchReport:
    """Measure every target at every batch size, interleaved. Runners not yet entered are entered
    here and exited afterwards (the caller's stay open).

    The budget per (target, batch) is ``duration_s`` seconds (default 5) or ``iters`` iterations, split over
    ``rounds`` rounds. Ctrl-C stops the measurement and returns what was measured so far, marked
    ``interrupted``.
    """
    if not targets:
        raise ConfigError("nothing to benchmark: give at least one artifact or --depth")
    if duration_s is not None and iters is not None:
        raise ConfigError("give either a duration or an iteration count, not both")
    if duration_s is None and iters is None:
        duration_s = 5.0
    check_budget(duration_s, iters, warmup_s, rounds)
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"targets need distinct labels, got {labels}")
    sizes = check_batch_sizes(list(dict.fromkeys(batch_sizes)), targets)  # duplicates measured once
    if compute_only:
        untimed = [t.label for t in targets if not _phase_timed(t.runner)]
        if untimed:
            raise ConfigError(
                f"--compute-only needs GPU runners that time compute apart (torch on cuda, tensorrt): "
                f"{', '.join(untimed)} cannot"
            )
    report = BenchReport(
        environment=environment(threads, targets),
        settings={
            "batch_sizes": sizes,
            "warmup_s": warmup_s,
            "duration_s": duration_s,
            "iters": iters,
            "rounds": rounds,
            "compute_only": compute_only,
            "peak_gflops": peak_gflops,
            "timer": "perf_counter_ns (CPU) / CUDA events (GPU runners that time phases)",
        },
    )
    say = Reporter(progress).step
    rng = np.random.default_rng(seed)
    total_steps = len(sizes) * rounds * len(targets)
    step = 0
    current: int | None = None
    samples: dict[str, list[float]] = {}
    phases: dict[str, list[dict[str, float]]] = {}
    opened = contextlib.ExitStack()
    try:
        for t in targets:
            if not t.runner.active:
                say(f"loading {t.label}", 0, total_steps)
                opened.enter_context(t.runner)
        for batch in sizes:
            samples = {t.label: [] for t in targets}  # reset first: an interrupt now adds no row
            phases = {t.label: [] for t in targets}
            current = batch
            # One input per target, at its own size (artifacts of different image sizes side by side).
            inputs = {t.label: t.runner.preprocess.random(batch, rng) for t in targets}
            for t in targets:  # warm-up, excluded from the statistics
                say(f"warming up {t.label} at batch {batch}", step, total_steps)
                end = time.perf_counter() + warmup_s
                t.runner.infer(inputs[t.label])
                while time.perf_counter() < end:
                    t.runner.infer(inputs[t.label])
            for r in range(rounds):
                for k in range(len(targets)):
                    t = targets[(r + k) % len(targets)]  # rotate who goes first in each round
                    report.schedule.append((batch, r, t.label))
                    say(f"batch {batch}, round {r + 1}/{rounds}: {t.label}", step, total_steps)
                    x = inputs[t.label]
                    if iters is not None:
                        n = iters // rounds + (1 if r < iters % rounds else 0)
                        for _ in range(n):
                            ms, ph = _time_once(t.runner, x, compute_only)
                            samples[t.label].append(ms)
                            if ph:
                                phases[t.label].append(ph)
                    else:
                        end = time.perf_counter() + (duration_s or 0) / rounds
                        while True:
                            ms, ph = _time_once(t.runner, x, compute_only)
                            samples[t.label].append(ms)
                            if ph:
                                phases[t.label].append(ph)
                            if time.perf_counter() >= end:
                                break
                    step += 1
            _add_rows(report, targets, batch, samples, phases, peak_gflops)
    except KeyboardInterrupt:
        report.interrupted = True
        if current is not None and current not in {r.batch for r in report.rows}:
            _add_rows(report, targets, current, samples, phases, peak_gflops)  # only what was measured
    finally:
        opened.close()
    return report


def save_report(report: BenchReport, folder: str | os.PathLike[str], stem: str) -> None:
    """``<stem>.json``, ``<stem>.csv`` and ``<stem>.png`` (with matplotlib) in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", dumps(report))
    write_csv(report, out / f"{stem}.csv")
    write_plot(report, out / f"{stem}.png")


def _add_rows(
    report: BenchReport,
    targets: Sequence[Target],
    batch: int,
    samples: dict[str, list[float]],
    phases: dict[str, list[dict[str, float]]],
    peak_gflops: float | None,
) -> None:
    for t in targets:
        if not samples.get(t.label):
            continue
        stats = LatencyStats.of(samples[t.label])
        ips = batch / (stats.mean / 1000.0)
        gflops = t.macs_per_image * 2 * ips / 1e9 if t.macs_per_image else None
        mean_phases = None
        if phases.get(t.label):
            mean_phases = {k: float(np.mean([p[k] for p in phases[t.label]])) for k in phases[t.label][0]}
        report.rows.append(
            BenchRow(
                target=t.label,
                backend=getattr(t.runner, "name", "?"),
                batch=batch,
                latency_ms=stats,
                throughput_ips=ips,
                gflops=gflops,
                peak_fraction=gflops / peak_gflops if gflops is not None and peak_gflops else None,
                phases_ms=mean_phases,
            )
        )


def write_csv(report: BenchReport, path: str | os.PathLike[str]) -> Path:
    import csv
    import io

    rows = [r.flat() for r in report.rows]
    buf = io.StringIO()
    fields = list(rows[0]) if rows else ["target", "backend", "batch"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def require_matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", extra="plot", purpose="--plot") from None
    return plt


def write_plot(report: BenchReport, path: str | os.PathLike[str]) -> Path:
    """Latency p50 with p99 whiskers, and throughput, against batch size: one line per target."""
    from .reports import save_png

    plt = require_matplotlib()
    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label in dict.fromkeys(r.target for r in report.rows):
        rows = sorted((r for r in report.rows if r.target == label), key=lambda r: r.batch)
        b = [r.batch for r in rows]
        p50 = np.array([r.latency_ms.p50 for r in rows])
        p99 = np.array([r.latency_ms.p99 for r in rows])
        ax_lat.errorbar(b, p50, yerr=[np.zeros_like(p50), p99 - p50], marker="o", capsize=3, label=label)
        ax_thr.plot(b, [r.throughput_ips for r in rows], marker="o", label=label)
    batches = sorted({r.batch for r in report.rows})
    for ax, title, unit in ((ax_lat, "latency p50 (whisker: p99)", "ms"), (ax_thr, "throughput", "images/s")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    env = report.environment
    where = env.get("gpu") or f"{env.get('cpu')} ({env.get('cpu_cores')} cores, threads={env.get('threads')})"
    fig.suptitle(f"resnet-deploy bench on {where}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


# --------------------------------------------------------------------------------------- targets


def bench_targets(
    artifacts: Sequence[str | os.PathLike[str]],
    *,
    depth: int | None = None,
    backends: Sequence[str | Backend] = (),
    device: str = "cpu",
    dtype: str = "fp32",
    threads: int | None = None,
    **torch_options: Any,
) -> list[Target]:
    """One Target per artifact x backend (each artifact's own backend when none is given), opened
    through the runtime registry, plus a PyTorch zoo model (random weights) for ``depth`` unless
    ``depth`` names the architecture of checkpoint artifacts. ``torch`` on an ONNX or a plan is the
    PyTorch model it was exported from."""
    names = [Path(a).name for a in artifacts]
    targets = []
    for artifact in artifacts:
        path = Path(artifact)
        if not path.is_file():
            raise ConfigError(f"file not found: {path}")
        kind = artifact_kind(path)
        shown = path.name if names.count(path.name) == 1 else f"{path.parent.name}/{path.name}"
        for backend in [resolve_backend(path, b) for b in backends] or [resolve_backend(path)]:
            torch_label = _torch_label(device, dtype, torch_options) if backend is Backend.torch else ""
            runner = open_backend(
                path, backend, threads=threads, depth=depth, device=device, dtype=dtype, **torch_options
            )
            macs = _macs_from_metadata(runner.metadata) if kind in ("onnx", "plan") else None
            if macs is None and isinstance(runner, TorchRunner):
                macs = count_macs(runner.model, runner.preprocess.crop)
            targets.append(Target(f"{shown} [{backend.value}{torch_label}]", runner, macs, sha256_file(path)))
    if depth is not None and not any(artifact_kind(a) == "checkpoint" for a in artifacts):
        zoo = TorchRunner.from_zoo(
            str(depth), weights="random", threads=threads, device=device, dtype=dtype, **torch_options
        )
        info = zoo.model.weights_info
        label = f"resnet{depth} [torch{_torch_label(device, dtype, torch_options)}]"
        targets.append(
            Target(label, zoo, count_macs(zoo.model, zoo.preprocess.crop), info.state_sha256 if info else None)
        )
    return targets


def _macs_from_metadata(meta: Mapping[str, str]) -> int | None:
    m = ArtifactMeta(meta)
    try:
        if m.model is None or m.image_size is None:
            return None
        stats = model_stats(
            m.model,
            variant=m.variant,
            shortcut=m.shortcut,
            num_classes=m.num_classes or 1000,
            image_size=m.image_size,
            widths=m.widths,
        )
        return stats[1]
    except ConfigError:
        return None


def _torch_label(device: str, dtype: str, options: Mapping[str, Any]) -> str:
    parts = [device, dtype] + [k.replace("_", "-") for k, v in options.items() if v]
    return " " + " ".join(parts)
