"""The piece server's watch streams (``?watch=1``): a task's newly held pieces, as they land.

A stream starts with the task's bitmap, then sends one event per newly held piece, a
heartbeat when nothing was sent for ``heartbeat_interval`` seconds, and ``TaskComplete`` when
every piece is held (wire format: ``protocol/pieces_http.py``). The download engine's
``piece_added`` (through ``PieceWatchers.notify``) wakes a task's watchers at once; the store
is also polled every ``poll_interval`` seconds for pieces written by another process.

A wake-up costs no query of the metadata store: the held pieces come from the task's
in-memory view (``storage/piece_index.py``), and only when its version moved are they
compared with what was sent. The view is reloaded from the store (``TaskStorage.catch_up``, one
scan of the task's rows) at most once per ``poll_interval``, for other processes' pieces, and
only if another process committed a change since it was last loaded (issue 15: the scans were
~3 % of a swarm node's event-loop time).
``close()`` ends every stream at its next wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import hdrs, web

from damselfly.core.errors import DamselflyError
from damselfly.daemon.servers.upload_tasks import SharedTask
from damselfly.protocol import pieces_http as wire

_log = logging.getLogger(__name__)


class _ChangeSignal:
    """Wakes every watcher of one task; take ``current()`` *before* reading the store."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.watchers = 0

    def current(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


class PieceWatchers:
    def __init__(self, *, poll_interval: float, heartbeat_interval: float) -> None:
        if poll_interval <= 0 or heartbeat_interval <= 0:
            raise ValueError("watch intervals must be > 0 seconds")
        self._poll_interval = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._signals: dict[str, _ChangeSignal] = {}
        self._closing = False
        self.open_streams = 0

    def notify(self, task_id: str) -> None:
        """A piece of ``task_id`` was stored: wake its watchers now."""
        signal = self._signals.get(task_id)
        if signal is not None:
            signal.notify()

    def close(self) -> None:
        self._closing = True
        for signal in self._signals.values():
            signal.notify()

    async def serve(self, request: web.Request, task: SharedTask) -> web.StreamResponse:
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: wire.WATCH_CONTENT_TYPE})
        signal = self._signals.setdefault(task.task_id, _ChangeSignal())
        signal.watchers += 1
        self.open_streams += 1
        try:
            await response.prepare(request)
            await self._stream(response, task, signal)
        except ConnectionError:
            response.force_close()
        except DamselflyError as exc:
            _log.warning("task %s: watch failed: %s", task.task_id, exc)
            abort_response(request, response)
        finally:
            self.open_streams -= 1
            signal.watchers -= 1
            if signal.watchers == 0:
                self._signals.pop(task.task_id, None)
        return response

    async def _stream(
        self, response: web.StreamResponse, task: SharedTask, signal: _ChangeSignal
    ) -> None:
        storage, loop = task.storage, asyncio.get_running_loop()
        wake = signal.current()
        held, version = storage.finished_pieces(), storage.version
        await response.write(
            wire.encode_watch_event(wire.BitmapSnapshot(storage.piece_count, held))
        )
        last_write = last_refresh = loop.time()
        while len(held) < storage.piece_count and not self._closing:
            await _wait(wake, min(self._poll_interval, self._heartbeat_interval))
            wake = signal.current()
            if loop.time() - last_refresh >= self._poll_interval:
                storage.catch_up()  # pieces recorded by another process
                last_refresh = loop.time()
            lines = []
            if storage.version != version:
                version, now_held = storage.version, storage.finished_pieces()
                lines = [
                    wire.encode_watch_event(wire.PieceHeld(n)) for n in sorted(now_held - held)
                ]
                held |= now_held
            if not lines and loop.time() - last_write >= self._heartbeat_interval:
                lines = [wire.HEARTBEAT_LINE]
            if lines:
                await response.write(b"".join(lines))
                last_write = loop.time()
        if len(held) >= storage.piece_count:
            await response.write(wire.encode_watch_event(wire.TaskComplete()))


def abort_response(request: web.Request, response: web.StreamResponse) -> None:
    """End a response whose headers are out without finishing its body: close the connection
    (buffered bytes are still flushed), so the child sees a short body, never a wrong one."""
    if request.transport is not None:
        request.transport.close()
    response.force_close()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
