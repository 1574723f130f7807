"""Parent selection: the hard rules (no self, no overloaded or bad parents, a reader's share of
children) and the default scoring (capacity, pieces, idc, location, host type, spread,
failure penalty)."""

from __future__ import annotations

import hashlib
import random

import pytest

from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import HostInfo, HostType, TaskMeta
from damselfly.scheduler.evaluator import (
    DefaultEvaluator,
    ScoreWeights,
    location_match,
    select_parents,
)
from damselfly.scheduler.failures import FailureMemory
from damselfly.scheduler.resources import Peer, Resources

KIB64 = 64 * 1024
PIECES = 8
TASK = TaskMeta(hashlib.sha256(b"task").hexdigest(), "https://o/x", PIECES * KIB64, KIB64)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """One task and a few hosts, each with a peer holding chosen pieces."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.resources = Resources(self.clock)
        self.failures = FailureMemory(bad_parent_ttl=60, half_life=30)
        self.evaluator = DefaultEvaluator(self.failures, ScoreWeights())
        self.rng = random.Random(7)

    def peer(self, host_id: str, held: list[int] | None = None, **host: object) -> Peer:
        fields: dict[str, object] = {"host_id": host_id, "ip": "127.0.0.1", "upload_port": 4000}
        fields.update(host)
        self.resources.host_announced(HostInfo(**fields))  # type: ignore[arg-type]
        pieces = PieceBitmap.of(PIECES, held or [])
        return self.resources.peer_registered(host_id, TASK, pieces)

    def select(self, child: Peer, max_parents: int = 4, reader_children: int = 4) -> list[str]:
        chosen = select_parents(
            child,
            self.evaluator,
            self.failures,
            max_parents=max_parents,
            now=self.clock.now,
            reader_timeout=30,
            reader_children=reader_children,
            rng=self.rng,
        )
        self.resources.parents_proposed(child.peer_id, (p.peer_id for p in chosen))
        return [p.host.host_id for p in chosen]

    def reader(self, host_id: str, held: list[int] | None = None) -> Peer:
        peer = self.peer(host_id, held, type=HostType.SEED)
        peer.task.digests.reader_chosen(peer.peer_id)
        return peer


ALL = list(range(PIECES))


def test_never_itself_but_peers_may_trade_both_ways() -> None:
    world = World()
    a = world.peer("a", [0])
    b = world.peer("b", [1])
    assert world.select(a) == ["b"]
    assert world.select(b) == ["a"]  # a downloads from b: b may still download from a
    assert a.parents == (b.peer_id,)
    assert b.parents == (a.peer_id,)


def test_an_active_reader_takes_only_its_share_of_children() -> None:
    world = World()
    seed = world.reader("seed")
    children = [world.peer(f"c{i}") for i in range(4)]
    for child in children[:3]:
        assert world.select(child, reader_children=3) == ["seed"]
    assert world.select(children[3], reader_children=3) == []  # the reader is full
    assert seed.children == {c.peer_id for c in children[:3]}
    assert world.select(children[0], reader_children=3) == ["seed"]  # a child keeps its place
    world.resources.peer_finished(children[0].peer_id)
    assert "seed" in world.select(children[3], reader_children=3)  # a place came free


def test_a_reader_that_finished_serves_anyone() -> None:
    world = World()
    seed = world.reader("seed")
    first = world.peer("first")
    assert world.select(first, reader_children=1) == ["seed"]
    world.resources.peer_finished(seed.peer_id)
    assert world.select(world.peer("second"), reader_children=1) == ["seed"]


def test_parents_with_fewer_children_rank_higher() -> None:
    world = World()
    busy = world.peer("busy", ALL)
    world.peer("quiet", ALL)
    for i in range(3):
        other = world.peer(f"o{i}")
        world.resources.parents_proposed(other.peer_id, [busy.peer_id])
    assert world.select(world.peer("child")) == ["quiet", "busy"]


def test_ties_are_broken_at_random() -> None:
    world = World()
    for i in range(6):
        world.peer(f"p{i}", ALL)
    firsts = {world.select(world.peer(f"c{n}"), max_parents=1)[0] for n in range(12)}
    assert len(firsts) > 1  # twelve children with the same view do not all pick one parent


def test_parents_must_hold_something_the_child_lacks() -> None:
    world = World()
    child = world.peer("child", [0, 1])
    world.peer("same", [0, 1])
    world.peer("more", [0, 1, 2])
    assert world.select(child) == ["more"]


def test_a_finished_child_gets_no_parents() -> None:
    world = World()
    child = world.peer("child", ALL)
    world.peer("other", ALL)
    assert world.select(child) == []


@pytest.mark.parametrize(
    ("load", "excluded"),
    [
        ({"upload_slots": 4, "upload_slots_in_use": 4}, True),
        ({"upload_slots": 4, "upload_slots_in_use": 3}, False),
        ({"upload_capacity": 1000, "upload_rate": 1000}, True),
        ({"upload_capacity": 1000, "upload_rate": 999}, False),
        ({"upload_capacity": 0, "upload_rate": 10**9}, False),  # 0 = unlimited
    ],
)
def test_overloaded_hosts_are_excluded(load: dict[str, int], excluded: bool) -> None:
    world = World()
    child = world.peer("child")
    world.peer("busy", ALL, **load)
    assert world.select(child) == ([] if excluded else ["busy"])


def test_same_idc_then_location_preferred() -> None:
    world = World()
    child = world.peer("child", idc="idc1", location="cn|sh|a")
    world.peer("far", ALL, idc="idc2", location="us|ny|b")
    world.peer("near", ALL, idc="idc2", location="cn|sh|b")
    world.peer("same-idc", ALL, idc="idc1", location="us|ny|b")
    assert world.select(child) == ["same-idc", "near", "far"]


def test_free_capacity_and_pieces_held_rank_parents() -> None:
    world = World()
    child = world.peer("child")
    world.peer("loaded", ALL, upload_slots=10, upload_slots_in_use=9)
    world.peer("idle", ALL, upload_slots=10)
    world.peer("partial", [0], upload_slots=10)
    # idle 0.5 + 0.2, partial 0.5 + 0.2/8, loaded 0.5/10 + 0.2: free capacity weighs most
    assert world.select(child) == ["idle", "partial", "loaded"]


def test_seed_scores_below_a_normal_peer_with_the_same_pieces() -> None:
    world = World()
    child = world.peer("child")
    world.peer("seed", ALL, type=HostType.SEED)
    world.peer("peer", ALL)
    assert world.select(child) == ["peer", "seed"]


def test_max_parents_keeps_the_best() -> None:
    world = World()
    child = world.peer("child")
    for i in range(6):
        world.peer(f"p{i}", ALL[: i + 1])
    assert world.select(child, max_parents=2) == ["p5", "p4"]


def test_a_parent_reported_bad_is_avoided_then_forgiven() -> None:
    world = World()
    child = world.peer("child")
    bad = world.peer("bad", ALL)
    world.peer("other", [0])
    world.failures.parent_failed(child.peer_id, bad.peer_id, world.clock.now)
    assert world.select(child) == ["other"]
    world.clock.now += 61  # bad_parent_ttl passed: allowed again, still penalised a little
    assert world.failures.penalty(bad.peer_id, world.clock.now) == pytest.approx(
        1 - 0.5 ** (0.5 ** (61 / 30))
    )
    assert world.select(child)[0] == "bad"


def test_failure_reports_from_other_children_sink_a_parent() -> None:
    world = World()
    child = world.peer("child")
    flaky = world.peer("flaky", ALL)
    world.peer("steady", ALL)
    for name in ("x", "y", "z"):
        world.failures.parent_failed(f"{name}/t", flaky.peer_id, world.clock.now)
    assert world.select(child) == ["steady", "flaky"]
    assert world.failures.failure_score(flaky.peer_id, world.clock.now + 30) == pytest.approx(1.5)


def test_an_active_origin_reader_is_a_parent_before_it_holds_pieces() -> None:
    world = World()
    child = world.peer("child")
    world.reader("seed")
    assert world.select(child) == ["seed"]
    world.clock.now += 31  # no progress for reader_timeout: no longer worth proposing
    assert world.select(child) == []


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "a|b", 0.0),
        ("a|b|c", "a|b|c", 1.0),
        ("a|b|c", "a|b|d", 2 / 3),
        ("a|b", "a|b|c|d", 0.5),
        ("x|b", "a|b", 0.0),
    ],
)
def test_location_match(a: str, b: str, expected: float) -> None:
    assert location_match(a, b) == pytest.approx(expected)
