"""The daemon's side of ``scheduler.proto``: one client over every configured scheduler.

Which scheduler: a task's calls go to the first *live* address in the task's rendezvous order
(``protocol/rendezvous.py``, key = task id), so every daemon with the same list picks the same
scheduler for a task. Host calls (``AnnounceHost``, ``LeaveHost``) and seed-job streams go to
every scheduler. Failover, per call:

- ``UNAVAILABLE``, ``DEADLINE_EXCEEDED`` (and any other status not listed below: the scheduler
  is broken or gone) -> the address is marked down for ``retry_down_after`` seconds (it moves
  to the end of every order) and the next address is tried; when all failed:
  ``SchedulerUnavailableError``;
- ``INVALID_ARGUMENT`` -> ``ProtocolError`` with the server's message (another scheduler would
  say the same);
- ``FAILED_PRECONDITION`` -> ``UnknownHostError``: that scheduler does not know this host or
  peer (it restarted, or expired us); the caller announces again and re-registers;
- ``NOT_FOUND`` -> ``UnknownTaskError`` (``GetPieceDigests`` of a task it does not know).

Channels: one ``grpc.aio`` insecure channel per address (TLS and authentication are out of
scope for now: run schedulers on a trusted network), created lazily inside the running loop,
with reconnect backoff capped at ``retry_down_after`` so a marked-down address has reconnected
by the time it is tried again. A small task per channel counts how often it became READY
(``generation``): the announcer re-announces a scheduler's tasks when that number changes, which
is how a scheduler restart between two announcements is noticed.

Nothing secret is sent: ``TaskMeta`` refuses credentials on construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc

from damselfly.core.errors import ConfigError, DamselflyError, ProtocolError, SchedulerError
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import (
    MAX_PIECE_COUNT,
    DigestPage,
    HostInfo,
    PeerReport,
    PieceDigest,
    Registration,
    ReportAnswer,
    TaskHolding,
    TaskMeta,
    peer_id_of,
)
from damselfly.protocol.rendezvous import rendezvous_order
from damselfly.protocol.scheduler_codec import (
    announce_tasks_to_pb,
    digest_page_from_pb,
    host_info_to_pb,
    register_to_pb,
    registration_from_pb,
    report_answer_from_pb,
    report_to_pb,
    seed_job_from_pb,
)
from damselfly.protocol.scheduler_pb2_grpc import SchedulerStub

log = logging.getLogger(__name__)
T = TypeVar("T")
Stub = Any  # grpcio-tools generates untyped stubs: bind the constructor to a typed name once
_new_stub: Callable[[Any], Stub] = SchedulerStub

ANNOUNCE_BATCH_HOLDINGS = 256
ANNOUNCE_BATCH_BYTES = 4 * 1024 * 1024  # well under the scheduler's 16 MiB message limit
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
_KNOWN_PIECE_COUNTS = 4096  # tasks whose piece count is remembered (to decode report answers)
_READY = grpc.ChannelConnectivity.READY


class SchedulerUnavailableError(SchedulerError):
    """Every scheduler tried for the call failed (down, timed out, broken)."""

    def __init__(self, what: str, failures: Sequence[str]) -> None:
        super().__init__(f"{what}: no scheduler answered ({'; '.join(failures) or 'none tried'})")
        self.failures = tuple(failures)


class UnknownHostError(SchedulerError):
    """The scheduler does not know this host or peer (restarted, or expired us): announce the
    host and its tasks again, re-register, then retry."""


class UnknownTaskError(SchedulerError, LookupError):
    """The scheduler does not know the task."""


class SchedulerApi(Protocol):
    """What the download engine, reporter and seed worker use; ``SchedulerClient`` and
    ``damselfly.testing.fake_scheduler.FakeSchedulerClient`` implement it."""

    async def announce_host(self, info: HostInfo) -> None: ...

    async def announce_tasks(self, host_id: str, holdings: Sequence[TaskHolding]) -> None: ...

    async def register_peer(
        self, host_id: str, task: TaskMeta, held: PieceBitmap
    ) -> Registration: ...

    async def report_peer(self, report: PeerReport) -> ReportAnswer: ...

    async def piece_digests(self, task_id: str, from_piece: int = 0) -> DigestPage: ...

    async def all_piece_digests(self, task_id: str) -> tuple[PieceDigest, ...]: ...

    async def leave_host(self, host_id: str) -> None: ...

    def watch_seed_jobs(self, host_id: str) -> AsyncIterator[TaskMeta]: ...


def _final_error(exc: grpc.aio.AioRpcError) -> DamselflyError | None:
    """Our error for a status that another scheduler would answer the same way, else None."""
    code, details = exc.code(), exc.details() or exc.code().name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ProtocolError(f"scheduler refused the message: {details}")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return UnknownHostError(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return UnknownTaskError(details)
    return None


@dataclass
class _Endpoint:
    address: str
    channel: Any = None  # grpc.aio.Channel, created in the running loop
    stub: Stub = None
    down_until: float = 0.0
    generation: int = 0  # times the channel became READY (at least; never fewer)
    ready: bool = False  # READY when last seen


class SchedulerClient:
    def __init__(
        self,
        addresses: Sequence[str],
        *,
        timeout: float = 5.0,
        retry_down_after: float = 5.0,
        watch_backoff: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not addresses:
            raise ConfigError("no scheduler address configured")
        self._addresses = tuple(dict.fromkeys(addresses))
        self._endpoints = {a: _Endpoint(a) for a in self._addresses}
        self._timeout = timeout
        self._retry_down_after = retry_down_after
        self._watch_backoff = (watch_backoff, max(watch_backoff, retry_down_after))
        self._clock = clock
        self._host: HostInfo | None = None  # last announced: re-sent when a seed stream needs it
        self._piece_counts: OrderedDict[str, int] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # Scheduler choice -------------------------------------------------------------------

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._addresses

    def order_for(self, key: str) -> list[str]:
        """``key``'s rendezvous order, addresses marked down recently moved to the end."""
        order = rendezvous_order(key, self._addresses)
        return [a for a in order if not self.is_down(a)] + [a for a in order if self.is_down(a)]

    def is_down(self, address: str) -> bool:
        return self._endpoints[address].down_until > self._clock()

    def generation(self, address: str) -> int:
        """How many times the channel to ``address`` became READY (changes on reconnect)."""
        return self._endpoints[address].generation

    # Host calls (every scheduler) -------------------------------------------------------

    async def announce_host(self, info: HostInfo) -> None:
        await self.announce_host_to_each(info)

    async def announce_host_to_each(self, info: HostInfo) -> list[str]:
        """Announce to every scheduler; the addresses that answered (at least one, else
        ``SchedulerUnavailableError``)."""
        self._host = info
        request = host_info_to_pb(info)
        return await self._to_every(
            "announce host", lambda stub: stub.AnnounceHost(request, timeout=self._timeout)
        )

    async def leave_host(self, host_id: str) -> None:
        request = pb.LeaveHostRequest(host_id=host_id)
        await self._to_every("leave", lambda stub: stub.LeaveHost(request, timeout=self._timeout))

    async def announce_tasks(self, host_id: str, holdings: Sequence[TaskHolding]) -> None:
        """Each holding to its task's first live scheduler, in batches; a scheduler that fails
        now passes its holdings to the next in their order."""
        failures: dict[str, str] = {}
        pending = list(holdings)
        while pending:
            groups = self._group_by_scheduler(pending, skip=failures.keys())
            if None in groups:
                raise SchedulerUnavailableError("announce tasks", list(failures.values()))
            pending = []
            for address, group in groups.items():
                assert address is not None
                failure = await self._send_holdings(address, host_id, group)
                if failure is not None:
                    failures[address] = failure
                    pending.extend(group)

    def _group_by_scheduler(
        self, holdings: Iterable[TaskHolding], skip: Collection[str]
    ) -> dict[str | None, list[TaskHolding]]:
        """Holdings by the first scheduler of their task not in ``skip`` (None: none left)."""
        groups: dict[str | None, list[TaskHolding]] = {}
        for holding in holdings:
            order = [a for a in self.order_for(holding.task.task_id) if a not in skip]
            groups.setdefault(order[0] if order else None, []).append(holding)
        return groups

    async def _send_holdings(
        self, address: str, host_id: str, holdings: list[TaskHolding]
    ) -> str | None:
        endpoint = self._endpoints[address]
        for batch in _batches(holdings):
            request = announce_tasks_to_pb(host_id, batch)
            try:
                await self._stub(endpoint).AnnounceTasks(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                return self._failed(endpoint, "announce tasks", exc)
        self._answered(endpoint)
        return None

    # Task calls (the task's scheduler) --------------------------------------------------

    async def register_peer(self, host_id: str, task: TaskMeta, held: PieceBitmap) -> Registration:
        request = register_to_pb(host_id, task, held)
        response = await self._first_live(
            task.task_id, "register", lambda stub: stub.RegisterPeer(request, timeout=self._timeout)
        )
        registration = registration_from_pb(response)
        if registration.piece_count != task.piece_count:
            raise ProtocolError(
                f"registration: {registration.piece_count} pieces, the task has {task.piece_count}"
            )
        if registration.peer_id != peer_id_of(host_id, task.task_id):
            raise ProtocolError(f"registration: unexpected peer id {registration.peer_id[:80]!r}")
        self._remember_piece_count(task.task_id, task.piece_count)
        return registration

    async def report_peer(self, report: PeerReport) -> ReportAnswer:
        request = report_to_pb(report)
        response = await self._first_live(
            report.task_id, "report", lambda stub: stub.ReportPeer(request, timeout=self._timeout)
        )
        if not response.parents:
            return report_answer_from_pb(response, 0)
        try:
            count = await self._piece_count(report.task_id)
        except SchedulerError as exc:
            log.debug("report answer: parents dropped, piece count unknown: %s", exc)
            return report_answer_from_pb(pb.ReportPeerResponse(decision=response.decision), 0)
        return report_answer_from_pb(response, count)

    async def piece_digests(self, task_id: str, from_piece: int = 0) -> DigestPage:
        request = pb.GetPieceDigestsRequest(task_id=task_id, from_piece=from_piece)
        response = await self._first_live(
            task_id,
            "piece digests",
            lambda stub: stub.GetPieceDigests(request, timeout=self._timeout),
        )
        page = digest_page_from_pb(response)
        self._remember_piece_count(task_id, page.piece_count)
        return page

    async def all_piece_digests(self, task_id: str) -> tuple[PieceDigest, ...]:
        """Every digest the scheduler knows for the task, following ``truncated`` pages."""
        digests: list[PieceDigest] = []
        page = await self.piece_digests(task_id)
        digests.extend(page.digests)
        while page.truncated and page.digests:
            page = await self.piece_digests(task_id, page.digests[-1].number + 1)
            digests.extend(page.digests)
        return tuple(digests)

    def _remember_piece_count(self, task_id: str, count: int) -> None:
        self._piece_counts[task_id] = count
        self._piece_counts.move_to_end(task_id)
        while len(self._piece_counts) > _KNOWN_PIECE_COUNTS:
            self._piece_counts.popitem(last=False)

    async def _piece_count(self, task_id: str) -> int:
        """Sizes parents' bitmaps in a report answer; asked of the scheduler (an empty digest
        page) for a task this client never registered, e.g. a seed's job."""
        count = self._piece_counts.get(task_id)
        if count is None:
            count = (await self.piece_digests(task_id, MAX_PIECE_COUNT)).piece_count
        return count

    # Seed jobs ---------------------------------------------------------------------------

    async def watch_seed_jobs(
        self, host_id: str, *, repeat_after: float = 60.0
    ) -> AsyncIterator[TaskMeta]:
        """Jobs from every scheduler, until cancelled; each stream reconnects with backoff
        (re-announcing the host when a scheduler forgot it). A task is yielded once: a job
        for it again within ``repeat_after`` seconds (from another scheduler, or resent after
        a restart) is skipped."""
        jobs: asyncio.Queue[TaskMeta | None] = asyncio.Queue()  # None: a reader stopped
        readers = [self._spawn(self._watch_one(e, host_id, jobs)) for e in self._endpoints.values()]
        recent: OrderedDict[str, float] = OrderedDict()
        try:
            while True:
                meta = await jobs.get()
                if meta is None:
                    if self._closed:
                        return  # aclose() stopped the readers
                elif _first_time(recent, meta.task_id, self._clock(), repeat_after):
                    yield meta
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _watch_one(
        self, endpoint: _Endpoint, host_id: str, jobs: asyncio.Queue[TaskMeta | None]
    ) -> None:
        try:
            await self._watch_forever(endpoint, host_id, jobs)
        finally:
            jobs.put_nowait(None)

    async def _watch_forever(
        self, endpoint: _Endpoint, host_id: str, jobs: asyncio.Queue[TaskMeta | None]
    ) -> None:
        initial, longest = self._watch_backoff
        delay = initial
        while True:
            started = self._clock()
            try:
                received = await self._stream_jobs(endpoint, host_id, jobs)
            except UnknownHostError as exc:
                received = False
                log.debug("seed jobs from %s: %s", endpoint.address, exc)
                await self._reannounce_to(endpoint)
            except DamselflyError as exc:
                received = False
                log.debug("seed jobs from %s: %s", endpoint.address, exc)
            except Exception:  # keep watching "forever, until cancelled", whatever grpc raises
                received = False
                log.warning("seed jobs from %s failed", endpoint.address, exc_info=True)
            if received or self._clock() - started > longest:
                delay = initial
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, longest)

    async def _stream_jobs(
        self, endpoint: _Endpoint, host_id: str, jobs: asyncio.Queue[TaskMeta | None]
    ) -> bool:
        """One stream, until it ends; whether it delivered a job."""
        call = self._stub(endpoint).WatchSeedJobs(pb.WatchSeedJobsRequest(host_id=host_id))
        received = False
        try:
            async for message in call:
                received = True
                self._answered(endpoint)
                _deliver(endpoint.address, message, jobs)
        except grpc.aio.AioRpcError as exc:
            self._failed(endpoint, "seed jobs", exc)
        finally:
            call.cancel()
        log.debug("seed job stream from %s ended", endpoint.address)
        return received

    async def _reannounce_to(self, endpoint: _Endpoint) -> None:
        if self._host is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._stub(endpoint).AnnounceHost(
                host_info_to_pb(self._host), timeout=self._timeout
            )

    # Lifetime ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for endpoint in self._endpoints.values():
            if endpoint.channel is not None:
                await endpoint.channel.close()
                endpoint.channel = endpoint.stub = None

    # Plumbing ----------------------------------------------------------------------------

    def _stub(self, endpoint: _Endpoint) -> Stub:
        if self._closed:
            raise SchedulerError("scheduler client is closed")
        if endpoint.channel is None:
            endpoint.channel = grpc.aio.insecure_channel(endpoint.address, options=self._options())
            endpoint.stub = _new_stub(endpoint.channel)
            self._spawn(_count_connections(endpoint))
        return endpoint.stub

    def _options(self) -> list[tuple[str, int]]:
        backoff_ms = max(100, int(self._retry_down_after * 1000))
        return [
            ("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH),
            ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH),
            ("grpc.initial_reconnect_backoff_ms", min(250, backoff_ms)),
            ("grpc.min_reconnect_backoff_ms", min(250, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ("grpc.keepalive_time_ms", 300_000),  # the server's default minimum ping interval
            ("grpc.keepalive_timeout_ms", 20_000),
        ]

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _first_live(self, key: str, what: str, call: Callable[[Stub], Awaitable[T]]) -> T:
        failures: list[str] = []
        for address in self.order_for(key):
            endpoint = self._endpoints[address]
            try:
                answer = await call(self._stub(endpoint))
            except grpc.aio.AioRpcError as exc:
                failures.append(self._failed(endpoint, what, exc))
                continue
            self._answered(endpoint)
            return answer
        raise SchedulerUnavailableError(what, failures)

    async def _to_every(self, what: str, call: Callable[[Stub], Awaitable[Any]]) -> list[str]:
        async def one(endpoint: _Endpoint) -> str | DamselflyError | None:
            try:
                await call(self._stub(endpoint))
            except grpc.aio.AioRpcError as exc:
                final = _final_error(exc)
                return final if final is not None else self._failed(endpoint, what, exc)
            self._answered(endpoint)
            return None

        endpoints = list(self._endpoints.values())
        outcomes = await asyncio.gather(*(one(e) for e in endpoints))
        answered = [
            e.address for e, outcome in zip(endpoints, outcomes, strict=True) if not outcome
        ]
        finals = [o for o in outcomes if isinstance(o, DamselflyError)]
        if finals and not answered:
            raise finals[0]
        if not answered:
            raise SchedulerUnavailableError(what, [o for o in outcomes if isinstance(o, str)])
        return answered

    def _failed(self, endpoint: _Endpoint, what: str, exc: grpc.aio.AioRpcError) -> str:
        """Raise our error for a final status; else mark ``endpoint`` down, return a note."""
        final = _final_error(exc)
        if final is not None:
            raise final from exc
        endpoint.down_until = self._clock() + self._retry_down_after
        endpoint.ready = False  # the next answer comes over a new connection
        note = f"{endpoint.address}: {exc.code().name} {(exc.details() or '')[:200]}".rstrip()
        log.debug("%s failed: %s", what, note)
        return note

    def _answered(self, endpoint: _Endpoint) -> None:
        endpoint.down_until = 0.0
        if not endpoint.ready:  # this call connected before the state watcher noticed
            endpoint.generation += 1
            endpoint.ready = True


async def _count_connections(endpoint: _Endpoint) -> None:
    """Count the channel's (re)connections, including those made in the background."""
    channel = endpoint.channel
    seen = channel.get_state(try_to_connect=False)
    while True:
        await channel.wait_for_state_change(seen)
        now = channel.get_state(try_to_connect=False)
        if now == _READY and (seen == _READY or not endpoint.ready):
            endpoint.generation += 1  # (READY again after a change: it reconnected meanwhile)
        endpoint.ready, seen = now == _READY, now


def _deliver(address: str, message: pb.SeedJob, jobs: asyncio.Queue[TaskMeta | None]) -> None:
    try:
        jobs.put_nowait(seed_job_from_pb(message))
    except ProtocolError as exc:
        log.warning("malformed seed job from %s ignored: %s", address, exc)


def _first_time(recent: OrderedDict[str, float], key: str, now: float, window: float) -> bool:
    while recent and next(iter(recent.values())) <= now - window:
        recent.popitem(last=False)
    if key in recent:
        return False
    recent[key] = now
    return True


def _batches(holdings: list[TaskHolding]) -> Iterable[list[TaskHolding]]:
    """At most ``ANNOUNCE_BATCH_HOLDINGS`` holdings and about ``ANNOUNCE_BATCH_BYTES`` each."""
    batch: list[TaskHolding] = []
    size = 0
    for holding in holdings:
        length = len(holding.pieces.to_bytes()) + 80 * len(holding.digests) + 512
        if batch and (
            len(batch) == ANNOUNCE_BATCH_HOLDINGS or size + length > ANNOUNCE_BATCH_BYTES
        ):
            yield batch
            batch, size = [], 0
        batch.append(holding)
        size += length
    if batch:
        yield batch
