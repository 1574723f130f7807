"""A seed's jobs: one ``WatchSeedJobs`` stream per scheduler, merged, each job once.

Every scheduler may hand this seed a job (seeds are chosen per task by rendezvous hashing on
the scheduler side), so ``SeedJobStreams.watch`` reads a stream from each, in a reader task
owned by ``SchedulerChannels`` (``aclose()`` of the client ends them, and the watch with
them). A stream that ends or fails is opened again with a jittered, doubling backoff, reset
after a stream that delivered a job (or lived longer than the longest backoff); a scheduler
that answers ``UnknownHostError`` is sent this host again first (``reannounce``). A task is
yielded once: a job for it again within ``repeat_after`` seconds (from another scheduler, or
resent after a restart) is skipped.

``settled`` is set once every scheduler's first stream is open (the scheduler sends its
initial metadata once it counts this seed as taking jobs) or failed: the daemon waits for it
(bounded) before it says it is ready, so a job for a task registered at once reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from damselfly.core.errors import DamselflyError, ProtocolError
from damselfly.protocol import scheduler_pb2 as pb
from damselfly.protocol.messages import TaskMeta
from damselfly.protocol.scheduler_codec import seed_job_from_pb
from damselfly.transport.scheduler.api import UnknownHostError
from damselfly.transport.scheduler.channels import SchedulerChannels

log = logging.getLogger(__name__)

Jobs = asyncio.Queue[TaskMeta | None]  # None: a reader stopped


class SeedJobStreams:
    def __init__(
        self,
        channels: SchedulerChannels,
        *,
        reannounce: Callable[[str], Awaitable[None]],
        backoff: tuple[float, float],
        clock: Callable[[], float],
    ) -> None:
        self._channels = channels
        self._reannounce = reannounce
        self._backoff = backoff  # (first delay, longest delay), seconds
        self._clock = clock
        self.settled = asyncio.Event()
        self._unsettled: set[str] = set()

    async def watch(self, host_id: str, *, repeat_after: float) -> AsyncIterator[TaskMeta]:
        """Jobs from every scheduler, until cancelled or the channels close."""
        jobs: Jobs = asyncio.Queue()
        channels = self._channels
        self._unsettled = set(channels.failover.addresses)
        readers = [
            channels.spawn(self._read(address, host_id, jobs))
            for address in channels.failover.addresses
        ]
        recent: OrderedDict[str, float] = OrderedDict()
        try:
            while True:
                meta = await jobs.get()
                if meta is None:
                    if channels.closed:
                        return  # aclose() stopped the readers
                elif _first_time(recent, meta.task_id, self._clock(), repeat_after):
                    yield meta
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _read(self, address: str, host_id: str, jobs: Jobs) -> None:
        try:
            await self._read_forever(address, host_id, jobs)
        except Exception:  # this reader ends (as the watch learns); the client must not
            log.warning("seed job reader for %s stopped", address, exc_info=True)
        finally:
            jobs.put_nowait(None)

    async def _read_forever(self, address: str, host_id: str, jobs: Jobs) -> None:
        initial, longest = self._backoff
        delay = initial
        while True:
            started = self._clock()
            try:
                received = await self._stream(address, host_id, jobs)
            except UnknownHostError as exc:
                received = False
                log.debug("seed jobs from %s: %s", address, exc)
                await self._reannounce(address)
            except DamselflyError as exc:
                received = False
                log.debug("seed jobs from %s: %s", address, exc)
            except Exception:  # keep watching "forever, until cancelled", whatever grpc raises
                received = False
                log.warning("seed jobs from %s failed", address, exc_info=True)
            if received or self._clock() - started > longest:
                delay = initial
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, longest)

    async def _stream(self, address: str, host_id: str, jobs: Jobs) -> bool:
        """One stream, until it ends; whether it delivered a job."""
        call = self._channels.stub(address).WatchSeedJobs(pb.WatchSeedJobsRequest(host_id=host_id))
        received = False
        try:
            await call.initial_metadata()  # the scheduler counts this seed from here
            self._settle(address)
            async for message in call:
                received = True
                self._channels.answered(address)
                _deliver(address, message, jobs)
        except grpc.aio.AioRpcError as exc:
            self._channels.failed(address, "seed jobs", exc)
        finally:
            self._settle(address)
            call.cancel()
        log.debug("seed job stream from %s ended", address)
        return received

    def _settle(self, address: str) -> None:
        self._unsettled.discard(address)
        if not self._unsettled:
            self.settled.set()


def _deliver(address: str, message: pb.SeedJob, jobs: Jobs) -> None:
    try:
        jobs.put_nowait(seed_job_from_pb(message))
    except ProtocolError as exc:
        log.warning("malformed seed job from %s ignored: %s", address, exc)


def _first_time(recent: OrderedDict[str, float], key: str, now: float, window: float) -> bool:
    while recent and next(iter(recent.values())) <= now - window:
        recent.popitem(last=False)
    if key in recent:
        return False
    recent[key] = now
    return True
