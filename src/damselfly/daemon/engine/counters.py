"""``EngineCounters``: what the download engine counts, read by ``/metrics`` at scrape time
(``servers/metrics.py``), so the hot path never touches ``prometheus_client``."""

from __future__ import annotations

from dataclasses import dataclass, field

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class EngineCounters:
    """Updated by the download engine; read at scrape time."""

    source_bytes: int = 0  # read from origins to download (the download's own bytes)
    spot_check_bytes: int = 0  # read from origins to check bytes got from peers (spot_check.py)
    peer_bytes: int = 0
    cache_hits: int = 0
    task_failures: int = 0
    active_tasks: int = 0
    parents_in_use: int = 0
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0

    def task_finished(self, seconds: float) -> None:
        self.duration_sum += seconds
        bucket = next((i for i, b in enumerate(DURATION_BUCKETS) if seconds <= b), -1)
        self.duration_counts[bucket] += 1
