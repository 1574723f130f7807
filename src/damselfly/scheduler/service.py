"""The gRPC face of the scheduler (``grpc.aio``): protobuf in, ``SchedulerState`` calls, out.

Each RPC converts its request with ``protocol/scheduler_codec.py`` (which validates every field
of the untrusted message), calls one method of the sans-IO state, and converts the answer.
Errors are mapped once, here, to status codes with the error's message as details:

- ``ProtocolError`` (malformed ids, bitmaps longer than the task, absurd numbers, secrets in a
  URL, a task id registered with another length) -> ``INVALID_ARGUMENT``;
- an unknown host or peer, or a non-seed watching seed jobs -> ``FAILED_PRECONDITION``: the
  daemon must announce (and re-register) again; this is also how a daemon learns that the
  scheduler restarted;
- an unknown task in ``GetPieceDigests`` -> ``NOT_FOUND``;
- a caller whose certificate's role may not do this (``scheduler/access.py``, mTLS only) ->
  ``PERMISSION_DENIED``;
- ``RegisterPeer`` of a private task (``needs_credentials``: the daemon attests that the
  origin accepted its own credentials) over mTLS answers with a grant bound to the task and
  the caller's certificate (``security/grants.py``), which parents require for its pieces;
- a call that would take the scheduler over a cap on hosts, tasks or peers, or a client
  registering hosts too fast (``scheduler/admission.py``) -> ``RESOURCE_EXHAUSTED``.

``WatchSeedJobs`` streams stay open for the seed's lifetime; jobs queued by any RPC wake them.
``close()`` ends every stream cleanly (status OK) before the server stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from damselfly.core.errors import BlockedError, DamselflyError, ProtocolError
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.messages import (
    Decision,
    ReportAnswer,
    TaskHolding,
    TaskMeta,
    check_host_id,
    check_task_id,
    peer_id_of,
)
from damselfly.protocol.scheduler_codec import (
    digest_page_to_pb,
    holding_from_pb,
    host_info_from_pb,
    register_from_pb,
    registration_to_pb,
    report_answer_to_pb,
    report_from_pb,
    task_meta_to_pb,
)
from damselfly.scheduler.access import Access
from damselfly.scheduler.admission import Admission, AdmissionLimits, CapacityError, client_of
from damselfly.scheduler.quarantine import Quarantine
from damselfly.scheduler.resources import UnknownTaskError
from damselfly.scheduler.seeds import SeedJob
from damselfly.scheduler.state import SchedulerState
from damselfly.security.errors import AccessDeniedError
from damselfly.security.roles import Caller

log = logging.getLogger(__name__)
T = TypeVar("T")
GrantSigner = Callable[[str, str], str]
Context = Any  # grpc.aio.ServicerContext; grpcio ships no type information


def status_for(error: DamselflyError) -> Any:
    """The gRPC status code for one of our errors."""
    if isinstance(error, ProtocolError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, AccessDeniedError | BlockedError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, UnknownTaskError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, CapacityError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.FAILED_PRECONDITION


async def _abort(context: Context, error: DamselflyError) -> NoReturn:
    await context.abort(status_for(error), str(error))
    raise AssertionError("context.abort returned")  # it always raises


class SchedulerService:
    """The servicer; register with ``pb2_grpc.add_SchedulerServicer_to_server``."""

    def __init__(
        self,
        state: SchedulerState,
        *,
        tls: bool = False,
        admission: AdmissionLimits | None = None,
        grant_signer: GrantSigner | None = None,
        admit: Callable[[TaskMeta], None] = lambda task: None,
    ) -> None:
        """``grant_signer(task_id, host_id)``: a grant for a private task (mTLS only);
        ``admit(task)`` raises ``BlockedError`` for a task the blocklist refuses."""
        self._grant_signer = grant_signer
        self.state = state
        self._admit = admit  # the blocklist (scheduler/control.py): raises BlockedError
        self._state = state
        self.access = Access(state, tls=tls)
        self.admission = Admission(
            admission or AdmissionLimits(), state.resources, per_certificate=tls
        )
        self._client = ""  # who makes the call running now (calls run synchronously)
        self.quarantine = Quarantine(state)
        self._wakeups: dict[str, set[asyncio.Event]] = {}
        self._closing = False

    def close(self) -> None:
        """End every ``WatchSeedJobs`` stream (the scheduler is stopping)."""
        self._closing = True
        for events in self._wakeups.values():
            for event in events:
                event.set()

    async def _guarded(self, context: Context, call: Callable[[Caller | None], T]) -> T:
        """Run ``call(caller)``; our errors become the call's status."""
        try:
            caller = self.access.caller(context.auth_context())
            self._client = client_of(caller.node_id if caller else None, context.peer() or "")
            result = call(caller)
        except DamselflyError as exc:
            log.debug("rejected %s: %s", type(exc).__name__, exc)
            await _abort(context, exc)
        self._wake_seeds()
        return result

    def _wake_seeds(self) -> None:
        for host_id in self._state.seeds_with_jobs():
            for event in self._wakeups.get(host_id, ()):
                event.set()

    # Unary RPCs --------------------------------------------------------------------------

    async def AnnounceHost(self, request: pb.HostInfo, context: Context) -> pb.AnnounceHostResponse:
        def announce(caller: Caller | None) -> None:
            info = host_info_from_pb(request)
            self.access.host_announced(caller, info)
            self.admission.host(self._client, info.host_id)
            self._state.host_announced(info)

        await self._guarded(context, announce)
        return pb.AnnounceHostResponse()

    async def AnnounceTasks(
        self, request: pb.AnnounceTasksRequest, context: Context
    ) -> pb.AnnounceTasksResponse:
        def announce(caller: Caller | None) -> None:
            host_id = check_host_id(request.host_id)
            self.access.acts_for_host(caller, host_id)
            holdings = self._unquarantined([holding_from_pb(h) for h in request.tasks])
            fitting = set(self.admission.fitting(host_id, [h.task.task_id for h in holdings]))
            holdings = [h for h in holdings if h.task.task_id in fitting]
            self._state.tasks_announced(host_id, self.access.holdings(caller, holdings))

        await self._guarded(context, announce)
        return pb.AnnounceTasksResponse()

    async def RegisterPeer(
        self, request: pb.RegisterPeerRequest, context: Context
    ) -> pb.RegisterPeerResponse:
        def register(caller: Caller | None) -> pb.RegisterPeerResponse:
            self.access.acts_for_host(caller, check_host_id(request.host_id))
            host_id, meta, pieces = register_from_pb(request)
            self._admit(meta)
            self.admission.tasks(host_id, [meta.task_id])
            registration = self._state.register_peer(host_id, meta, pieces)
            if meta.task_id in self.quarantine:  # origin-only: no parents, no digests
                registration = dataclasses.replace(
                    registration, decision=Decision.BACK_TO_SOURCE, parents=(), digests=()
                )
            if meta.needs_credentials and caller is not None and self._grant_signer is not None:
                grant = self._grant_signer(meta.task_id, caller.node_id)
                registration = dataclasses.replace(registration, piece_grant=grant)
            return registration_to_pb(registration)

        return await self._guarded(context, register)

    async def ReportPeer(
        self, request: pb.ReportPeerRequest, context: Context
    ) -> pb.ReportPeerResponse:
        def report(caller: Caller | None) -> pb.ReportPeerResponse:
            peer_report = report_from_pb(request)
            peer_id = peer_id_of(peer_report.host_id, peer_report.task_id)
            if peer_report.content_rejected:
                self.access.acts_for_host(caller, peer_report.host_id)
                self.quarantine.content_rejected(peer_report.task_id, peer_id, time.monotonic())
            if peer_report.task_id in self.quarantine:
                peer_report = dataclasses.replace(peer_report, digests=())
            self.access.reported(caller, peer_report)
            answer = self._state.report_peer(peer_report)
            if peer_report.task_id in self.quarantine and answer.decision is not None:
                answer = ReportAnswer(decision=Decision.BACK_TO_SOURCE)
            return report_answer_to_pb(answer)

        return await self._guarded(context, report)

    async def GetPieceDigests(
        self, request: pb.GetPieceDigestsRequest, context: Context
    ) -> pb.GetPieceDigestsResponse:
        def digests(caller: Caller | None) -> pb.GetPieceDigestsResponse:
            self.access.registered(caller)
            task_id = check_task_id(request.task_id)
            return digest_page_to_pb(self._state.piece_digests(task_id, request.from_piece))

        return await self._guarded(context, digests)

    async def LeaveHost(
        self, request: pb.LeaveHostRequest, context: Context
    ) -> pb.LeaveHostResponse:
        def leave(caller: Caller | None) -> None:
            host_id = check_host_id(request.host_id)
            self.access.acts_for_host(caller, host_id)
            self._state.host_left(host_id)

        await self._guarded(context, leave)
        return pb.LeaveHostResponse()

    # Seed jobs ---------------------------------------------------------------------------

    async def WatchSeedJobs(
        self, request: pb.WatchSeedJobsRequest, context: Context
    ) -> AsyncIterator[pb.SeedJob]:
        host_id = request.host_id

        def connect(caller: Caller | None) -> None:
            self.access.watches_seed_jobs(caller, check_host_id(host_id))
            self._state.seed_connected(host_id)

        await self._guarded(context, connect)
        wakeup = asyncio.Event()
        self._wakeups.setdefault(host_id, set()).add(wakeup)
        log.info("seed %s is watching for jobs", host_id)
        try:
            await context.send_initial_metadata(())  # the seed learns it is counted
            while not self._closing:
                wakeup.clear()
                # one at a time: a stream that breaks loses at most the job being sent
                while not self._closing and (job := self._state.next_seed_job(host_id)):
                    yield self._deliver(host_id, job)
                await wakeup.wait()
        finally:
            self._wakeups[host_id].discard(wakeup)
            if not self._wakeups[host_id]:
                del self._wakeups[host_id]
            self._state.seed_disconnected(host_id)
            self._wake_seeds()  # its undelivered jobs went to other seeds
            log.info("seed %s stopped watching for jobs", host_id)

    def _unquarantined(self, holdings: list[TaskHolding]) -> list[TaskHolding]:
        """Holdings of origin-only tasks lose their reader claims (pieces stay known)."""
        return [
            dataclasses.replace(h, origin_reader=False, digests=())
            if h.task.task_id in self.quarantine
            else h
            for h in holdings
        ]

    def _deliver(self, host_id: str, job: SeedJob) -> pb.SeedJob:
        log.debug("seed job for %s: task %s", host_id, job.task.task_id[:12])
        return pb.SeedJob(task=task_meta_to_pb(job.task))
