"""``Histogram``: the engine's duration histograms, read by ``/metrics`` at scrape time."""

from __future__ import annotations

import pytest

from damselfly.daemon.engine.counters import EngineCounters, Histogram


@pytest.mark.parametrize(
    ("seconds", "index"),
    [(0.0, 0), (0.5, 0), (0.51, 1), (3600.0, 9), (3600.1, 10)],  # bounds are inclusive
)
def test_an_observation_lands_in_the_first_bucket_that_holds_it(seconds, index):
    histogram = Histogram()
    histogram.observe(seconds)
    assert histogram.counts == [int(i == index) for i in range(11)]
    assert histogram.sum == seconds


def test_each_engine_histogram_has_its_own_counts():
    counters = EngineCounters()
    counters.first_piece.observe(0.07)
    assert counters.first_piece.counts[1] == 1  # 0.05 < 0.07 <= 0.1
    assert sum(counters.duration.counts) == 0
    assert len(counters.first_piece.counts) == len(counters.first_piece.bounds) + 1
