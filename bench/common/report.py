"""Turn raw runs into figures: per-system medians, throughput, ratios, a table, a JSON file.

Throughput is the bytes one run moves over the *median* wall time. Ratios compare medians
taken in the same invocation, interleaved, because a shared machine's absolute speed drifts
from minute to minute while the ratio between systems run side by side drifts much less. Each
benchmark names its baselines (the systems every other one is compared with) and its goal.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common.measure import Measurement

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class RunRecord:
    system: str
    round_index: int
    position: int  # 0 = ran first in its round
    measurement: Measurement
    origin_cpu_seconds: float  # what serving this run cost the origin process
    load_before: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "round": self.round_index,
            "position": self.position,
            "load_before": self.load_before,
            "origin_cpu_seconds": self.origin_cpu_seconds,
            **self.measurement.to_json(),
        }


@dataclass(frozen=True)
class SystemSummary:
    system: str
    runs: int
    wall_median: float
    wall_min: float
    wall_max: float
    throughput_mib_s: float  # size / median wall
    cpu_seconds_per_gib: float  # median CPU seconds, scaled to 1 GiB
    origin_cpu_seconds_per_gib: float  # the same for the origin process while it served
    peak_rss_mib: float  # the largest over the runs


def summarise(records: Sequence[RunRecord], size: int) -> list[SystemSummary]:
    """One summary per system, in the order the systems first appear."""
    names = list(dict.fromkeys(r.system for r in records))
    return [_summary(name, [r for r in records if r.system == name], size) for name in names]


def _summary(name: str, records: list[RunRecord], size: int) -> SystemSummary:
    runs = [r.measurement for r in records]
    walls = [m.wall_seconds for m in runs]
    median_wall = statistics.median(walls)
    per_gib = GIB / size
    return SystemSummary(
        system=name,
        runs=len(runs),
        wall_median=median_wall,
        wall_min=min(walls),
        wall_max=max(walls),
        throughput_mib_s=size / MIB / median_wall,
        cpu_seconds_per_gib=statistics.median(m.cpu_seconds for m in runs) * per_gib,
        origin_cpu_seconds_per_gib=statistics.median(r.origin_cpu_seconds for r in records)
        * per_gib,
        peak_rss_mib=max(m.peak_rss_bytes for m in runs) / MIB,
    )


def ratios(summaries: Sequence[SystemSummary], baselines: Sequence[str]) -> dict[str, float]:
    """``{"dfget/aria2c": x, ...}``: every system's median throughput over each baseline's."""
    by_name = {s.system: s for s in summaries}
    return {
        f"{s.system}/{base}": s.throughput_mib_s / by_name[base].throughput_mib_s
        for s in summaries
        for base in baselines
        if base in by_name and s.system != base
    }


def markdown_table(
    summaries: Sequence[SystemSummary], found: Mapping[str, float], baselines: Sequence[str]
) -> str:
    present = [b for b in baselines if any(s.system == b for s in summaries)]
    header = ["system", "runs", "wall median s", "min s", "max s", "MiB/s (median)"]
    header += [f"x {b}" for b in present]
    header += ["CPU s/GiB", "origin CPU s/GiB", "peak RSS MiB"]
    rows = [_row(s, found, present) for s in summaries]
    lines = [_cells(header), _cells(["---"] * len(header)), *(_cells(row) for row in rows)]
    return "\n".join(lines)


def _row(s: SystemSummary, found: Mapping[str, float], baselines: Sequence[str]) -> list[str]:
    row = [s.system, str(s.runs), f"{s.wall_median:.2f}", f"{s.wall_min:.2f}"]
    row += [f"{s.wall_max:.2f}", f"{s.throughput_mib_s:.0f}"]
    row += [_ratio_cell(found.get(f"{s.system}/{b}"), s.system == b) for b in baselines]
    row += [f"{s.cpu_seconds_per_gib:.2f}", f"{s.origin_cpu_seconds_per_gib:.2f}"]
    return [*row, f"{s.peak_rss_mib:.0f}"]


def _ratio_cell(ratio: float | None, is_baseline: bool) -> str:
    if is_baseline:
        return "1.00"
    return "-" if ratio is None else f"{ratio:.2f}"


def _cells(values: Sequence[str]) -> str:
    return "| " + " | ".join(values) + " |"


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def summaries_json(summaries: Sequence[SystemSummary]) -> list[dict[str, Any]]:
    return [asdict(s) for s in summaries]
