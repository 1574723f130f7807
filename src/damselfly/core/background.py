"""``BackgroundTasks``: tasks that live no longer than the object that started them.

An owner (a client, a server, a download) enters one with ``async with`` (or ``start()``)
when its own lifetime begins, starts its background work with ``start_soon`` and calls
``aclose()`` when it ends: whatever still runs is cancelled and awaited, so no task outlives
its owner and none is forgotten. Underneath is one ``asyncio.TaskGroup``, with its rules: a
task that raises cancels the task that entered the group (the owner's lifetime ends with the
error), and ``aclose()`` then raises the errors as an ``ExceptionGroup``. So background work
that may fail and should not end its owner catches its own errors.

Why not ``async with asyncio.TaskGroup()`` around the owner's block: the group would wrap
every exception of the block in an ``ExceptionGroup`` (callers that catch ``DamselflyError``
would miss it), and a group entered in ``__aenter__`` needs someone to cancel its endless
children before it can be left; this class is that someone. Enter and close it from the same
task, as with any task group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from damselfly.core.lifecycle import AsyncResource

T = TypeVar("T")


class BackgroundTasks(AsyncResource):
    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._running: set[asyncio.Task[Any]] = set()  # the group's, kept to cancel them
        self._closed = False

    async def start(self) -> None:
        if self._group is not None or self._closed:
            raise RuntimeError("background tasks already started")
        self._group = await self._stack.enter_async_context(asyncio.TaskGroup())

    def start_soon(
        self, work: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> asyncio.Task[T]:
        """Run ``work`` in the group; the task is returned so its owner may await or cancel it."""
        if self._group is None or self._closed:
            work.close()
            raise RuntimeError("background tasks are not running")
        task = self._group.create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Cancel what still runs and wait for it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._running):
            task.cancel()
        await self._stack.aclose()
