"""``bench --server``: a perf_analyzer-style concurrency sweep against a live Triton server."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def bench_server_cmd(
    server: str,
    model: str | None,
    *,
    protocol: str = "grpc",
    concurrency: str | None = None,
    batch: int | None = None,
    duration_s: float | None = None,
    warmup_s: float = 2.0,
    stable: bool = False,
    stability_pct: float = 5.0,
    windows: int = 3,
    max_duration_s: float | None = None,
    json_path: Path | None = None,
    csv_path: Path | None = None,
    plot_path: Path | None = None,
) -> None:
    """Sweep ``model`` on the Triton at ``server`` over the concurrency levels; render and save."""
    raise ConfigError("bench --server is being built")
