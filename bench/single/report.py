"""The single-node benchmark's baselines, goal, and the notes under its table.

The figures are ``bench.common.report``'s. For the systems through a dfdaemon, its table's
"CPU s/GiB" and "peak RSS MiB" are dfget's plus the daemon's (``NodeMeasurement``);
``node_notes`` prints the two parts, and the scheduler's CPU, which is not included.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from bench.common.report import GIB, MIB, RunRecord
from bench.single.via_daemon import NodeMeasurement

BASELINES = ("aria2c", "curl", "hf-snapshot")
SUBJECT = "dfget"
GOAL_VS_ARIA2C = 0.9


def verdict(found: Mapping[str, float]) -> str:
    """The issue's goal in one line: dfget >= 0.9x aria2c's throughput."""
    ratio = found.get(f"{SUBJECT}/aria2c")
    if ratio is None:
        return "goal (dfget >= 0.9x aria2c): not measured (run both dfget and aria2c)"
    met = "MET" if ratio >= GOAL_VS_ARIA2C else "NOT MET"
    return f"goal (dfget >= {GOAL_VS_ARIA2C}x aria2c): {met} ({ratio:.2f}x)"


def node_notes(records: Sequence[RunRecord], size: int) -> list[str]:
    """One line per system through a daemon: its CPU and peak RSS split into dfget + daemon."""
    by_system: dict[str, list[NodeMeasurement]] = {}
    for record in records:
        if isinstance(record.measurement, NodeMeasurement):
            by_system.setdefault(record.system, []).append(record.measurement)
    return [_note(name, runs, GIB / size) for name, runs in by_system.items()]


def _note(name: str, runs: list[NodeMeasurement], per_gib: float) -> str:
    def cpu(values: list[float]) -> str:
        return f"{statistics.median(values) * per_gib:.2f}"

    dfget_cpu = cpu([m.dfget_cpu_seconds for m in runs])
    daemon_cpu = cpu([m.daemon_cpu_seconds for m in runs])
    scheduler_cpu = cpu([m.scheduler_cpu_seconds for m in runs])
    dfget_rss = max(m.dfget_peak_rss_bytes for m in runs) / MIB
    daemon_rss = max(m.daemon_peak_rss_bytes for m in runs) / MIB
    return (
        f"{name}: CPU s/GiB = dfget {dfget_cpu} + dfdaemon {daemon_cpu} (medians);"
        f" peak RSS MiB = dfget {dfget_rss:.0f} + dfdaemon {daemon_rss:.0f} (largest);"
        f" scheduler CPU s/GiB {scheduler_cpu} (not included)"
    )
