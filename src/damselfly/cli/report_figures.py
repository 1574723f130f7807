"""The five rollout figures, computed from counter sums (sans-IO).

Both sources give the same input: for each daemon counter the sum over all nodes, and for the
download-time histogram the count per bucket bound. From saved scrapes the sums are the
counters themselves (since each process started); from Prometheus they are the increases over
the window. Quantiles are interpolated inside the bucket the way Prometheus'
``histogram_quantile`` does, so the report and the dashboard agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

DAEMON = "damselfly_daemon_"
SOURCE_BYTES = DAEMON + "source_bytes_total"
PEER_BYTES = DAEMON + "peer_bytes_total"
CACHE_HITS = DAEMON + "cache_hits_total"
FAILURES = DAEMON + "task_failures_total"
DURATION = DAEMON + "task_duration_seconds"
COUNTERS = (SOURCE_BYTES, PEER_BYTES, CACHE_HITS, FAILURES, DURATION + "_count")


@dataclass(frozen=True)
class Totals:
    """Counter sums over all nodes, and the download-time histogram (bound -> cumulative)."""

    counters: Mapping[str, float]
    buckets: Mapping[float, float]


@dataclass(frozen=True)
class Figures:
    cold_start_p50_seconds: float | None
    cold_start_p95_seconds: float | None
    origin_bytes: float
    peer_bytes: float
    cache_hit_ratio: float | None
    failed_downloads: float


FIGURE_NAMES = {
    "cold_start_p50_seconds": "cold start p50",
    "cold_start_p95_seconds": "cold start p95",
    "origin_bytes": "origin bytes",
    "peer_bytes": "peer bytes",
    "cache_hit_ratio": "cache hit rate",
    "failed_downloads": "failed downloads",
}


def figures(totals: Totals) -> Figures:
    c = totals.counters
    finished = c.get(DURATION + "_count", 0.0)
    downloads = c.get(CACHE_HITS, 0.0) + finished + c.get(FAILURES, 0.0)
    return Figures(
        cold_start_p50_seconds=quantile(0.5, totals.buckets),
        cold_start_p95_seconds=quantile(0.95, totals.buckets),
        origin_bytes=c.get(SOURCE_BYTES, 0.0),
        peer_bytes=c.get(PEER_BYTES, 0.0),
        cache_hit_ratio=c.get(CACHE_HITS, 0.0) / downloads if downloads else None,
        failed_downloads=c.get(FAILURES, 0.0),
    )


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """``histogram_quantile`` over cumulative ``buckets`` (``math.inf`` is the +Inf bucket)."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf or buckets[math.inf] <= 0:
        return None
    rank = q * buckets[math.inf]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == math.inf:
                return lower
            width = count - below
            return lower + (bound - lower) * ((rank - below) / width if width else 1.0)
        lower, below = bound, count
    return lower


def change(name: str, before: float | None, after: float | None) -> str:
    """How a figure moved: percent for amounts, points for the hit ratio."""
    if before is None or after is None:
        return "n/a"
    if name == "cache_hit_ratio":
        return f"{(after - before) * 100:+.1f} pp"
    if name == "failed_downloads":
        return f"{after - before:+.0f}"
    if before == 0:
        return "n/a (was 0)" if after else "0%"
    return f"{(after - before) / before * 100:+.1f}%"


def formatted(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if name.endswith("_seconds"):
        return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"
    if name.endswith("_bytes"):
        return _bytes(value)
    if name == "cache_hit_ratio":
        return f"{value * 100:.1f}%"
    return f"{value:.0f}"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
