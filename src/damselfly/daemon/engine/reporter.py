"""``PeerReporter``: a peer's progress reports, batched off the per-piece path.

The download engine calls ``piece_gained`` (sync, O(1): a dict insert) for every stored piece
and ``parent_failed`` for every parent it gives up on; ``run`` (a background task owned by the
caller: ``reporting()`` runs it for the length of a block) sends what is pending every
``interval`` seconds, or at once when ``max_batch`` pieces are waiting or, for an origin
reader, when a piece with a digest is (children wait for it).
``ask_for_parents`` sends at once and returns the scheduler's answer; ``want_parents_nowait``
asks with the next background report and hands the answer to ``on_answer``. ``finish`` sends
the rest with ``finished`` or ``failed`` and never raises.

Rules:

- Digests go with pieces only while this peer is the task's *origin reader* (the scheduler
  accepts them from no one else); an answer that says ``BACK_TO_SOURCE`` makes it one.
- A report the scheduler could not take (``SchedulerUnavailableError``) stays pending and is
  retried with a doubling delay (up to ``MAX_RETRY_DELAY``); memory is bounded because pending
  pieces are keyed by number (at most every piece of the task) and bad parents are capped.
- ``UnknownHostError`` (the scheduler restarted or expired this host): the injected ``rehome``
  (announce the host and its tasks again, re-register) runs, then the report is sent again
  once. Without ``rehome`` the report stays pending: the announcer's re-announcement registers
  this peer again, and the next attempt goes through.
- ``ProtocolError`` (the scheduler refused the report as malformed: a caller bug): the batch is
  dropped with a warning, since sending it again would be refused again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from damselfly.core.background import BackgroundTasks
from damselfly.core.errors import DamselflyError, ProtocolError, SchedulerError
from damselfly.daemon.engine.settings import Rehome
from damselfly.protocol.messages import (
    MAX_BAD_PARENTS,
    MAX_TEXT_LENGTH,
    BadParent,
    BadParentReason,
    Decision,
    PeerReport,
    PieceDigest,
    ReportAnswer,
)
from damselfly.transport.scheduler.api import SchedulerApi, UnknownHostError

log = logging.getLogger(__name__)

MAX_REPORT_PIECES = 4096  # pieces per ReportPeer message; a longer backlog is sent in parts
MAX_RETRY_DELAY = 2.0  # children wait for a reader's digests: retry soon after a restart

Wait = Callable[[asyncio.Event, float], Awaitable[None]]


@contextlib.asynccontextmanager
async def reporting(reporter: PeerReporter) -> AsyncIterator[None]:
    """Run ``reporter``'s flush loop for the duration of the block (cancelled at its end)."""
    async with BackgroundTasks() as background:
        background.start_soon(reporter.run())
        yield


async def wait_or_timeout(event: asyncio.Event, seconds: float) -> None:
    """Return when ``event`` is set or ``seconds`` passed (the default ``wait``)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class PeerReporter:
    def __init__(
        self,
        client: SchedulerApi,
        host_id: str,
        task_id: str,
        *,
        origin_reader: bool,
        interval: float = 0.5,
        max_batch: int = 64,
        on_answer: Callable[[ReportAnswer], None] | None = None,
        rehome: Rehome | None = None,
        wait: Wait = wait_or_timeout,
    ) -> None:
        self.origin_reader = origin_reader
        self._rehome = rehome
        self.reports_sent = 0
        self._client = client
        self._host_id = host_id
        self._task_id = task_id
        self._interval = interval
        self._max_batch = max_batch
        self._on_answer = on_answer
        self._wait = wait
        self._pieces: dict[int, PieceDigest | None] = {}
        self._bad: dict[str, BadParent] = {}
        self._want_parents = False
        self._delay = interval
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()
        self._finished = False

    # Sync, from the download engine ------------------------------------------------------

    def piece_gained(self, number: int, digest: str) -> None:
        if self._finished:
            return
        self._pieces[number] = entry = self._digest(number, digest)
        # children hold pieces they fetched from an origin reader until its digests arrive:
        # a reader reports at once (reports coalesce while one is on the way)
        urgent = self.origin_reader and entry is not None
        if (urgent or len(self._pieces) >= self._max_batch) and self._delay == self._interval:
            self._wake.set()  # not while backing off: a down scheduler is not hammered

    def parent_failed(self, peer_id: str, reason: BadParentReason, detail: str = "") -> None:
        try:
            bad = BadParent(peer_id, reason, detail[:MAX_TEXT_LENGTH])
        except ProtocolError as exc:
            log.warning("task %s: bad parent not reported: %s", self._task_id[:12], exc)
            return
        self._bad.pop(peer_id, None)
        self._bad[peer_id] = bad
        while len(self._bad) > MAX_BAD_PARENTS:
            del self._bad[next(iter(self._bad))]  # the oldest report goes first

    def want_parents_nowait(self) -> None:
        """Ask for parents with the next background report (sent at once); the answer goes
        to ``on_answer``."""
        self._want_parents = True
        self._wake.set()

    @property
    def pending_pieces(self) -> int:
        return len(self._pieces)

    # Async -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send pending progress until ``finish``; cancel to stop earlier."""
        while not self._finished:
            await self._wait(self._wake, self._delay)
            self._wake.clear()
            if self._finished:
                return
            if self._pieces or self._bad or self._want_parents:
                await self._flush()

    async def ask_for_parents(self) -> ReportAnswer:
        """Report now (with whatever is pending) and ask for parents; raises ``SchedulerError``
        when no scheduler takes it."""
        self._want_parents = False
        return await self._report(want_parents=True)

    async def finish(self, *, failed: bool = False, reason: str = "") -> None:
        """The last report: every pending piece, then ``finished`` or ``failed``. Logs, never
        raises (cancellation excepted)."""
        if self._finished:
            return
        self._finished = True
        self._wake.set()
        try:
            await self._report(
                finished=not failed, failed=failed, failure_reason=reason[:MAX_TEXT_LENGTH]
            )
        except DamselflyError as exc:
            log.warning("task %s: final report not delivered: %s", self._task_id[:12], exc)
        except Exception:  # a rehome callback's bug must not fail a finished download
            log.warning("task %s: final report not delivered", self._task_id[:12], exc_info=True)

    # Steps -------------------------------------------------------------------------------

    async def _flush(self) -> None:
        want, self._want_parents = self._want_parents, False
        try:
            answer = await self._report(want_parents=want)
        except ProtocolError as exc:
            log.warning("task %s: report refused, dropped: %s", self._task_id[:12], exc)
        except SchedulerError as exc:
            self._want_parents |= want
            self._delay = min(self._delay * 2, MAX_RETRY_DELAY)
            log.info("task %s: report kept for later: %s", self._task_id[:12], exc)
        else:
            self._delay = self._interval
            if want and self._on_answer is not None:
                self._on_answer(answer)

    async def _report(self, **flags: Any) -> ReportAnswer:
        """Send, rehoming once if the scheduler forgot this host or peer."""
        try:
            return await self._send(**flags)
        except UnknownHostError as exc:
            if self._rehome is None:
                raise
            log.info("task %s: %s; announcing again", self._task_id[:12], exc)
            await self._rehome()
        return await self._send(**flags)

    async def _send(self, **flags: Any) -> ReportAnswer:
        """Everything pending, in parts of ``MAX_REPORT_PIECES``; ``flags`` go with the last.
        On failure the pending data is kept (except when refused as malformed)."""
        async with self._sending:
            pieces, self._pieces = self._pieces, {}
            bad, self._bad = self._bad, {}
            try:
                answer = await self._send_parts(list(pieces.items()), tuple(bad.values()), flags)
            except ProtocolError:
                raise
            except BaseException:
                self._pieces = pieces | self._pieces
                self._bad = bad | self._bad
                raise
        if answer.decision is Decision.BACK_TO_SOURCE:
            self.origin_reader = True
        return answer

    async def _send_parts(
        self,
        pieces: list[tuple[int, PieceDigest | None]],
        bad: tuple[BadParent, ...],
        flags: dict[str, Any],
    ) -> ReportAnswer:
        while len(pieces) > MAX_REPORT_PIECES:
            part, pieces = pieces[:MAX_REPORT_PIECES], pieces[MAX_REPORT_PIECES:]
            await self._client.report_peer(self._message(part, ()))
            self.reports_sent += 1
        answer = await self._client.report_peer(self._message(pieces, bad, **flags))
        self.reports_sent += 1
        return answer

    def _message(
        self,
        pieces: list[tuple[int, PieceDigest | None]],
        bad: tuple[BadParent, ...],
        **flags: Any,
    ) -> PeerReport:
        digests = [d for _, d in pieces if d is not None] if self.origin_reader else []
        return PeerReport(
            host_id=self._host_id,
            task_id=self._task_id,
            pieces=tuple(number for number, _ in pieces),
            digests=tuple(digests),
            bad_parents=bad,
            **flags,
        )

    def _digest(self, number: int, digest: str) -> PieceDigest | None:
        if not digest:
            return None
        try:
            return PieceDigest(number, digest)
        except ProtocolError as exc:
            log.warning("task %s: digest not reported: %s", self._task_id[:12], exc)
            return None
