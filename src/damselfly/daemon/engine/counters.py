"""``EngineCounters``: what the download engine counts, read by ``/metrics`` at scrape time
(``servers/metrics.py``), so the hot path never touches ``prometheus_client``."""

from __future__ import annotations

from dataclasses import dataclass, field

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
FIRST_PIECE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    """Observations in seconds: a count per bound (the last one: above every bound), the sum."""

    bounds: tuple[float, ...] = DURATION_BUCKETS
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        self.counts[next((i for i, b in enumerate(self.bounds) if seconds <= b), -1)] += 1


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
    # downloads the store lacked: start to done, and start to the first verified piece stored
    duration: Histogram = field(default_factory=Histogram)
    first_piece: Histogram = field(default_factory=lambda: Histogram(FIRST_PIECE_BUCKETS))
