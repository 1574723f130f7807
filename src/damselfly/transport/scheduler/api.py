"""What the daemon sees of its schedulers: the ``SchedulerApi`` calls and the errors they raise.

The download engine, reporter, announcer and seed worker are written against this;
``client.SchedulerClient`` implements it over gRPC and
``damselfly.testing.fake_scheduler.FakeSchedulerClient`` in memory. Nothing secret is sent:
``TaskMeta`` refuses credentials on construction.

Errors, by what the caller does next:

- ``SchedulerUnavailableError``: every scheduler tried failed (down, timed out, broken): read
  the origin meanwhile, try again later;
- ``UnknownHostError``: that scheduler does not know this host or peer (it restarted, or
  expired us): announce again, re-register, retry;
- ``UnknownTaskError``: it does not know the task (``GetPieceDigests``);
- ``ProtocolError`` (``core.errors``): it refused the message as malformed; another scheduler
  would say the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from damselfly.core.errors import SchedulerError
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import (
    DigestPage,
    HostInfo,
    PeerReport,
    PieceDigest,
    Registration,
    ReportAnswer,
    TaskHolding,
    TaskMeta,
)


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
    """What the download engine, reporter and seed worker use."""

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
