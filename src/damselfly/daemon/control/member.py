"""``DaemonControl``: everything the daemon does for the control plane, built in one place.

Entered by ``daemon/app.py`` after the piece server is up; it

- loads the last dynamic config from the store directory (``dynconfig.json``, 0600) so the
  blocklist holds from the first request after a restart, then runs the ``ManagerLink``
  (register as ``peer`` or ``seed``, keep alive, poll) in the background when a manager is
  configured: a manager outage changes nothing, the last config stays in force;
- applies the effective rate limits live: back-to-source bytes/s on every origin read
  (``throttle.ThrottledRegistry``), upload bytes/s on the piece server (the smaller of the
  setting and the manager's), requests/s on the local API's downloads;
- wraps the local API's runner with the blocklist check (``guard.GuardedRunner``) and hands
  the seed worker its check of seed jobs;
- on a seed, runs the preheat worker (``preheat.PreheatWorker``) once the runner exists.

Without a manager, all of this is a no-op around the same objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from damselfly.backends.registry import BackendRegistry, BackendSettings, default_registry
from damselfly.config.daemon import DaemonSettings
from damselfly.config.manager_link import DYNCONFIG_FILE
from damselfly.daemon.control.guard import GuardedRunner, RequestPacer, seed_guard
from damselfly.daemon.control.throttle import LiveBucket, ThrottledRegistry
from damselfly.daemon.engine.counters import EngineCounters
from damselfly.daemon.servers.local_api import DownloadRunner
from damselfly.protocol.rate_limits import RateLimitValues
from damselfly.transport.control_plane import ControlPlane, member_link, registration

if TYPE_CHECKING:  # the manager's wire models: imported where a manager is configured
    from damselfly.protocol.manager import MemberRegistration, MemberStats

log = logging.getLogger(__name__)
RateSetter = Callable[[float | None], None]


def member_stats(counters: EngineCounters) -> MemberStats:
    from damselfly.protocol.manager import MemberStats

    return MemberStats(
        source_bytes=counters.source_bytes,
        peer_bytes=counters.peer_bytes,
        cache_hits=counters.cache_hits,
        task_failures=counters.task_failures,
        duration_bounds=list(counters.duration.bounds),
        duration_counts=list(counters.duration.counts),
    )


class DaemonControl:
    def __init__(self, settings: DaemonSettings, env: Mapping[str, str], store_root: Path) -> None:
        self.plane = ControlPlane()
        self.origin_bucket = LiveBucket()
        self.pacer = RequestPacer()
        self.role = "seed" if settings.seed else "peer"
        self._static_upload = settings.upload.rate_limit or None
        self._upload_setters: list[RateSetter] = []
        self.link = member_link(
            settings.manager,
            env,
            role=self.role,
            default_cache=store_root / DYNCONFIG_FILE,
            plane=self.plane,
        )
        self._settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        self.plane.on_limits(self._apply_limits)

    # -- what app.py wires -----------------------------------------------------------------

    def guarded(self, runner: DownloadRunner) -> DownloadRunner:
        return GuardedRunner(runner, self.plane, self.pacer)

    def registry_factory(self) -> Callable[[BackendSettings], BackendRegistry]:
        return lambda settings: self.throttled(default_registry(settings))

    def throttled(self, registry: BackendRegistry) -> BackendRegistry:
        return ThrottledRegistry(registry, self.origin_bucket)

    def seed_check(self) -> Callable[[str], None]:
        return seed_guard(self.plane)

    def watch_upload(self, set_rate: RateSetter) -> None:
        self._upload_setters.append(set_rate)
        set_rate(self._upload_rate(self.plane.limits))

    def start(self, upload_port: int) -> None:
        """Run the manager link in the background (no-op without a manager)."""
        if self.link is None:
            return
        member = self._registration(upload_port)
        self._spawn(self.link.run(member), "manager link")

    def report_stats(self, counters: EngineCounters) -> None:
        """Send the engine's counters with every keepalive (the manager's rollout figures)."""
        if self.link is not None:
            self.link.stats = lambda: member_stats(counters)

    def start_preheat(self, runner: DownloadRunner) -> None:
        """On a seed with a manager: claim and run preheat jobs through ``runner``."""
        if self.link is None or self.role != "seed":
            return
        from damselfly.daemon.control.preheat import PreheatWorker

        worker = PreheatWorker(self.link, runner, self.plane)
        self._spawn(worker.run(), "preheat worker")

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.link is not None:
            await self.link.client.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _apply_limits(self, limits: RateLimitValues) -> None:
        self.origin_bucket.set_rate(limits.back_to_source_bps)
        self.pacer.rate = limits.requests_per_second
        for set_rate in self._upload_setters:
            set_rate(self._upload_rate(limits))
        log.info(
            "rate limits: back-to-source %s B/s, upload %s B/s, %s requests/s",
            limits.back_to_source_bps, limits.upload_bps, limits.requests_per_second,
        )  # fmt: skip

    def _upload_rate(self, limits: RateLimitValues) -> float | None:
        present = [v for v in (self._static_upload, limits.upload_bps) if v]
        return min(present) if present else None

    def _registration(self, upload_port: int) -> MemberRegistration:
        s = self._settings
        ip = s.upload.advertise_ip or "127.0.0.1"
        return registration(self.role, ip=ip, port=upload_port, idc=s.idc, location=s.location)

    def _spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s stopped", what)

        self._tasks.append(asyncio.create_task(guarded()))
