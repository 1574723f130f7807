"""A running daemon's background loops, and when it says it is ready.

The announcer, a seed's job watch and the certificate renewal run in one ``TaskGroup`` until
``stop`` is set; then the daemon leaves its schedulers (best effort, 2 s). The ready line
(``ready``) waits for the first ``AnnounceHost`` to have gone to every scheduler and, on a
seed, for every scheduler's job stream to be open, so a ``dfget`` started the moment a node
is ready finds it known (a seed that is not yet taking jobs would leave a
``--disable-back-to-source`` download without a reader). Each wait lasts at most
``READY_WAIT`` seconds and none outlasts ``stop`` (then no ready line): a scheduler that does
not answer delays the start, never stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from damselfly.core.error_groups import group_error
from damselfly.daemon.engine.announcer import Announcer
from damselfly.daemon.engine.seed import SeedWorker
from damselfly.transport.scheduler.client import SchedulerClient

if TYPE_CHECKING:
    from damselfly.security.renewal import RenewalLoop

log = logging.getLogger(__name__)

READY_WAIT = 3.0  # seconds each start-up step with the schedulers may hold the ready line


@dataclass(frozen=True)
class Loops:
    announcer: Announcer
    seeds: SeedWorker | None
    client: SchedulerClient
    renewal: RenewalLoop | None


async def run_until(stop: asyncio.Event, loops: Loops, ready: Callable[[], None]) -> None:
    """Run the background loops until ``stop``; ``ready`` once the schedulers know this host
    and, on a seed, its job streams are open (each wait at most ``READY_WAIT``; never once
    ``stop`` is set)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(loops.announcer.run())]
            await _at_most(loops.announcer.host_sent.wait(), stop, "announced this host")
            if loops.seeds is not None and not stop.is_set():
                tasks.append(group.create_task(loops.seeds.run()))
                settled = loops.client.seed_jobs_settled()
                await _at_most(settled, stop, "opened its seed job streams")
            if loops.renewal is not None:
                tasks.append(group.create_task(loops.renewal.run()))
            if not stop.is_set():
                ready()
            await stop.wait()
            for task in tasks:
                task.cancel()
    except BaseExceptionGroup as errors:
        raise group_error(errors) from None
    with contextlib.suppress(Exception):
        await asyncio.wait_for(loops.announcer.leave(), timeout=2.0)


async def _at_most(step: Coroutine[Any, Any, object], stop: asyncio.Event, what: str) -> None:
    """Wait for a start-up step, at most ``READY_WAIT`` seconds or until ``stop``."""
    waits = [asyncio.ensure_future(step), asyncio.ensure_future(stop.wait())]
    try:
        done, _ = await asyncio.wait(waits, timeout=READY_WAIT, return_when=FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    if not done:
        log.info("ready before this daemon %s (waited %gs)", what, READY_WAIT)
