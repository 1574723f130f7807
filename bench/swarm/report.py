"""The swarm benchmark's figures: per run, per system (medians over runs), a markdown table.

Per run: each node's completion time; first, median, p90 (nearest rank) and last of them;
last / the fluid bound computed from the goodputs calibrated in that run's round; origin body
bytes / S (and wire bytes / S, overhead included); CPU seconds of every process involved
(origin included) per GiB delivered to the nodes (N x S); the largest node daemon's and the
seed's peak RSS. Per system: the median of each per-run figure over the runs that succeeded,
and the largest peak RSS. Failed runs are kept, with their reason, and counted in ``runs``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.swarm.calibrate import Calibration
from bench.swarm.runner import RunFigures

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass
class SwarmRun:
    system: str
    round_index: int
    position: int  # 0 = ran first in its round
    nodes: int
    size: int
    calibration: Calibration
    bound_seconds: float  # fluid bound from this round's calibration
    bound_source: str  # "origin" (B_o) or "seed" (the file starts on a warm seed: B)
    load_before: list[float]
    load_after: list[float]
    figures: RunFigures | None  # None: failed
    error: str | None = None

    def completion(self) -> dict[str, float]:
        assert self.figures is not None
        times = sorted(self.figures.completion_seconds)
        return {
            "first": times[0],
            "median": statistics.median(times),
            "p90": times[math.ceil(0.9 * len(times)) - 1],
            "last": times[-1],
        }

    def derived(self) -> dict[str, float]:
        assert self.figures is not None
        f = self.figures
        delivered_gib = self.nodes * self.size / GIB
        return {
            **self.completion(),
            "last_over_bound": self.completion()["last"] / self.bound_seconds,
            "origin_ratio": f.origin.bytes / self.size,
            "origin_wire_ratio": f.origin.wire_bytes / self.size,
            "cpu_seconds": sum(f.cpu_seconds.values()),
            "cpu_seconds_per_gib": sum(f.cpu_seconds.values()) / delivered_gib,
            **self._origin_window(),
        }

    def _origin_window(self) -> dict[str, float]:
        """Seconds from the start to the origin's first and last body byte (when it sent)."""
        assert self.figures is not None
        f = self.figures
        if f.origin.first_send is None or f.origin.last_send is None:
            return {}
        return {
            "origin_first_s": f.origin.first_send - f.started_at,
            "origin_last_s": f.origin.last_send - f.started_at,
        }

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "system": self.system,
            "round": self.round_index,
            "position": self.position,
            "bound_seconds": self.bound_seconds,
            "bound_source": self.bound_source,
            "calibration": self.calibration.to_json(),
            "load_before": self.load_before,
            "load_after": self.load_after,
            "error": self.error,
        }
        if self.figures is not None:
            document["figures"] = asdict(self.figures)
            document["derived"] = self.derived()
        return document


@dataclass(frozen=True)
class SystemSummary:
    system: str
    runs: int
    failed: int
    origin_ratio: float
    origin_wire_ratio: float
    first: float
    median: float
    p90: float
    last: float
    bound: float
    last_over_bound: float
    cpu_seconds_per_gib: float
    origin_first: float | None  # seconds from the start to the origin's first body byte
    origin_last: float | None  # ... and its last
    daemon_peak_rss_mib: float | None
    seed_peak_rss_mib: float | None
    copies_verified: int


def summarise(runs: Sequence[SwarmRun]) -> list[SystemSummary]:
    names = list(dict.fromkeys(r.system for r in runs))
    summaries = []
    for name in names:
        mine = [r for r in runs if r.system == name]
        good = [r for r in mine if r.figures is not None]
        if good:
            summaries.append(_summary(name, len(mine), good))
    return summaries


def _summary(name: str, attempted: int, good: Sequence[SwarmRun]) -> SystemSummary:
    derived = [r.derived() for r in good]

    def median(key: str) -> float:
        return statistics.median(d[key] for d in derived)

    def median_if_any(key: str) -> float | None:
        values = [d[key] for d in derived if key in d]
        return statistics.median(values) if values else None

    return SystemSummary(
        system=name,
        runs=attempted,
        failed=attempted - len(good),
        origin_ratio=median("origin_ratio"),
        origin_wire_ratio=median("origin_wire_ratio"),
        first=median("first"),
        median=median("median"),
        p90=median("p90"),
        last=median("last"),
        bound=statistics.median(r.bound_seconds for r in good),
        last_over_bound=median("last_over_bound"),
        cpu_seconds_per_gib=median("cpu_seconds_per_gib"),
        origin_first=median_if_any("origin_first_s"),
        origin_last=median_if_any("origin_last_s"),
        daemon_peak_rss_mib=_largest(good, lambda f: f.daemon_peak_rss_bytes),
        seed_peak_rss_mib=_largest(good, lambda f: f.seed_peak_rss_bytes),
        copies_verified=sum(r.figures.verified_copies for r in good if r.figures is not None),
    )


def _largest(runs: Sequence[SwarmRun], pick: Callable[[RunFigures], int | None]) -> float | None:
    values = [pick(r.figures) for r in runs if r.figures is not None]
    present = [v for v in values if v is not None]
    return max(present) / MIB if present else None


HEADER = [
    "system",
    "runs (failed)",
    "origin bytes / S",
    "first s",
    "median s",
    "p90 s",
    "last s",
    "fluid bound s",
    "last / bound",
    "CPU s / GiB delivered",
    "origin sends from-to s",
    "daemon peak RSS MiB",
    "seed peak RSS MiB",
    "copies sha256-checked",
]


def markdown_table(summaries: Sequence[SystemSummary]) -> str:
    rows = [_row(s) for s in summaries]
    lines = [_cells(HEADER), _cells(["---"] * len(HEADER)), *(_cells(row) for row in rows)]
    return "\n".join(lines)


def _row(s: SystemSummary) -> list[str]:
    return [
        s.system,
        f"{s.runs} ({s.failed})",
        f"{s.origin_ratio:.3f}",
        f"{s.first:.1f}",
        f"{s.median:.1f}",
        f"{s.p90:.1f}",
        f"{s.last:.1f}",
        f"{s.bound:.1f}",
        f"{s.last_over_bound:.2f}",
        f"{s.cpu_seconds_per_gib:.2f}",
        _window(s.origin_first, s.origin_last),
        _mib(s.daemon_peak_rss_mib),
        _mib(s.seed_peak_rss_mib),
        str(s.copies_verified),
    ]


def _window(first: float | None, last: float | None) -> str:
    return "-" if first is None or last is None else f"{first:.1f}-{last:.1f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _cells(values: Sequence[str]) -> str:
    return "| " + " | ".join(values) + " |"


def failures(runs: Sequence[SwarmRun]) -> list[str]:
    return [f"{r.system} (round {r.round_index + 1}): {r.error}" for r in runs if r.error]


def summaries_json(summaries: Sequence[SystemSummary]) -> list[dict[str, Any]]:
    return [asdict(s) for s in summaries]
