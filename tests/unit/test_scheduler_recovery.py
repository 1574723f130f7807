"""A lost origin reader is replaced by the peer holding the most pieces, one at a time
(``scheduler/recovery.py``), on the sans-IO scheduler state."""

from __future__ import annotations

import hashlib

from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import (
    BadParent,
    BadParentReason,
    Decision,
    HostInfo,
    HostType,
    PeerReport,
    PieceDigest,
    TaskMeta,
)
from damselfly.scheduler.state import SchedulerState, SchedulingLimits

PIECES = 8
META = TaskMeta(hashlib.sha256(b"t").hexdigest(), "https://o/t", PIECES * 65536, 65536)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def swarm() -> tuple[SchedulerState, Clock]:
    """Seed s1 reads the origin; a holds 5 pieces, b 2, c none; past the restart grace."""
    clock = Clock()
    state = SchedulerState(SchedulingLimits(), clock=clock)
    state.host_announced(HostInfo("s1", "127.0.0.1", 4000, HostType.SEED))
    state.seed_connected("s1")
    for host in "abc":
        state.host_announced(HostInfo(host, "127.0.0.1", 4000, HostType.NORMAL))
    clock.now += 11
    state.register_peer("a", META, PieceBitmap.empty(PIECES))  # seed job for s1
    state.register_peer("s1", META, PieceBitmap.empty(PIECES))
    report(state, "s1", pieces=(0, 1, 2, 3, 4), digests=digests(0, 1, 2, 3, 4))
    for host, pieces in (("a", (0, 1, 2, 3, 4)), ("b", (0, 1)), ("c", ())):
        state.register_peer(host, META, PieceBitmap.empty(PIECES))
        report(state, host, pieces=pieces)
    return state, clock


def digests(*numbers: int) -> tuple[PieceDigest, ...]:
    return tuple(PieceDigest(n, f"blake3:{n:064x}") for n in numbers)


def report(state: SchedulerState, host: str, **fields: object):  # type: ignore[no-untyped-def]
    return state.report_peer(PeerReport(host, META.task_id, **fields))  # type: ignore[arg-type]


def unreachable(host: str) -> tuple[BadParent, ...]:
    return (BadParent(f"{host}/{META.task_id}", BadParentReason.UNREACHABLE, "refused"),)


def test_the_peer_with_most_pieces_replaces_a_dead_seed_and_only_it() -> None:
    state, _ = swarm()
    state.seed_disconnected("s1")  # the seed died: its job stream closed
    answer_b = report(state, "b", bad_parents=unreachable("s1"), want_parents=True)
    assert answer_b.decision is Decision.FROM_PARENTS
    assert "a" in [p.host_id for p in answer_b.parents]
    assert report(state, "a", want_parents=True).decision is Decision.BACK_TO_SOURCE
    assert report(state, "c", want_parents=True).decision is not Decision.BACK_TO_SOURCE
    assert report(state, "b", want_parents=True).decision is not Decision.BACK_TO_SOURCE


def test_the_successor_reports_digests_for_the_rest() -> None:
    state, _ = swarm()
    state.seed_disconnected("s1")
    report(state, "c", bad_parents=unreachable("s1"), want_parents=True)
    report(state, "a", pieces=(5, 6, 7), digests=digests(5, 6, 7))
    page = state.piece_digests(META.task_id, 0)
    assert [d.number for d in page.digests] == list(range(PIECES))


def test_a_seed_still_connected_is_not_replaced_for_one_childs_trouble() -> None:
    state, _ = swarm()
    report(state, "b", bad_parents=unreachable("s1"), want_parents=True)
    assert report(state, "a", want_parents=True).decision is not Decision.BACK_TO_SOURCE
    assert state.resources.peers.get(f"s1/{META.task_id}") is not None


def test_a_slow_parent_is_not_a_lost_reader() -> None:
    state, _ = swarm()
    state.seed_disconnected("s1")
    slow = (BadParent(f"s1/{META.task_id}", BadParentReason.TIMEOUT, "no data"),)
    report(state, "b", bad_parents=slow, want_parents=True)
    assert report(state, "a", want_parents=True).decision is not Decision.BACK_TO_SOURCE


def test_no_successor_when_a_whole_copy_exists() -> None:
    state, _ = swarm()
    report(state, "a", pieces=tuple(range(PIECES)), finished=True)
    state.seed_disconnected("s1")
    report(state, "b", bad_parents=unreachable("s1"), want_parents=True)
    assert report(state, "c", want_parents=True).decision is Decision.FROM_PARENTS
    assert report(state, "b", want_parents=True).decision is Decision.FROM_PARENTS
