"""The origin reader's piece digests for one task, as a child needs them.

A child verifies every piece against the digest the task's origin reader reported to the
scheduler, never one a parent offers. The reader reports a piece right after it stores it,
while a child may already be fetching it from a parent: ``digest_for`` asks the scheduler for
the page that starts at that piece and waits up to ``DIGEST_WAIT`` seconds for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from damselfly.core.errors import SchedulerError
from damselfly.transport.scheduler.api import SchedulerApi

DIGEST_REFRESH_INTERVAL = 0.1  # seconds between asks for a digest not reported yet
DIGEST_WAIT = 5.0  # seconds a fetched piece waits for its digest before it is dropped


class PieceDigests:
    def __init__(self, client: SchedulerApi, task_id: str, known: Iterable[tuple[int, str]]):
        self._client = client
        self._task_id = task_id
        self._digests = dict(known)
        self._lock = asyncio.Lock()  # one ask at a time: a page answers many waiting pieces

    async def digest_for(self, number: int) -> str | None:
        """The digest of piece ``number``, or None if it was not reported in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DIGEST_WAIT
        while number not in self._digests and loop.time() < deadline:
            async with self._lock:
                if number in self._digests:
                    break
                with contextlib.suppress(SchedulerError):
                    page = await self._client.piece_digests(self._task_id, number)
                    self._digests.update((d.number, d.digest) for d in page.digests)
                if number not in self._digests:
                    await asyncio.sleep(DIGEST_REFRESH_INTERVAL)
        return self._digests.get(number)
