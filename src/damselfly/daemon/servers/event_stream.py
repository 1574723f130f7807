"""Download events -> local API events, with progress batched per file.

``EventBuffer`` is the ``DownloadObserver`` a daemon download reports to. It queues
``file_started`` / ``file_finished`` at once and sums ``bytes_received`` per file into one
``progress`` event at most every ``interval`` seconds (a file's pending bytes are always sent
before its ``file_finished``). ``close(final)`` queues the last event. It does no I/O: the
local API's writer calls ``wait_ready()`` and ``take()`` and writes what it gets.

All methods run on the event loop thread (the download layer calls observers there).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from damselfly.protocol.local_api import Event, FileFinished, FileStarted, Progress

PROGRESS_INTERVAL = 0.1  # seconds between progress events of one file


class EventBuffer:
    def __init__(
        self,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._ready: list[Event] = []
        self._pending: dict[str, int] = {}  # bytes not yet reported, per file
        self._last_sent: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    # -- DownloadObserver --------------------------------------------------------------------

    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        self._last_sent[name] = self._clock()
        self._push(FileStarted(name, total_bytes, held_bytes))

    def bytes_received(self, name: str, length: int) -> None:
        self._pending[name] = self._pending.get(name, 0) + length
        if self._clock() - self._last_sent.get(name, 0.0) >= self._interval:
            self._flush(name)
            self._wakeup.set()

    def file_finished(self, name: str) -> None:
        self._flush(name)
        self._last_sent.pop(name, None)
        self._push(FileFinished(name))

    def file_failed(self, name: str, error: BaseException) -> None:
        self._flush(name)
        self._last_sent.pop(name, None)
        self._wakeup.set()

    # -- the writer's side -------------------------------------------------------------------

    def close(self, final: Event) -> None:
        """Queue the last event; ``take`` hands out whatever is left, then ``done`` is true."""
        for name in list(self._pending):
            self._flush(name)
        self._push(final)
        self._closed = True

    @property
    def done(self) -> bool:
        return self._closed and not self._ready

    async def wait_ready(self) -> None:
        """Until an event is queued, or pending progress falls due."""
        timeout = self._interval if self._pending else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        self._wakeup.clear()

    def take(self) -> list[Event]:
        now = self._clock()
        for name in list(self._pending):
            if now - self._last_sent.get(name, 0.0) >= self._interval:
                self._flush(name)
        ready, self._ready = self._ready, []
        return ready

    def _flush(self, name: str) -> None:
        length = self._pending.pop(name, 0)
        if length:
            self._ready.append(Progress(name, length))
            self._last_sent[name] = self._clock()

    def _push(self, event: Event) -> None:
        self._ready.append(event)
        self._wakeup.set()
