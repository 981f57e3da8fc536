"""When a measurement is stable: perf_analyzer's rule, shared by ``bench --stable`` and the server sweep.

A point is measured in windows of equal length. It is *stable* once the last ``windows`` windows'
values (median latency per window; for a server sweep also throughput) each lie within
``pct`` percent of their mean, as Triton's perf_analyzer decides (``--stability-percentage``,
three windows by default). A point that has not settled when ``max_duration_s`` is spent is
reported with ``stable: false`` and the spread it reached, never silently as if it had settled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError

MAX_WINDOWS = 100
MAX_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Stability:
    """The rule: ``windows`` consecutive windows within ``pct`` percent of their mean, within
    ``max_duration_s`` seconds of measuring per point (None: the caller's default)."""

    pct: float = 5.0
    windows: int = 3
    max_duration_s: float | None = None

    def check(self) -> Stability:
        """Finite, bounded settings, else a ConfigError naming the option."""
        if isinstance(self.pct, bool) or not (math.isfinite(self.pct) and 0 < self.pct <= 100):
            raise ConfigError(f"--stability-pct {self.pct}: must be a percentage in (0, 100]")
        if isinstance(self.windows, bool) or not 2 <= self.windows <= MAX_WINDOWS:
            raise ConfigError(f"--windows {self.windows}: must be in 2-{MAX_WINDOWS} (stability compares windows)")
        m = self.max_duration_s
        if m is not None and not (math.isfinite(m) and 0 < m <= MAX_SECONDS):
            raise ConfigError(f"--max-duration-s {m}: must be a number of seconds in (0, {MAX_SECONDS:g}]")
        return self

    def spread_pct(self, values: Sequence[float]) -> float | None:
        """The largest distance of the last ``windows`` values from their mean, in percent of that
        mean (None while there are fewer values than windows)."""
        if len(values) < self.windows:
            return None
        last = [float(v) for v in values[-self.windows :]]
        mean = sum(last) / len(last)
        if not math.isfinite(mean) or mean <= 0:
            return math.inf
        return max(abs(v - mean) for v in last) / mean * 100.0

    def settled(self, *series: Sequence[float]) -> bool:
        """Whether every series (e.g. window medians, window throughputs) is within ``pct``."""
        spreads = [self.spread_pct(s) for s in series]
        return bool(spreads) and all(s is not None and s <= self.pct for s in spreads)
