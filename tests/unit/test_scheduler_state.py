"""The sans-IO scheduler: decisions for registering peers, seeds, digests, reports, expiry and
rebuilding state from re-announcements after a restart."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from damselfly.core.errors import ProtocolError
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import (
    BadParent,
    BadParentReason,
    Decision,
    HostInfo,
    HostType,
    PeerReport,
    PieceDigest,
    Registration,
    ReportAnswer,
    TaskHolding,
    TaskMeta,
)
from damselfly.scheduler.resources import NotASeedError, UnknownHostError, UnknownPeerError
from damselfly.scheduler.state import SchedulerState, SchedulingLimits

KIB64 = 64 * 1024
PIECES = 4


def task(name: str = "t", *, needs_credentials: bool = False) -> TaskMeta:
    task_id = hashlib.sha256(name.encode()).hexdigest()
    return TaskMeta(
        task_id, f"https://o/{name}", PIECES * KIB64, KIB64, needs_credentials=needs_credentials
    )


def digest(n: int) -> str:
    return "blake3:" + hashlib.sha256(str(n).encode()).hexdigest()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.state = SchedulerState(SchedulingLimits(host_ttl=20), clock=self.clock)

    def host(self, host_id: str, seed: bool = False) -> str:
        kind = HostType.SEED if seed else HostType.NORMAL
        self.state.host_announced(HostInfo(host_id, "127.0.0.1", 4000, kind))
        return host_id

    def seed(self, host_id: str) -> str:
        self.host(host_id, seed=True)
        self.state.seed_connected(host_id)
        return host_id

    def register(self, host_id: str, meta: TaskMeta | None = None) -> Registration:
        return self.state.register_peer(host_id, meta or task(), PieceBitmap.empty(PIECES))

    def report(self, host_id: str, meta: TaskMeta | None = None, **fields: Any) -> ReportAnswer:
        task_id = (meta or task()).task_id
        return self.state.report_peer(PeerReport(host_id, task_id, **fields))


def parent_hosts(answer: Registration | ReportAnswer) -> list[str]:
    return [p.host_id for p in answer.parents]


def test_no_seed_first_peer_goes_to_source_next_gets_it_as_parent() -> None:
    c = Cluster()
    c.host("a")
    c.host("b")
    first = c.register("a")
    assert (first.decision, first.parents) == (Decision.BACK_TO_SOURCE, ())
    second = c.register("b")
    assert second.decision is Decision.FROM_PARENTS
    assert parent_hosts(second) == ["a"]
    assert second.parents[0].origin_reader


def test_credentials_task_goes_to_source_even_with_a_seed_then_from_parents() -> None:
    c = Cluster()
    c.seed("s1")
    c.host("a")
    c.host("b")
    private = task("private", needs_credentials=True)
    assert c.register("a", private).decision is Decision.BACK_TO_SOURCE
    assert c.state.take_seed_jobs("s1") == []
    c.report("a", private, pieces=(0,), digests=(PieceDigest(0, digest(0)),))
    second = c.register("b", private)
    assert (second.decision, parent_hosts(second)) == (Decision.FROM_PARENTS, ["a"])
    assert second.digests == (PieceDigest(0, digest(0)),)


def test_unknown_task_with_a_seed_creates_a_seed_job() -> None:
    c = Cluster()
    c.seed("s1")
    c.host("a")
    reg = c.register("a")
    assert reg.decision is Decision.WAIT_FOR_SEED
    assert parent_hosts(reg) == ["s1"]  # listed at once: the peer watches its bitmap
    assert c.state.seeds_with_jobs() == ["s1"]
    [job] = c.state.take_seed_jobs("s1")
    assert job.task == task()
    assert c.register("s1").decision is Decision.BACK_TO_SOURCE  # the seed reads the origin
    stats = c.state.statistics()
    assert stats.seed_jobs_total == 1
    assert stats.registrations == {Decision.WAIT_FOR_SEED: 1, Decision.BACK_TO_SOURCE: 1}


def test_a_seed_downloading_for_itself_reads_the_origin() -> None:
    c = Cluster()
    c.seed("s1")
    assert c.register("s1").decision is Decision.BACK_TO_SOURCE
    assert c.state.seeds_with_jobs() == []


def test_digests_only_from_the_origin_reader() -> None:
    c = Cluster()
    c.seed("s1")
    c.host("a")
    c.register("a")
    c.register("s1")
    c.report("s1", pieces=(0,), digests=(PieceDigest(0, digest(0)),))
    c.report("a", pieces=(0,), digests=(PieceDigest(1, digest(1)),))  # not the origin reader
    c.report("s1", pieces=(1,), digests=(PieceDigest(0, digest(42)),))  # conflicts
    page = c.state.piece_digests(task().task_id, 0)
    assert page.digests == (PieceDigest(0, digest(0)),)
    stats = c.state.statistics()
    assert (stats.digests_accepted_total, stats.digests_ignored_total) == (1, 1)
    assert stats.digest_conflicts_total == 1


def test_restart_rebuilds_from_announcements() -> None:
    old = Cluster()
    old.seed("s1")
    old.host("a")
    old.register("a")
    old.register("s1")
    old.report("s1", digests=tuple(PieceDigest(n, digest(n)) for n in range(PIECES)))
    old.report("s1", finished=True)

    new = Cluster()  # a new state object: the scheduler restarted and knows nothing
    with pytest.raises(UnknownPeerError):
        new.report("s1", pieces=(0,))
    new.host("s1", seed=True)
    held = TaskHolding(
        task(),
        PieceBitmap.full(PIECES),
        origin_reader=True,
        digests=tuple(PieceDigest(n, digest(n)) for n in range(PIECES)),
    )
    new.state.tasks_announced("s1", [held])
    new.host("b")
    reg = new.register("b")
    assert (reg.decision, parent_hosts(reg)) == (Decision.FROM_PARENTS, ["s1"])
    assert [d.digest for d in reg.digests] == [digest(n) for n in range(PIECES)]
    assert new.state.statistics().peers == 2


def test_after_a_restart_a_peer_with_pieces_waits_for_the_reader_to_come_back() -> None:
    new = Cluster()  # restarted: knows nothing; the reader (s1) has not re-announced yet
    new.host("a")
    held = new.state.register_peer("a", task(), PieceBitmap.of(PIECES, [0, 1]))
    assert (held.decision, held.parents) == (Decision.WAIT_FOR_SEED, ())  # not a 2nd reader
    new.host("s1", seed=True)
    reader = TaskHolding(task(), PieceBitmap.of(PIECES, [0, 1, 2]), origin_reader=True)
    new.state.tasks_announced("s1", [reader])
    answer = new.report("a", want_parents=True)
    assert (answer.decision, parent_hosts(answer)) == (Decision.FROM_PARENTS, ["s1"])


def test_the_restart_grace_ends_and_a_new_peer_never_waits_for_it() -> None:
    c = Cluster()
    c.host("a")
    c.host("b")
    fresh = c.register("b", task("other"))  # holds nothing: a new download, not a rerun
    assert fresh.decision is Decision.BACK_TO_SOURCE
    c.clock.now += 10  # restart_grace passed and no reader came back
    held = c.state.register_peer("a", task(), PieceBitmap.of(PIECES, [0]))
    assert held.decision is Decision.BACK_TO_SOURCE


def test_want_parents_while_the_seed_fetches_then_from_it() -> None:
    c = Cluster()
    c.seed("s1")
    c.host("a")
    c.register("a")
    c.register("s1")
    c.report("s1", pieces=(0, 1))
    answer = c.report("a", want_parents=True)
    assert (answer.decision, parent_hosts(answer)) == (Decision.FROM_PARENTS, ["s1"])
    assert c.report("a", pieces=(0,)).decision is None  # no decision unless asked


def test_a_stalled_seed_is_not_told_twice() -> None:
    c = Cluster()
    c.seed("s1")
    c.host("a")
    assert c.register("a").decision is Decision.WAIT_FOR_SEED
    c.clock.now += 29
    assert c.report("a", want_parents=True).decision is Decision.FROM_PARENTS  # s1, 0 pieces
    c.clock.now += 2  # s1 made no progress for reader_timeout (30 s)
    answer = c.report("a", want_parents=True)
    assert (answer.decision, answer.parents) == (Decision.BACK_TO_SOURCE, ())
    assert c.state.statistics().seed_jobs_total == 1


def test_reader_gone_means_back_to_source_on_the_next_ask() -> None:
    c = Cluster()
    c.host("a")
    c.host("b")
    c.register("a")  # BACK_TO_SOURCE: a is the origin reader
    assert c.register("b").decision is Decision.FROM_PARENTS
    c.report("a", failed=True, failure_reason="origin 500")
    answer = c.report("b", want_parents=True)
    assert (answer.decision, answer.parents) == (Decision.BACK_TO_SOURCE, ())


def test_bad_parent_report_avoids_it_for_that_child() -> None:
    c = Cluster()
    for h in ("a", "b", "c"):
        c.host(h)
    c.register("a")
    c.report("a", pieces=(0, 1))
    c.register("b")
    c.report("b", pieces=(0,))
    c.register("c")
    bad = BadParent(f"a/{task().task_id}", BadParentReason.DIGEST, "blake3 mismatch")
    answer = c.report("c", bad_parents=(bad,), want_parents=True)
    assert parent_hosts(answer) == ["b"]


def test_finished_peer_is_a_parent_and_asks_nothing() -> None:
    c = Cluster()
    c.host("a")
    c.host("b")
    c.register("a")
    c.report("a", finished=True)
    reg = c.register("b")
    assert reg.parents[0].pieces == PieceBitmap.full(PIECES)
    c.report("b", finished=True)
    assert c.state.resources.peer(reg.peer_id).parents == ()


def test_hosts_expire_with_their_peers() -> None:
    c = Cluster()
    c.host("a")
    c.host("b")
    c.register("a")
    c.clock.now += 15
    c.host("b")  # b keeps announcing
    c.clock.now += 10
    assert c.state.expire_hosts() == ["a"]
    stats = c.state.statistics()
    assert (stats.hosts, stats.tasks, stats.peers, stats.hosts_expired_total) == (1, 0, 0, 1)
    with pytest.raises(UnknownHostError, match="call AnnounceHost"):
        c.register("a")


def test_leaving_seed_hands_undelivered_jobs_to_another() -> None:
    c = Cluster()
    c.seed("s1")
    c.seed("s2")
    c.host("a")
    c.register("a")
    [chosen] = c.state.seeds_with_jobs()
    other = "s2" if chosen == "s1" else "s1"
    c.state.seed_disconnected(chosen)
    assert c.state.seeds_with_jobs() == [other]
    assert [j.task.task_id for j in c.state.take_seed_jobs(other)] == [task().task_id]
    assert f"{chosen}/{task().task_id}" not in c.state.resources.peers


def test_invalid_reports_and_hosts() -> None:
    c = Cluster()
    c.host("a")
    c.register("a")
    with pytest.raises(ProtocolError, match="piece 4 out of range"):
        c.report("a", pieces=(4,))
    with pytest.raises(ProtocolError, match="differ from the registered"):
        c.register("a", TaskMeta(task().task_id, "https://o/t", 5 * KIB64, KIB64))
    with pytest.raises(NotASeedError):
        c.state.seed_connected("a")
    with pytest.raises(UnknownHostError):
        c.state.seed_connected("nobody")
