"""The rollout figures over time (cold start p50/p95, origin and peer bytes, hit rate, failed
downloads), from the counters members send with their keepalives (``MemberStats``).

Members send cumulative counters; ``points`` turns each member's consecutive samples into
increments (a counter that went down means the member restarted: its new value is the
increment), puts each increment in the step its later sample falls in, and sums the steps
over all members. Cold start percentiles come from the summed duration histograms, as
Prometheus' ``histogram_quantile`` does (linear within a bucket; above the last bound: that
bound). The hit rate is the dashboard's: cache hits / (cache hits + network downloads +
failures). Pure: the API reads the samples and hands them over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from damselfly.protocol.manager import MemberStats, RolloutPoint

SAMPLE_RETENTION = timedelta(days=1)
_COUNTERS = ("source_bytes", "peer_bytes", "cache_hits", "task_failures")


@dataclass(frozen=True)
class Sample:
    member_id: int
    at: datetime
    stats: MemberStats


@dataclass
class _Step:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    bounds: tuple[float, ...] = ()
    histogram: list[int] = field(default_factory=list)

    def add(self, delta: dict[str, int], bounds: tuple[float, ...], counts: list[int]) -> None:
        for name, value in delta.items():
            self.counters[name] += value
        if not self.histogram or self.bounds == bounds:
            self.bounds = bounds
            self.histogram = [a + b for a, b in _padded(self.histogram, counts)]


def points(
    samples: Iterable[Sample], since: datetime, until: datetime, step: timedelta
) -> list[RolloutPoint]:
    """One point per step from ``since`` to ``until``; ``samples`` in any order."""
    count = max(1, -(-int((until - since).total_seconds()) // int(step.total_seconds())))
    steps = [_Step() for _ in range(count)]
    previous: dict[int, MemberStats] = {}
    for sample in sorted(samples, key=lambda s: (s.member_id, s.at)):
        before = previous.get(sample.member_id)
        previous[sample.member_id] = sample.stats
        index = int((sample.at - since) / step)
        if before is None or not 0 <= index < count:
            continue
        _add_increment(steps[index], before, sample.stats)
    return [_point(since + n * step, s) for n, s in enumerate(steps)]


def _add_increment(step: _Step, before: MemberStats, now: MemberStats) -> None:
    restarted = any(getattr(now, n) < getattr(before, n) for n in _COUNTERS) or any(
        a < b for a, b in _padded(now.duration_counts, before.duration_counts)
    )
    base = MemberStats() if restarted else before
    delta = {n: getattr(now, n) - getattr(base, n) for n in _COUNTERS}
    counts = [a - b for a, b in _padded(now.duration_counts, base.duration_counts)]
    step.add(delta, tuple(now.duration_bounds), counts)


def _point(at: datetime, step: _Step) -> RolloutPoint:
    c = step.counters
    downloads = sum(step.histogram)
    total = c["cache_hits"] + downloads + c["task_failures"]
    return RolloutPoint(
        at=at,
        downloads=downloads,
        cache_hits=c["cache_hits"],
        failed_downloads=c["task_failures"],
        origin_bytes=c["source_bytes"],
        peer_bytes=c["peer_bytes"],
        hit_rate=c["cache_hits"] / total if total else None,
        cold_start_p50=quantile(0.5, step.bounds, step.histogram),
        cold_start_p95=quantile(0.95, step.bounds, step.histogram),
    )


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q`` quantile of a histogram (``counts[i]`` at or below ``bounds[i]``, the last
    count above the last bound), or None when it is empty."""
    total = sum(counts)
    if total == 0 or not bounds:
        return None
    rank, seen, lower = q * total, 0, 0.0
    for bound, count in zip(bounds, counts, strict=False):
        if count and seen + count >= rank:
            return lower + (bound - lower) * (rank - seen) / count
        seen, lower = seen + count, bound
    return float(bounds[-1])


def _padded(a: Sequence[int], b: Sequence[int]) -> list[tuple[int, int]]:
    width = max(len(a), len(b))
    return list(zip([*a, *[0] * (width - len(a))], [*b, *[0] * (width - len(b))], strict=True))
