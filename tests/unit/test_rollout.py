"""Rollout figures from members' cumulative counters: increments per step, restarts,
histogram quantiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from damselfly.manager.rollout import Sample, points, quantile
from damselfly.protocol.manager import MemberStats

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def stats(source: int = 0, peer: int = 0, counts: tuple[int, ...] = ()) -> MemberStats:
    return MemberStats(source_bytes=source, peer_bytes=peer, duration_bounds=[1.0, 2.0],
                       duration_counts=list(counts))  # fmt: skip


def test_increments_land_in_the_step_of_the_later_sample_and_sum_over_members() -> None:
    samples = [
        Sample(1, T0 + timedelta(seconds=10), stats(100)),
        Sample(1, T0 + timedelta(seconds=70), stats(160)),
        Sample(2, T0 + timedelta(seconds=20), stats(peer=5)),
        Sample(2, T0 + timedelta(seconds=80), stats(peer=45)),
        Sample(2, T0 + timedelta(seconds=130), stats(peer=10)),  # restarted: 10 is new
    ]
    got = points(samples, T0, T0 + 3 * MINUTE, MINUTE)
    assert [(p.origin_bytes, p.peer_bytes) for p in got] == [(0, 0), (60, 40), (0, 10)]
    assert [p.at for p in got] == [T0, T0 + MINUTE, T0 + 2 * MINUTE]


def test_a_member_first_seen_gives_no_increment() -> None:
    got = points([Sample(1, T0 + MINUTE, stats(10**9))], T0, T0 + 2 * MINUTE, MINUTE)
    assert all(p.origin_bytes == 0 and p.hit_rate is None for p in got)


@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        (0.5, [2, 2, 0], 1.0),
        (0.5, [0, 4, 0], 1.5),
        (0.95, [0, 0, 3], 2.0),  # above the last bound: that bound
        (0.5, [0, 0, 0], None),
    ],
)
def test_quantile_interpolates_within_a_bucket(
    q: float, counts: list[int], expected: float | None
) -> None:
    assert quantile(q, [1.0, 2.0], counts) == expected
