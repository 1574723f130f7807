"""``SchedulerClient``: the daemon's side of ``scheduler.proto``, over every configured scheduler.

Where each call goes (``failover.py``): a task's calls (``RegisterPeer``, ``ReportPeer``,
``GetPieceDigests``) to the first live scheduler of the task's rendezvous order, the next one
when it fails; ``AnnounceTasks`` each holding to its task's scheduler, in batches; host calls
(``AnnounceHost``, ``LeaveHost``) and seed-job streams (``seed_jobs.py``) to every scheduler.
How a failure is told apart from a refusal: ``channels.py``. This module turns our messages
into protobufs and back (``protocol/scheduler_codec.py``) and checks what comes back.

Use it with ``async with`` (or ``aclose()`` when done): its channels' background tasks live
as long as it does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence

import grpc

from damselfly.core.errors import ProtocolError, SchedulerError
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
from damselfly.protocol.scheduler_codec import (
    announce_tasks_to_pb,
    digest_page_from_pb,
    host_info_to_pb,
    register_to_pb,
    registration_from_pb,
    report_answer_from_pb,
    report_to_pb,
)
from damselfly.security.tls import ChannelMaker
from damselfly.transport.scheduler.api import SchedulerUnavailableError
from damselfly.transport.scheduler.channels import SchedulerChannels
from damselfly.transport.scheduler.failover import SchedulerFailover
from damselfly.transport.scheduler.seed_jobs import SeedJobStreams

log = logging.getLogger(__name__)

ANNOUNCE_BATCH_HOLDINGS = 256
ANNOUNCE_BATCH_BYTES = 4 * 1024 * 1024  # well under the scheduler's 16 MiB message limit
_KNOWN_PIECE_COUNTS = 4096  # tasks whose piece count is remembered (to decode report answers)


class SchedulerClient:
    def __init__(
        self,
        addresses: Sequence[str],
        *,
        timeout: float = 5.0,
        retry_down_after: float = 5.0,
        watch_backoff: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        channels: ChannelMaker | None = None,
    ) -> None:
        """``channels``: how to open them (mTLS with the node's certificate); plain text
        when None."""
        self._failover = SchedulerFailover(
            addresses, retry_down_after=retry_down_after, clock=clock
        )
        self._channels = SchedulerChannels(self._failover, channels)
        self._seed_jobs = SeedJobStreams(
            self._channels,
            reannounce=self._reannounce_to,
            backoff=(watch_backoff, max(watch_backoff, retry_down_after)),
            clock=clock,
        )
        self._timeout = timeout
        self._host: HostInfo | None = None  # last announced: re-sent when a seed stream needs it
        self._piece_counts: OrderedDict[str, int] = OrderedDict()
        # the scheduler's grants for private tasks, shown to parents (``PieceClient(grants=)``)
        self.grants: OrderedDict[str, str] = OrderedDict()

    async def __aenter__(self) -> SchedulerClient:
        await self._channels.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the seed-job watches and the channels (idempotent)."""
        await self._channels.aclose()

    # Scheduler choice -------------------------------------------------------------------

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._failover.addresses

    def order_for(self, key: str) -> list[str]:
        """``key``'s rendezvous order, addresses marked down recently moved to the end."""
        return self._failover.order_for(key)

    def is_down(self, address: str) -> bool:
        return self._failover.is_down(address)

    def generation(self, address: str) -> int:
        """How many times the channel to ``address`` became READY (changes on reconnect)."""
        return self._failover.generation(address)

    # Host calls (every scheduler) -------------------------------------------------------

    async def announce_host(self, info: HostInfo) -> None:
        await self.announce_host_to_each(info)

    async def announce_host_to_each(self, info: HostInfo) -> list[str]:
        """Announce to every scheduler; the addresses that answered (at least one, else
        ``SchedulerUnavailableError``)."""
        self._host = info
        request = host_info_to_pb(info)
        return await self._channels.to_every(
            "announce host", lambda stub: stub.AnnounceHost(request, timeout=self._timeout)
        )

    async def leave_host(self, host_id: str) -> None:
        request = pb.LeaveHostRequest(host_id=host_id)
        await self._channels.to_every(
            "leave", lambda stub: stub.LeaveHost(request, timeout=self._timeout)
        )

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
            address = self._failover.first_live(holding.task.task_id, skip)
            groups.setdefault(address, []).append(holding)
        return groups

    async def _send_holdings(
        self, address: str, host_id: str, holdings: list[TaskHolding]
    ) -> str | None:
        for batch in _batches(holdings):
            request = announce_tasks_to_pb(host_id, batch)
            try:
                await self._channels.stub(address).AnnounceTasks(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                return self._channels.failed(address, "announce tasks", exc)
        self._channels.answered(address)
        return None

    # Task calls (the task's scheduler) --------------------------------------------------

    async def register_peer(self, host_id: str, task: TaskMeta, held: PieceBitmap) -> Registration:
        request = register_to_pb(host_id, task, held)
        response = await self._channels.first_live(
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
        if registration.piece_grant:
            self.grants[task.task_id] = registration.piece_grant
            self.grants.move_to_end(task.task_id)
            while len(self.grants) > _KNOWN_PIECE_COUNTS:
                self.grants.popitem(last=False)
        return registration

    async def report_peer(self, report: PeerReport) -> ReportAnswer:
        request = report_to_pb(report)
        response = await self._channels.first_live(
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
        response = await self._channels.first_live(
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

    def watch_seed_jobs(
        self, host_id: str, *, repeat_after: float = 60.0
    ) -> AsyncIterator[TaskMeta]:
        """Jobs from every scheduler, until cancelled or closed (``seed_jobs.py``)."""
        return self._seed_jobs.watch(host_id, repeat_after=repeat_after)

    async def seed_jobs_settled(self) -> None:
        """Returns once every scheduler's first seed-job stream opened or failed."""
        await self._seed_jobs.settled.wait()

    async def _reannounce_to(self, address: str) -> None:
        if self._host is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._channels.stub(address).AnnounceHost(
                host_info_to_pb(self._host), timeout=self._timeout
            )


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
