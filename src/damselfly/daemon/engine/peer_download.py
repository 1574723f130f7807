"""One task fetched from parents: the P2P download loop.

Owned by one ``asyncio.TaskGroup``: a watcher per parent (its bitmap stream feeds the
``PieceDispatcher``), up to ``concurrent_pieces`` piece requests, and the reporter. The loop
starts requests while the dispatcher has assignments and otherwise sleeps until something
happens (a piece lands or fails, a parent announces pieces).

Every piece is streamed to disk as it arrives and verified against the origin reader's
digest (``piece_receiver.py``, ``piece_digests.py``), never one a parent offers; a piece
that fails (or is cut short: how a parent withholds a piece bad on its disk) is dropped,
its parent reported and never asked for it again, and the piece goes back to the queue;
when that parent was its only holder it is read from the origin at once (``refused``
pieces, one origin read at a time beside the parents), not after ``stall_timeout``. A 404
from a parent (it dropped a bad copy, or our view was stale) loses that piece from what we
think it holds: no blame, but a piece nobody else holds is then refused too. Parent bitmaps
are followed by ``parent_watch.py``.

While fewer than ``WANTED_PARENTS`` are usable, the scheduler is asked for more every
``PARENT_REFRESH_INTERVAL`` (off the loop), so peers that got pieces after we registered
serve us too, not only the seed.

Stalls are noticed in seconds: a request with no byte for ``piece_timeout`` fails its parent;
nothing to fetch for ``IDLE_ASK_INTERVAL`` asks the scheduler for parents. The rest is read
from the origin (unless back-to-source is disabled) when the scheduler says so, when neither
a scheduler nor a parent is left, or when no piece arrived for ``stall_timeout``; a seed still
reading a slow origin is waited for until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from damselfly.core.error_groups import group_error
from damselfly.core.errors import PeerError, PieceDigestError, ProtocolError, SchedulerError
from damselfly.daemon.engine.parent_watch import watch_parent
from damselfly.daemon.engine.piece_digests import PieceDigests
from damselfly.daemon.engine.piece_dispatcher import Assignment, dispatcher_for
from damselfly.daemon.engine.piece_receiver import Outcome, PieceReceiver
from damselfly.daemon.engine.reporter import PeerReporter, reporting
from damselfly.daemon.engine.settings import EngineSettings, PieceStored
from damselfly.download.jobs import DownloadContext, FillRequest, PieceFiller
from damselfly.protocol.messages import BadParentReason, Decision, ParentInfo, Registration
from damselfly.storage.metadata import PieceMeta
from damselfly.transport.piece_client import (
    ParentBusyError,
    ParentStalledError,
    ParentUnreachableError,
    PieceClient,
    PieceLengthError,
    PieceNotHeldError,
)
from damselfly.transport.scheduler.api import SchedulerApi

log = logging.getLogger(__name__)

STALL_CHECK_INTERVAL = 1.0  # seconds between checks for a stall when nothing happens
IDLE_ASK_INTERVAL = 2.0  # seconds with nothing to fetch before asking for parents (and between)
PARENT_REFRESH_INTERVAL = 1.0  # seconds between asks for more parents while we have few
WANTED_PARENTS = 4  # ask for more parents while fewer are usable (the scheduler's max_parents)


class NoParentError(PeerError):
    """No parent can serve the missing pieces and back-to-source is disabled."""


class PeerDownload:
    def __init__(
        self,
        request: FillRequest,
        ctx: DownloadContext,
        registration: Registration,
        reporter: PeerReporter,
        client: SchedulerApi,
        pieces: PieceClient,
        *,
        settings: EngineSettings,
        source: PieceFiller,
        on_piece_stored: PieceStored,
    ) -> None:
        self._request = request
        self._ctx = ctx
        self._task = request.task
        self._registration = registration
        self._reporter = reporter
        self._pieces = pieces
        self._settings = settings
        self._source = source
        self._on_piece_stored = on_piece_stored
        self._dispatcher = dispatcher_for(
            self._task.piece_count,
            self._task.finished_pieces(),
            request.first_piece,
            shuffle_window=2 * settings.concurrent_pieces,  # peers starting together differ
        )
        self._digests = PieceDigests(
            client, self._task.task_id, ((d.number, d.digest) for d in registration.digests)
        )
        self._receiver = PieceReceiver(self._task, pieces, self._digests, settings.piece_timeout)
        self._wakeup = asyncio.Event()
        self._fetching: dict[Assignment, asyncio.Task[None]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._last_progress = 0.0  # when a piece was last stored
        self._last_ask = 0.0  # when the scheduler was last asked for parents because of a stall
        self._last_refresh = 0.0  # when more parents were last asked for
        self._refreshing: asyncio.Task[None] | None = None
        self._origin_read: asyncio.Task[None] | None = None  # refused pieces, from the origin
        self._stopping = False
        self._told_back_to_source = False
        self._group: asyncio.TaskGroup | None = None
        self.source_bytes = 0
        self.peer_bytes = 0

    async def run(self) -> int:
        """Fill the task; returns the bytes read from the origin (fallback only)."""
        self._last_progress = _now()
        try:
            await self._run_group()
        except BaseException:
            await self._reporter.finish(failed=True, reason="download failed")
            raise
        await self._reporter.finish()
        return self.source_bytes

    async def _run_group(self) -> None:
        """The watchers, fetches and loop in one group; its failure is one error."""
        try:
            async with reporting(self._reporter), asyncio.TaskGroup() as group:
                self._group = group
                self._add_parents(self._registration.parents)
                await self._loop()
                self._stop_children()
        except BaseExceptionGroup as errors:
            raise group_error(errors) from None

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._dispatcher.done:
            self._start_fetches()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STALL_CHECK_INTERVAL):
                    await self._wakeup.wait()
            self._wakeup.clear()
            self._refresh_parents_nowait()
            self._read_refused_nowait()
            if self._only_the_origin_can_help():
                await self._fill_rest_from_source()
            elif not self._dispatcher.done and self._stalled():
                await self._on_stall()

    def _start_fetches(self) -> None:
        assert self._group is not None
        while len(self._fetching) < self._settings.concurrent_pieces:
            assignment = self._dispatcher.next_assignment()
            if assignment is None:
                return
            self._dispatcher.piece_started(assignment)
            self._fetching[assignment] = self._group.create_task(self._fetch(assignment))

    def _refresh_parents_nowait(self) -> None:
        """Peers that got pieces since we registered can serve us too: ask for them now and
        then, off the loop, while we have few parents."""
        assert self._group is not None
        now = _now()
        if self._refreshing or now - self._last_refresh < PARENT_REFRESH_INTERVAL:
            return
        if self._dispatcher.done or len(self._dispatcher.usable_parents()) >= WANTED_PARENTS:
            return
        self._last_refresh = now
        self._refreshing = self._group.create_task(self._refresh_parents())

    async def _refresh_parents(self) -> None:
        try:
            answer = await self._reporter.ask_for_parents()
        except SchedulerError:
            return  # the stall check asks again, and says so
        finally:
            self._refreshing = None
        if answer.decision is Decision.BACK_TO_SOURCE:
            self._told_back_to_source = True  # the stall check acts on it
        self._add_parents(answer.parents)

    def _stalled(self) -> bool:
        if self._told_back_to_source:
            return True
        now = _now()
        if now - max(self._last_progress, self._last_ask) < IDLE_ASK_INTERVAL:
            return False
        if now - self._last_progress >= self._settings.stall_timeout:
            return True
        # nothing in flight and nothing fetchable: ask for parents now
        return not self._fetching and self._dispatcher.next_assignment() is None

    async def _on_stall(self) -> None:
        self._told_back_to_source = False
        idle = _now() - self._last_progress
        self._last_ask = _now()
        decision = None
        try:
            answer = await self._reporter.ask_for_parents()
            decision = answer.decision
            self._add_parents(answer.parents)
        except SchedulerError as exc:
            log.warning("task %s: scheduler unavailable while stalled: %s", self._task.task_id, exc)
        if decision is not Decision.BACK_TO_SOURCE and idle < self._settings.stall_timeout:
            if self._dispatcher.next_assignment() is not None:
                return
            if decision is not None or self._dispatcher.usable_parents():
                return  # parents still filling (a seed reading a slow origin): not a stall yet
        if not self._settings.back_to_source:
            raise NoParentError(
                f"task {self._task.task_id}: no parent can serve "
                f"{len(self._dispatcher.unavailable())} missing pieces and back-to-source is "
                "disabled"
            )
        await self._fill_rest_from_source()

    async def _fill_rest_from_source(self) -> None:
        if self._origin_read is not None:  # the refused pieces first: never read twice
            await asyncio.wait([self._origin_read])
        log.info("task %s: reading the missing pieces from the origin", self._task.task_id)
        await self._fill_from_source(None)
        for number in self._task.finished_pieces():
            self._dispatcher.piece_held(number)

    def _only_the_origin_can_help(self) -> bool:
        """Every missing piece was served bad by its only holder and nothing is under way
        (an origin that ignores ``Range``): read them now, not after a stall."""
        if not self._settings.back_to_source or self._fetching or self._origin_read:
            return False
        missing = self._dispatcher.missing
        return bool(missing) and self._dispatcher.refused() == missing

    def _read_refused_nowait(self) -> None:
        """Pieces a parent served bad that no other parent holds: read them from the origin
        now, beside the parents, rather than after a stall. One such read at a time; an origin
        that ignores ``Range`` is read once at the end instead (one whole read per piece
        would multiply the origin's bytes)."""
        assert self._group is not None
        if self._origin_read is not None or not self._settings.back_to_source:
            return
        refused = self._dispatcher.refused()
        if not refused or not self._request.stat.supports_ranges:
            return
        log.info("task %s: %d pieces only a bad parent holds: reading them from the origin",
                 self._task.task_id[:12], len(refused))  # fmt: skip
        self._dispatcher.pieces_from_origin(refused)
        self._origin_read = self._group.create_task(self._read_refused(refused))

    async def _read_refused(self, numbers: frozenset[int]) -> None:
        try:
            await self._fill_from_source(numbers)
        finally:
            self._dispatcher.origin_read_ended()
            self._origin_read = None
            self._wakeup.set()

    async def _fill_from_source(self, numbers: frozenset[int] | None) -> None:
        """Read ``numbers`` (None: every missing piece) from the origin into the task."""

        def on_piece(piece: PieceMeta) -> None:
            self._dispatcher.piece_held(piece.number)
            self._stored(piece, digest=piece.digest)

        request = FillRequest(
            self._request.job,
            self._task,
            self._request.stat,
            self._request.content_digest,
            on_piece,
            pieces=numbers,
        )
        self.source_bytes += await self._source.fill(request, self._ctx)

    # -- one piece -----------------------------------------------------------------------------

    async def _fetch(self, assignment: Assignment) -> None:
        parent = assignment.parent
        try:
            await self._fetch_and_store(assignment)
        except PieceDigestError:
            self._dispatcher.piece_bad(assignment)
            self._blame(assignment, BadParentReason.DIGEST, "piece failed verification")
        except PieceLengthError:  # cut short: how a parent withholds a piece bad on its disk
            self._dispatcher.piece_bad(assignment)
            self._blame(assignment, BadParentReason.REFUSED, "piece cut short")
        except ParentBusyError:
            self._dispatcher.piece_abandoned(assignment)
        except PieceNotHeldError:  # dropped by the parent (bad on its disk) or a stale view
            self._dispatcher.piece_not_held(assignment)
        except ParentStalledError:
            self._failed(assignment, BadParentReason.TIMEOUT, "no data")
        except ParentUnreachableError:
            self._dispatcher.parent_lost(parent.peer_id)
            self._failed(assignment, BadParentReason.UNREACHABLE, "unreachable")
        except (PeerError, ProtocolError) as exc:
            self._failed(assignment, BadParentReason.REFUSED, type(exc).__name__)
        except asyncio.CancelledError:
            if assignment in self._fetching:
                raise  # the download is stopping (a twin ``_stop_twins`` stopped is not here)
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        finally:
            self._fetching.pop(assignment, None)
            self._wakeup.set()

    async def _fetch_and_store(self, assignment: Assignment) -> None:
        receipt = await self._receiver.receive(assignment.parent.address, assignment.number)
        if receipt.outcome is Outcome.ABANDONED:
            self._dispatcher.piece_abandoned(assignment)
        elif receipt.outcome is Outcome.HELD or receipt.meta is None:  # a twin was first
            self._dispatcher.piece_succeeded(assignment, 0)
        else:
            self._dispatcher.piece_succeeded(assignment, receipt.meta.length)
            self.peer_bytes += receipt.meta.length
            self._stored(receipt.meta, digest=receipt.meta.digest)

    def _stored(self, meta: PieceMeta, *, digest: str) -> None:
        self._stop_twins(meta.number)
        self._last_progress = _now()
        self._reporter.piece_gained(meta.number, digest)
        self._request.on_piece(meta)
        self._on_piece_stored(self._task.task_id, meta.number)

    def _stop_twins(self, number: int) -> None:
        """Other requests for a piece just stored (by a parent's request, from the origin) stop
        now: the endgame asks several parents, and each left to run kept its parent's uplink
        busy with a whole piece nobody needed while the last nodes waited on the same few
        holders (issue 15, "the swarm's tail"). Its bytes would not be written (the piece is
        held) but would still be sent. The request that stored it is the running task."""
        storing = asyncio.current_task()
        twins = [a for a, f in self._fetching.items() if a.number == number and f is not storing]
        for twin in twins:
            fetch = self._fetching.pop(twin)  # its slot is free now, even if it never ran
            self._dispatcher.piece_abandoned(twin)
            fetch.cancel()

    def _failed(self, assignment: Assignment, reason: BadParentReason, detail: str) -> None:
        self._dispatcher.piece_failed(assignment)
        self._blame(assignment, reason, detail)

    def _blame(self, assignment: Assignment, reason: BadParentReason, detail: str) -> None:
        self._reporter.parent_failed(assignment.parent.peer_id, reason, detail)
        log.debug("task %s piece %d from %s: %s", self._task.task_id, assignment.number,
                  assignment.parent.peer_id, detail)  # fmt: skip

    # -- parents -------------------------------------------------------------------------------

    def _add_parents(self, parents: tuple[ParentInfo, ...]) -> None:
        assert self._group is not None
        if self._stopping:  # a late answer: no new watcher may outlive the download
            return
        for info in parents:
            address = f"http://{_host(info.ip)}:{info.upload_port}"
            state = self._dispatcher.parent_added(
                info.peer_id, address, info.pieces.numbers(), max(1, info.free_upload_slots)
            )
            watcher = self._watchers.get(info.peer_id)
            if watcher is None or watcher.done():
                self._watchers[info.peer_id] = self._group.create_task(self._watch(state.peer_id))
        self._wakeup.set()

    async def _watch(self, peer_id: str) -> None:
        task = self._task
        try:
            await watch_parent(
                self._pieces, self._dispatcher, task.task_id, task.piece_count, peer_id,
                self._wakeup.set,
            )  # fmt: skip
        except ParentUnreachableError as exc:  # not a 404
            self._watch_broke(peer_id, exc)

    def _watch_broke(self, peer_id: str, exc: Exception) -> None:
        """The parent's bitmap stream broke: it went away (killed, restarted). Tell the
        scheduler at once, so a dead origin reader is replaced in seconds, not at its host's
        expiry; stop asking it for pieces."""
        if self._dispatcher.done or self._stopping:
            return
        self._dispatcher.parent_lost(peer_id)
        self._reporter.parent_failed(peer_id, BadParentReason.UNREACHABLE, "bitmap stream broke")
        log.info("task %s: parent %s went away: %s", self._task.task_id, peer_id, exc)
        self._wakeup.set()

    def _stop_children(self) -> None:
        self._stopping = True
        extra = [t for t in (self._refreshing, self._origin_read) if t is not None]
        for task in [*self._watchers.values(), *self._fetching.values(), *extra]:
            task.cancel()


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _now() -> float:
    return asyncio.get_running_loop().time()
