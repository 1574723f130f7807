"""Blocklist and request-rate checks in front of the daemon's download runner.

``GuardedRunner`` is what the local API runs requests with when a control plane is wired:
before anything is listed, stated or read, the request's URL, application and tag are
checked against the blocklist in force (``BlockedError``, which dfget prints as one line and
exits 1 with nothing written), and the request waits for its turn under the
``requests_per_second`` limit. The seed's own check (``seed_guard``) refuses seed jobs and
preheat jobs for blocked URLs the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from damselfly.core.blocklist import BlockQuery
from damselfly.daemon.servers.local_api import DownloadRunner
from damselfly.download.events import DownloadObserver
from damselfly.download.request import DownloadRequest
from damselfly.protocol.local_api import RunResult
from damselfly.transport.control_plane import ControlPlane


class RequestPacer:
    """At most ``rate`` request starts per second (``None``: no limit), in arrival order."""

    def __init__(self, rate: float | None = None) -> None:
        self.rate = rate
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        rate = self.rate
        if rate is None:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / rate
        if start > now:
            await asyncio.sleep(start - now)


class GuardedRunner:
    def __init__(self, runner: DownloadRunner, plane: ControlPlane, pacer: RequestPacer) -> None:
        self._runner = runner
        self._plane = plane
        self._pacer = pacer

    async def run(self, request: DownloadRequest, observer: DownloadObserver) -> RunResult:
        check_request(self._plane, request)
        await self._pacer.wait_turn()
        return await self._runner.run(request, observer)


def check_request(plane: ControlPlane, request: DownloadRequest) -> None:
    """Raise ``BlockedError`` when the blocklist forbids ``request``."""
    query = BlockQuery(url=request.url, application=request.application, tag=request.tag)
    plane.check(query, shown=request.redacted_url())


def seed_guard(plane: ControlPlane) -> Callable[[str], None]:
    """A seed's check of a job's URL (a seed job carries no application or tag)."""

    def check(url: str) -> None:
        plane.check(BlockQuery(url=url))

    return check
