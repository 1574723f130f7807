"""``Announcer``: keeps every scheduler aware of this host and of what its store holds.

Every ``interval`` it sends ``AnnounceHost`` (current load, from ``host()``) to every
scheduler; that is also the keep-alive that stops a scheduler from expiring the host. Then it
sends ``AnnounceTasks`` for each stored task whose *target* changed since it was last
announced. A task's target is its first live scheduler (``SchedulerClient.order_for``) with
that scheduler's connection generation, so a task is announced again when:

- it is new in the store (a download here, or a standalone dfget sharing the store);
- its scheduler went down (the task moves on to the next one) or came back (it moves back);
- its scheduler reconnected, which is how a restart is noticed even between two ticks;
- ``reannounce()`` was called: the daemon's answer to ``UnknownHostError`` (a scheduler that
  forgot this host without a reconnect, e.g. after expiring it), and ``PeerReporter``'s
  ``rehome`` (``app.py`` hands this method to the engine and the seed worker when it builds
  them); rounds asked for at the same time are merged.

``host_sent`` is set once the first ``AnnounceHost`` went to every scheduler (answered or
not): the daemon says it is ready only after it (bounded), so a node started just before a
``dfget`` is already known to the scheduler that dfget asks. What the store holds follows in
the same round, after the ready line: a restarted node may say ready before its schedulers
know its pieces.

What is announced per task, rebuilt from the store: the URL, lengths and whole-file digest
(request params are not stored: ``{}``), the bitmap of recorded pieces (read from metadata,
not re-verified; serving checks again), and for tasks this host read from the origin
(``origin_reader_tasks()``) ``origin_reader`` with the recorded digests, so a restarted
scheduler gets its digests back. Tasks with no piece are skipped unless this host is reading
them from the origin. A rebuilt task is marked ``needs_credentials``: without its params a seed
could not fetch the same bytes, so the scheduler must not hand it to one (a peer that
registers it later still reads it from the origin itself, or from us).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from damselfly.core.digests import parse_digest
from damselfly.core.errors import DamselflyError, ProtocolError, SchedulerError
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import HostInfo, PieceDigest, TaskHolding, TaskMeta
from damselfly.storage import metadata
from damselfly.storage.store import Store
from damselfly.transport.scheduler.api import SchedulerUnavailableError, UnknownHostError
from damselfly.transport.scheduler.client import SchedulerClient

log = logging.getLogger(__name__)

Target = tuple[str, int]  # (scheduler address, its connection generation)


class Announcer:
    def __init__(
        self,
        client: SchedulerClient,
        store: Store,
        host: Callable[[], HostInfo],
        *,
        interval: float = 5.0,
        origin_reader_tasks: Callable[[], set[str]] = lambda: set(),
    ) -> None:
        self._client = client
        self._store = store
        self._host = host
        self._interval = interval
        self._origin_reader_tasks = origin_reader_tasks
        self._sent: dict[str, Target] = {}  # task id -> where it was last announced
        self._lock = asyncio.Lock()
        self._full_rounds_started = 0
        self._unavailable = False
        self.tasks_announced_total = 0
        # set once the host went to every scheduler the first time (answered or not)
        self.host_sent = asyncio.Event()

    async def run(self) -> None:
        """Announce every ``interval`` until cancelled; failures are logged, never raised."""
        while True:
            try:
                await self.announce_once()
            except SchedulerUnavailableError as exc:
                self._log_unavailable(exc)
            except DamselflyError as exc:
                log.error("announcing this host failed: %s", exc)
            await asyncio.sleep(self._interval)

    async def announce_once(self) -> None:
        """One round: the host to every scheduler, then the tasks whose target changed.
        Raises ``SchedulerUnavailableError`` when no scheduler took the host."""
        async with self._lock:
            await self._round()

    async def reannounce(self) -> None:
        """Forget what was announced and announce everything now (rounds asked for while
        another one waited are merged into it)."""
        asked_at = self._full_rounds_started
        async with self._lock:
            if self._full_rounds_started > asked_at:
                return  # a full round that started after we asked just finished
            self._full_rounds_started += 1
            self._sent.clear()
            await self._round()

    async def leave(self) -> None:
        """Tell every scheduler this host is going away (best effort, logged)."""
        try:
            await self._client.leave_host(self._host().host_id)
        except SchedulerError as exc:
            log.info("leaving: %s", exc)

    # Steps -------------------------------------------------------------------------------

    async def _round(self) -> None:
        try:
            info = self._host()
            await self._client.announce_host_to_each(info)
        except SchedulerUnavailableError:
            self._sent.clear()  # announce everything wherever it goes next
            raise
        finally:
            self.host_sent.set()
        if self._unavailable:
            self._unavailable = False
            log.info("a scheduler answers again")
        due = await self._due_tasks()
        if due:
            await self._announce_tasks(info.host_id, due)

    async def _due_tasks(self) -> list[metadata.TaskMeta]:
        stored = await asyncio.to_thread(self._store.list_tasks)
        present = {task.task_id for task in stored}
        self._sent = {k: v for k, v in self._sent.items() if k in present}
        return [t for t in stored if self._sent.get(t.task_id) != self._target(t.task_id)]

    def _target(self, task_id: str) -> Target:
        address = self._client.order_for(task_id)[0]
        return address, self._client.generation(address)

    async def _announce_tasks(self, host_id: str, due: list[metadata.TaskMeta]) -> None:
        readers = set(self._origin_reader_tasks())
        holdings = await asyncio.to_thread(self._holdings, due, readers)
        try:
            await self._client.announce_tasks(host_id, holdings)
        except UnknownHostError as exc:
            log.info("a scheduler forgot this host while it announced its tasks: %s", exc)
            self._sent.clear()
            return
        except SchedulerUnavailableError as exc:
            log.info("tasks not announced: %s", exc)
            return
        except ProtocolError as exc:  # a bug here; sending the same again would not help
            log.warning("tasks refused by the scheduler: %s", exc)
        else:
            self.tasks_announced_total += len(holdings)
        for task in due:
            self._sent[task.task_id] = self._target(task.task_id)

    def _holdings(
        self, due: list[metadata.TaskMeta], readers: Collection[str]
    ) -> list[TaskHolding]:
        """In a worker thread: one metadata read per task."""
        holdings = []
        for task in due:
            holding = self._holding(task, task.task_id in readers)
            if holding is not None:
                holdings.append(holding)
        return holdings

    def _holding(self, task: metadata.TaskMeta, origin_reader: bool) -> TaskHolding | None:
        try:
            pieces = self._store.recorded_pieces(task.task_id)
            if not pieces and not origin_reader:
                return None
            meta = _wire_meta(task)
            numbers = [p.number for p in pieces if p.number < meta.piece_count]
            digests = (
                tuple(PieceDigest(p.number, p.digest) for p in pieces) if origin_reader else ()
            )
            return TaskHolding(
                meta, PieceBitmap.of(meta.piece_count, numbers), origin_reader, digests
            )
        except DamselflyError as exc:
            log.debug("task %s not announced: %s", task.task_id, exc)
            return None

    def _log_unavailable(self, exc: SchedulerUnavailableError) -> None:
        if not self._unavailable:
            log.warning("no scheduler answers; downloads read the origin meanwhile: %s", exc)
        else:
            log.debug("still no scheduler: %s", exc)
        self._unavailable = True


def _wire_meta(task: metadata.TaskMeta) -> TaskMeta:
    return TaskMeta(
        task_id=task.task_id,
        url=task.url,
        content_length=task.content_length,
        piece_length=task.piece_length,
        params={},
        digest=_valid_digest(task.content_digest),
        needs_credentials=True,  # not seedable: see the module docstring
    )


def _valid_digest(digest: str | None) -> str:
    if not digest:
        return ""
    try:
        parse_digest(digest)
    except DamselflyError:
        return ""
    return digest
