"""SchedulerClient against real schedulers (scheduler.app.serve on 127.0.0.1:0, in this loop)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator

import pytest

from damselfly.core.errors import ProtocolError
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import (
    Decision,
    HostInfo,
    HostType,
    PeerReport,
    PieceDigest,
    TaskMeta,
    peer_id_of,
)
from damselfly.protocol.rendezvous import rendezvous_order
from damselfly.testing.fake_scheduler import LocalScheduler
from damselfly.testing.polling import wait_until
from damselfly.transport.scheduler.api import (
    SchedulerUnavailableError,
    UnknownHostError,
    UnknownTaskError,
)
from damselfly.transport.scheduler.client import SchedulerClient

KIB64 = 64 * 1024
PIECES = 4


def digest(n: int) -> str:
    return "blake3:" + hashlib.sha256(str(n).encode()).hexdigest()


def task(name: str) -> TaskMeta:
    return TaskMeta(
        task_id=hashlib.sha256(name.encode()).hexdigest(),
        url=f"https://hub.example/{name}",
        content_length=PIECES * KIB64,
        piece_length=KIB64,
        params={"hf_revision": "0123abcd"},
    )


def task_led_by(address: str, addresses: list[str], name: str) -> TaskMeta:
    """A task whose rendezvous order over ``addresses`` starts with ``address``."""
    for n in range(1000):
        meta = task(f"{name}-{n}")
        if rendezvous_order(meta.task_id, addresses)[0] == address:
            return meta
    raise AssertionError("no such task")


def host(host_id: str, *, seed: bool = False) -> HostInfo:
    kind = HostType.SEED if seed else HostType.NORMAL
    return HostInfo(host_id=host_id, ip="127.0.0.1", upload_port=4000, type=kind, upload_slots=8)


def peers_of(scheduler: LocalScheduler) -> set[str]:
    return set(scheduler.state.resources.peers)


@contextlib.asynccontextmanager
async def client(addresses: list[str], timeout: float = 2.0) -> AsyncIterator[SchedulerClient]:
    async with SchedulerClient(addresses, timeout=timeout, retry_down_after=0.3) as made:
        yield made


@pytest.fixture
async def one() -> AsyncIterator[LocalScheduler]:
    async with LocalScheduler(digest_page_size=2) as scheduler:
        yield scheduler


@pytest.fixture
async def two() -> AsyncIterator[tuple[LocalScheduler, LocalScheduler]]:
    async with LocalScheduler() as a, LocalScheduler() as b:
        yield a, b


async def test_register_report_and_digests_round_trip(one: LocalScheduler) -> None:
    meta = task("model.safetensors")
    async with client([one.address]) as c, client([one.address]) as other:
        for host_id in ("reader", "newcomer"):
            await c.announce_host(host(host_id))
        first = await c.register_peer("reader", meta, PieceBitmap.empty(PIECES))
        assert (first.decision, first.piece_count) == (Decision.BACK_TO_SOURCE, PIECES)
        digests = tuple(PieceDigest(n, digest(n)) for n in range(PIECES))
        report = PeerReport("reader", meta.task_id, pieces=(0, 1, 2, 3), digests=digests)
        assert (await c.report_peer(report)).decision is None

        second = await c.register_peer("newcomer", meta, PieceBitmap.of(PIECES, [0]))
        assert second.decision is Decision.FROM_PARENTS
        assert second.peer_id == peer_id_of("newcomer", meta.task_id)
        [parent] = second.parents
        assert (parent.host_id, parent.origin_reader) == ("reader", True)
        assert parent.pieces == PieceBitmap.full(PIECES)
        assert second.digests == digests[:2]  # one page of digest_page_size

        page = await c.piece_digests(meta.task_id, 1)
        assert (page.digests, page.piece_count, page.truncated) == (digests[1:3], PIECES, True)
        assert await c.all_piece_digests(meta.task_id) == digests

        # a client that never registered this task learns its piece count to decode parents
        answer = await other.report_peer(PeerReport("newcomer", meta.task_id, want_parents=True))
        assert answer.decision is Decision.FROM_PARENTS
        assert [(p.host_id, p.pieces.count) for p in answer.parents] == [("reader", PIECES)]


async def test_refusals_map_to_typed_errors_without_failover(
    two: tuple[LocalScheduler, LocalScheduler],
) -> None:
    a, b = two
    addresses = [a.address, b.address]
    meta = task_led_by(a.address, addresses, "refused")
    async with client(addresses) as c:
        with pytest.raises(UnknownHostError, match="not announced"):
            await c.register_peer("ghost", meta, PieceBitmap.empty(PIECES))
        await c.announce_host(host("me"))
        await c.register_peer("me", meta, PieceBitmap.empty(PIECES))
        with pytest.raises(ProtocolError, match="piece 9 out of range"):
            await c.report_peer(PeerReport("me", meta.task_id, pieces=(9,)))
        with pytest.raises(UnknownTaskError, match="not known"):
            await c.piece_digests(task_led_by(a.address, addresses, "unknown").task_id)
        assert not c.is_down(a.address)
    assert peers_of(b) == set()  # nothing was sent on to the second scheduler


async def test_calls_fail_over_and_the_stopped_scheduler_is_retried_later(
    two: tuple[LocalScheduler, LocalScheduler],
) -> None:
    a, b = two
    addresses = [a.address, b.address]
    first, later = (task_led_by(a.address, addresses, name) for name in ("first", "later"))
    async with client(addresses) as c:
        await c.announce_host(host("me"))
        await a.stop()
        registration = await c.register_peer("me", first, PieceBitmap.empty(PIECES))
        assert peers_of(b) == {registration.peer_id}
        assert c.order_for(first.task_id) == [b.address, a.address]  # a is down: last
        await a.start()  # same port, empty state
        await wait_until(lambda: not c.is_down(a.address))
        assert c.order_for(first.task_id) == [a.address, b.address]
        await c.announce_host(host("me"))
        registration = await c.register_peer("me", later, PieceBitmap.empty(PIECES))
        assert peers_of(a) == {registration.peer_id}


async def test_every_scheduler_down_is_unavailable(
    two: tuple[LocalScheduler, LocalScheduler],
) -> None:
    a, b = two
    async with client([a.address, b.address]) as c:
        await a.stop()
        await b.stop()
        with pytest.raises(SchedulerUnavailableError) as caught:
            await c.register_peer("me", task("x"), PieceBitmap.empty(PIECES))
        assert sorted(f.split(": ")[0] for f in caught.value.failures) == sorted(
            [a.address, b.address]
        )
        with pytest.raises(SchedulerUnavailableError):
            await c.announce_host(host("me"))


async def test_a_silent_scheduler_times_out_and_the_call_fails_over(one: LocalScheduler) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    silent_address = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    addresses = [silent_address, one.address]
    meta = task_led_by(silent_address, addresses, "silent")
    try:
        async with client(addresses, timeout=0.3) as c:
            await c.announce_host(host("me"))  # the silent one fails, the call succeeds
            started = time.monotonic()
            await c.register_peer("me", meta, PieceBitmap.empty(PIECES))
            assert time.monotonic() - started < 1.5
            assert c.is_down(silent_address)
            assert peers_of(one) == {peer_id_of("me", meta.task_id)}
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_announce_tasks_goes_to_each_tasks_scheduler(
    two: tuple[LocalScheduler, LocalScheduler],
) -> None:
    from damselfly.protocol.messages import TaskHolding

    a, b = two
    addresses = [a.address, b.address]
    on_a, on_b = task_led_by(a.address, addresses, "a"), task_led_by(b.address, addresses, "b")
    holdings = [TaskHolding(t, PieceBitmap.full(PIECES)) for t in (on_a, on_b)]
    async with client(addresses) as c:
        await c.announce_host(host("me"))
        await c.announce_tasks("me", holdings)
        assert set(a.state.resources.tasks) == {on_a.task_id}
        assert set(b.state.resources.tasks) == {on_b.task_id}
        await b.stop()
        await c.announce_tasks("me", holdings)  # b's holding moves on to a
        assert set(a.state.resources.tasks) == {on_a.task_id, on_b.task_id}


async def test_seed_jobs_stream_from_every_scheduler_and_survive_a_restart(
    two: tuple[LocalScheduler, LocalScheduler],
) -> None:
    a, b = two
    addresses = [a.address, b.address]
    on_a, on_b, after = (task_led_by(a.address, addresses, "ja"),
                         task_led_by(b.address, addresses, "jb"),
                         task_led_by(a.address, addresses, "after"))  # fmt: skip
    jobs: list[str] = []

    async def take_jobs(seed: SchedulerClient) -> None:
        async for meta in seed.watch_seed_jobs("seed-1"):
            jobs.append(meta.task_id)

    def seeds_connected(s: LocalScheduler) -> bool:
        return s.running is not None and s.state.statistics().seeds_connected == 1

    async with client(addresses) as seed, client(addresses) as peer, client([b.address]) as only_b:
        await seed.announce_host(host("seed-1", seed=True))
        taker = asyncio.create_task(take_jobs(seed))
        await wait_until(lambda: seeds_connected(a) and seeds_connected(b))
        await peer.announce_host(host("peer"))
        for meta in (on_a, on_b):
            reg = await peer.register_peer("peer", meta, PieceBitmap.empty(PIECES))
            assert reg.decision is Decision.WAIT_FOR_SEED
        await wait_until(lambda: sorted(jobs) == sorted([on_a.task_id, on_b.task_id]))
        # the same task from the other scheduler is not yielded again
        await only_b.register_peer("peer", on_a, PieceBitmap.empty(PIECES))
        assert b.state.statistics().seed_jobs_total == 2
        await wait_until(lambda: not b.state.seeds_with_jobs())  # sent on the stream

        await a.stop()
        await a.start()  # empty state: the seed's stream re-announces the seed and reconnects
        await wait_until(lambda: seeds_connected(a))
        await peer.announce_host(host("peer"))
        await peer.register_peer("peer", after, PieceBitmap.empty(PIECES))
        await wait_until(lambda: len(jobs) == 3)
        taker.cancel()
        await asyncio.gather(taker, return_exceptions=True)
    assert jobs == [*jobs[:2], after.task_id]


async def test_aclose_ends_a_seed_job_watch(one: LocalScheduler) -> None:
    async with SchedulerClient([one.address], retry_down_after=0.3) as seed:
        await seed.announce_host(host("seed-1", seed=True))

        async def take_jobs() -> list[TaskMeta]:
            return [meta async for meta in seed.watch_seed_jobs("seed-1")]

        taker = asyncio.create_task(take_jobs())
        await wait_until(lambda: one.state.statistics().seeds_connected == 1)
        await seed.aclose()
        assert await asyncio.wait_for(taker, 2) == []
    await wait_until(lambda: one.state.statistics().seeds_connected == 0)
