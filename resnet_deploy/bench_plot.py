"""What ``bench`` writes besides JSON: its rows as CSV, and a PNG plot (matplotlib, the plot extra).

Kept apart from ``bench.py`` so the measuring module stays small; the report is duck-typed (its
``rows``, ``environment`` and optional ``budget``) so this module imports nothing of bench's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingDependencyError
from .reports import atomic_write_text


def write_csv(report: Any, path: str | os.PathLike[str]) -> Path:
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


def write_plot(report: Any, path: str | os.PathLike[str]) -> Path:
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
    budget = getattr(report, "budget", None)
    if budget is not None:  # the budget line, and each target's choice starred
        ax_lat.axhline(budget.latency_budget_ms, color="red", linestyle="--", linewidth=1, label="p99 budget")
        for t in budget.targets:
            if t.best_batch is not None:
                ax_lat.plot([t.best_batch], [t.p99_ms], marker="*", markersize=14, color="red", linestyle="none")
                ax_thr.plot(
                    [t.best_batch], [t.throughput_ips], marker="*", markersize=14, color="red", linestyle="none"
                )
                ax_thr.annotate(f"best {t.best_batch}", (t.best_batch, t.throughput_ips), fontsize=7)
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
