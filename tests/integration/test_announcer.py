"""Announcer over a real store and real schedulers (in this loop, on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from damselfly.core.digests import piece_digest
from damselfly.daemon.engine.announcer import Announcer
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import Decision, HostInfo, PieceDigest, TaskMeta, peer_id_of
from damselfly.protocol.rendezvous import rendezvous_order
from damselfly.storage.store import Store
from damselfly.testing.fake_scheduler import LocalScheduler
from damselfly.testing.polling import wait_until
from damselfly.transport.scheduler.client import SchedulerClient

KIB64 = 64 * 1024
PIECES = 4
HOLDER = HostInfo(host_id="holder", ip="127.0.0.1", upload_port=4100, upload_slots=8)
NEWCOMER = HostInfo(host_id="newcomer", ip="127.0.0.1", upload_port=4200, upload_slots=8)


def task_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def piece(name: str, n: int) -> bytes:
    return bytes([n + 1]) * KIB64 + name.encode()[:0]


def fill(store: Store, name: str, numbers: list[int]) -> list[PieceDigest]:
    """A task of PIECES pieces in ``store`` holding ``numbers``; their digests."""
    with store.open_task(
        task_id(name),
        url=f"https://hub.example/{name}?X-Amz-Signature=abc",
        content_length=PIECES * KIB64,
        piece_length=KIB64,
    ) as task:
        for n in numbers:
            task.write_piece(n, piece(name, n))
    return [PieceDigest(n, piece_digest(piece(name, n))) for n in numbers]


def wire_task(name: str) -> TaskMeta:
    return TaskMeta(task_id(name), f"https://hub.example/{name}", PIECES * KIB64, KIB64)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as made:
        yield made


@contextlib.asynccontextmanager
async def clients(*addresses: str) -> AsyncIterator[tuple[SchedulerClient, SchedulerClient]]:
    """The announcing daemon's client and a newcomer's."""
    async with (
        SchedulerClient(list(addresses), timeout=2, retry_down_after=0.2) as ours,
        SchedulerClient(list(addresses), timeout=2, retry_down_after=0.2) as theirs,
    ):
        yield ours, theirs


def holder_peer(scheduler: LocalScheduler, name: str) -> str | None:
    """The holder's peer id for ``name`` if ``scheduler`` knows it."""
    peer_id = peer_id_of("holder", task_id(name))
    known = scheduler.running is not None and peer_id in scheduler.state.resources.peers
    return peer_id if known else None


async def newcomer_registers(client: SchedulerClient, name: str) -> tuple[Decision, list[str]]:
    await client.announce_host(NEWCOMER)
    registration = await client.register_peer("newcomer", wire_task(name), PieceBitmap(PIECES))
    return registration.decision, [p.host_id for p in registration.parents]


async def test_a_restarted_scheduler_is_rebuilt_and_proposes_the_announcer(store: Store) -> None:
    digests = fill(store, "model", [0, 1, 2, 3])
    async with LocalScheduler() as scheduler, clients(scheduler.address) as (ours, theirs):
        announcer = Announcer(ours, store, lambda: HOLDER, interval=0.05,
                              origin_reader_tasks=lambda: {task_id("model")})  # fmt: skip
        running = asyncio.create_task(announcer.run())
        await wait_until(lambda: holder_peer(scheduler, "model") is not None)
        assert await newcomer_registers(theirs, "model") == (Decision.FROM_PARENTS, ["holder"])

        await scheduler.stop()
        await scheduler.start()  # same port, empty state
        await wait_until(lambda: holder_peer(scheduler, "model") is not None)
        assert await newcomer_registers(theirs, "model") == (Decision.FROM_PARENTS, ["holder"])
        assert await theirs.all_piece_digests(task_id("model")) == tuple(digests)
        peer = scheduler.state.resources.peers[peer_id_of("holder", task_id("model"))]
        assert peer.task.meta.url == "https://hub.example/model"  # scrubbed by the store
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_restart_between_two_rounds_is_noticed_by_the_reconnection(store: Store) -> None:
    fill(store, "model", [0])
    async with LocalScheduler() as scheduler, clients(scheduler.address) as (ours, _):
        announcer = Announcer(ours, store, lambda: HOLDER)
        await announcer.announce_once()
        await scheduler.stop()
        await scheduler.start()  # no call failed meanwhile: only the reconnection tells
        rounds = 0
        while holder_peer(scheduler, "model") is None and rounds < 3:
            await announcer.announce_once()
            rounds += 1
        assert holder_peer(scheduler, "model") is not None
        assert rounds <= 2  # at once, or at the next round if the reconnection is seen late
        assert ours.generation(scheduler.address) >= 2


async def test_holdings_carry_the_stored_bitmap_and_skip_empty_tasks(store: Store) -> None:
    fill(store, "partial", [0, 2])
    fill(store, "empty", [])
    fill(store, "reading", [])
    readers = {task_id("reading")}
    async with LocalScheduler() as scheduler, clients(scheduler.address) as (ours, _):
        announcer = Announcer(ours, store, lambda: HOLDER, origin_reader_tasks=lambda: readers)
        await announcer.announce_once()
        peers = scheduler.state.resources.peers
        assert set(peers) == {peer_id_of("holder", task_id(n)) for n in ("partial", "reading")}
        assert list(peers[peer_id_of("holder", task_id("partial"))].pieces.numbers()) == [0, 2]
        assert announcer.tasks_announced_total == 2
        await announcer.announce_once()  # nothing changed: no task is sent again
        assert announcer.tasks_announced_total == 2


async def test_reannounce_restores_tasks_a_scheduler_forgot_without_reconnecting(
    store: Store,
) -> None:
    fill(store, "model", [0, 1])
    async with LocalScheduler() as scheduler, clients(scheduler.address) as (ours, _):
        announcer = Announcer(ours, store, lambda: HOLDER)
        await announcer.announce_once()
        scheduler.state.host_left("holder")  # as when the host expired; the connection stays
        await announcer.announce_once()
        assert holder_peer(scheduler, "model") is None  # the host is back, its tasks are not
        await asyncio.gather(*(announcer.reannounce() for _ in range(3)))
        assert holder_peer(scheduler, "model") is not None
        # the first ask runs a round; the two made while it ran share the next one
        assert announcer.tasks_announced_total == 1 + 2


async def test_tasks_follow_their_scheduler_when_it_goes_down_and_comes_back(
    store: Store,
) -> None:
    async with (
        LocalScheduler() as a,
        LocalScheduler() as b,
        clients(a.address, b.address) as (
            ours,
            _,
        ),
    ):
        name = next(
            f"t{n}" for n in range(100)
            if rendezvous_order(task_id(f"t{n}"), [a.address, b.address])[0] == a.address
        )  # fmt: skip
        fill(store, name, [0])
        announcer = Announcer(ours, store, lambda: HOLDER)
        await a.stop()
        await announcer.announce_once()
        assert (holder_peer(a, name), holder_peer(b, name)) == (
            None,
            peer_id_of("holder", task_id(name)),
        )
        await a.start()
        async with asyncio.timeout(3):  # once a answers again (its channel reconnects)
            while holder_peer(a, name) is None:
                await asyncio.sleep(0.05)
                await announcer.announce_once()
        assert ours.order_for(task_id(name))[0] == a.address


async def test_leave_drops_the_host_everywhere(store: Store) -> None:
    async with (
        LocalScheduler() as a,
        LocalScheduler() as b,
        clients(a.address, b.address) as (
            ours,
            _,
        ),
    ):
        announcer = Announcer(ours, store, lambda: HOLDER)
        await announcer.announce_once()
        assert [s.state.statistics().hosts for s in (a, b)] == [1, 1]
        await b.stop()
        await announcer.leave()  # b being down is logged, not raised
        assert a.state.statistics().hosts == 0
