"""Scheduler stand-ins for daemon tests.

- ``FakeSchedulerClient``: an in-memory ``SchedulerApi`` (``transport/scheduler/api.py``) that
  records every call, answers from simple scripts, and fails on demand (``fail_next``).
- ``ManualWait``: a ``wait(event, seconds)`` the test drives (``elapse``), for loops that wake
  on an event or a timeout (``PeerReporter``) without real sleeping.
- ``LocalScheduler``: the real scheduler (``scheduler.app.serve``) in the test's event loop on
  127.0.0.1; ``stop()`` then ``start()`` restarts it on the same port with empty state.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from damselfly.config.scheduler import load
from damselfly.protocol import messages as msg
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.scheduler.app import RunningScheduler, serve
from damselfly.scheduler.state import SchedulerState


class FakeSchedulerClient:
    """Every call is appended to ``calls`` (by method name); a call that succeeds records its
    argument (``reports``, ``hosts``, ...), one made to fail by ``fail_next`` records it in
    ``failed_calls`` instead."""

    def __init__(self, *, decision: msg.Decision = msg.Decision.BACK_TO_SOURCE) -> None:
        self.decision = decision
        self.parents: tuple[msg.ParentInfo, ...] = ()
        self.answers: deque[msg.ReportAnswer] = deque()  # for reports with want_parents, in order
        self.digests: dict[str, dict[int, str]] = defaultdict(dict)
        self.page_size = 4096
        self.calls: list[str] = []
        self.hosts: list[msg.HostInfo] = []
        self.holdings: list[msg.TaskHolding] = []
        self.registrations: list[tuple[str, msg.TaskMeta, PieceBitmap]] = []
        self.reports: list[msg.PeerReport] = []
        self.left: list[str] = []
        self.failed_calls: list[tuple[str, Any]] = []
        self.seed_jobs: asyncio.Queue[msg.TaskMeta] = asyncio.Queue()
        self._failures: dict[str, deque[BaseException]] = defaultdict(deque)

    def fail_next(self, method: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``error`` (after being recorded)."""
        self._failures[method].extend([error] * times)

    def _called(self, method: str, argument: Any = None) -> None:
        self.calls.append(method)
        if self._failures[method]:
            self.failed_calls.append((method, argument))
            raise self._failures[method].popleft()

    async def announce_host(self, info: msg.HostInfo) -> None:
        self._called("announce_host", info)
        self.hosts.append(info)

    async def announce_tasks(self, host_id: str, holdings: Sequence[msg.TaskHolding]) -> None:
        self._called("announce_tasks", holdings)
        self.holdings.extend(holdings)

    async def register_peer(
        self, host_id: str, task: msg.TaskMeta, held: PieceBitmap
    ) -> msg.Registration:
        self._called("register_peer", task)
        self.registrations.append((host_id, task, held))
        known = tuple(msg.PieceDigest(n, d) for n, d in sorted(self.digests[task.task_id].items()))
        peer_id = msg.peer_id_of(host_id, task.task_id)
        return msg.Registration(peer_id, self.decision, self.parents, known, task.piece_count)

    async def report_peer(self, report: msg.PeerReport) -> msg.ReportAnswer:
        self._called("report_peer", report)
        self.reports.append(report)
        for digest in report.digests:
            self.digests[report.task_id].setdefault(digest.number, digest.digest)
        if not report.want_parents:
            return msg.ReportAnswer()
        return (
            self.answers.popleft()
            if self.answers
            else msg.ReportAnswer(self.decision, self.parents)
        )

    async def piece_digests(self, task_id: str, from_piece: int = 0) -> msg.DigestPage:
        self._called("piece_digests", task_id)
        known = sorted(n for n in self.digests[task_id] if n >= from_piece)
        page = tuple(msg.PieceDigest(n, self.digests[task_id][n]) for n in known[: self.page_size])
        return msg.DigestPage(page, 0, len(known) > self.page_size)

    async def all_piece_digests(self, task_id: str) -> tuple[msg.PieceDigest, ...]:
        return (await self.piece_digests(task_id)).digests

    async def leave_host(self, host_id: str) -> None:
        self._called("leave_host", host_id)
        self.left.append(host_id)

    async def watch_seed_jobs(self, host_id: str) -> AsyncIterator[msg.TaskMeta]:
        self._called("watch_seed_jobs", host_id)
        while True:
            yield await self.seed_jobs.get()

    # For assertions ----------------------------------------------------------------------

    @property
    def reported_pieces(self) -> list[int]:
        return [n for report in self.reports for n in report.pieces]


class ManualWait:
    """``await wait(event, seconds)`` returns when ``event`` is set or the test calls
    ``elapse()`` (as if ``seconds`` passed; an ``elapse`` before the wait is kept for it).
    ``seconds`` asked are recorded in ``asked``."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.waiting = 0
        self._elapsed = asyncio.Semaphore(0)

    async def __call__(self, event: asyncio.Event, seconds: float) -> None:
        self.asked.append(seconds)
        self.waiting += 1
        woken = asyncio.ensure_future(event.wait())
        elapsed = asyncio.ensure_future(self._elapsed.acquire())
        try:
            await asyncio.wait({woken, elapsed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting -= 1
            woken.cancel()
            elapsed.cancel()

    def elapse(self) -> None:
        self._elapsed.release()


class LocalScheduler:
    """A real scheduler on 127.0.0.1 (port chosen at the first start, kept for restarts)."""

    def __init__(self, **overrides: Any) -> None:
        self.port = 0
        self.running: RunningScheduler | None = None
        self._overrides = overrides
        self._stop = asyncio.Event()
        self._server: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def state(self) -> SchedulerState:
        assert self.running is not None, "scheduler not running"
        return self.running.state

    async def start(self) -> None:
        settings = load(
            overrides={
                "listen": self.address,
                "metrics_listen": "127.0.0.1:0",
                "shutdown_grace": 0.5,
                **self._overrides,
            }
        )
        self._stop = asyncio.Event()
        ready: asyncio.Future[RunningScheduler] = asyncio.get_running_loop().create_future()
        self._server = asyncio.create_task(
            serve(settings, stop=self._stop, on_ready=ready.set_result)
        )
        either: list[asyncio.Future[Any]] = [ready, self._server]  # serve() may fail first
        await asyncio.wait(either, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if self._server.done():
            self._server.result()  # raises why it stopped
        self.running = ready.result()
        self.port = int(self.running.grpc_address.rpartition(":")[2])

    async def stop(self) -> None:
        if self._server is None:
            return
        self._stop.set()
        await asyncio.wait_for(self._server, 5)
        self._server = self.running = None

    async def __aenter__(self) -> LocalScheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
