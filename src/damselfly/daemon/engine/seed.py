"""Seed peer: read new tasks from the origin when a scheduler says so.

A seed streams ``SeedJob``s from every scheduler (``SchedulerApi.watch_seed_jobs``) and
fills each task in its store with parallel range requests (``fill_file``), as the task's
origin reader: every piece is reported with its digest and announced to the upload server the
moment it is stored, so peers download it while the seed is still reading. A job carries no
credentials (the scheduler never hands those tasks to a seed), only the canonical URL and the
non-secret params needed to fetch the same bytes; the task id comes from the job, so the seed
fills exactly the task the peers registered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from damselfly.backends.base import RequestOptions
from damselfly.core.error_groups import group_error
from damselfly.core.errors import DamselflyError
from damselfly.core.urls import parse_url
from damselfly.daemon.engine.counters import EngineCounters
from damselfly.daemon.engine.peer_filler import ReportingSourceFiller
from damselfly.daemon.engine.reporter import PeerReporter, reporting
from damselfly.daemon.engine.settings import PieceStored, Rehome
from damselfly.download.file_download import fill_file
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.protocol.messages import TaskMeta
from damselfly.transport.scheduler.api import SchedulerApi

log = logging.getLogger(__name__)


class SeedWorker:
    def __init__(
        self,
        client: SchedulerApi,
        host_id: str,
        ctx: DownloadContext,
        *,
        on_piece_stored: PieceStored = lambda task_id, number: None,
        max_jobs: int = 4,
        counters: EngineCounters | None = None,
        rehome: Rehome | None = None,
        origin_reader_tasks: set[str] | None = None,
        check: Callable[[str], None] = lambda url: None,
    ) -> None:
        self.counters = counters or EngineCounters()
        self._client = client
        self._host_id = host_id
        self._ctx = ctx
        self._on_piece_stored = on_piece_stored
        self._slots = asyncio.Semaphore(max_jobs)
        # tasks read from the origin here (shared with the engine and the announcer)
        self.origin_reader_tasks = set() if origin_reader_tasks is None else origin_reader_tasks
        self._rehome = rehome
        self._check = check  # the control plane's blocklist: raises BlockedError
        self.jobs_done = 0
        self.jobs_failed = 0

    async def run(self) -> None:
        """Take jobs until cancelled; each job runs in its own task, ``max_jobs`` at once."""
        try:
            async with asyncio.TaskGroup() as group:
                async for meta in self._client.watch_seed_jobs(self._host_id):
                    await self._slots.acquire()
                    group.create_task(self._job(meta))
        except BaseExceptionGroup as errors:
            raise group_error(errors) from None

    async def _job(self, meta: TaskMeta) -> None:
        try:
            await self.seed(meta)
            self.jobs_done += 1
        except DamselflyError as exc:
            self.jobs_failed += 1
            log.warning("seed job %s (%s) failed: %s", meta.task_id, meta.url, exc)
        finally:
            self._slots.release()

    async def seed(self, meta: TaskMeta) -> None:
        """Fill one task from the origin, reporting pieces and digests as they land."""
        self.origin_reader_tasks.add(meta.task_id)
        reporter = PeerReporter(
            self._client, self._host_id, meta.task_id, origin_reader=True, rehome=self._rehome
        )
        ctx = DownloadContext(
            store=self._ctx.store,
            registry=self._ctx.registry,
            observer=self._ctx.observer,
            policy=self._ctx.policy,
            filler=ReportingSourceFiller(reporter, self._on_piece_stored),
        )
        async with reporting(reporter):
            try:
                self._check(meta.url)
                filled = await fill_file(job_for(meta), ctx)
                self.counters.source_bytes += filled.source_bytes
            except BaseException:
                await reporter.finish(failed=True, reason="seed could not read the origin")
                raise
            await reporter.finish()


def job_for(meta: TaskMeta) -> FileJob:
    return FileJob(
        url=parse_url(meta.url),
        output=Path("/nonexistent"),  # fill_file never delivers
        options=RequestOptions(params=tuple(sorted(meta.params.items()))),
        name=meta.url,
        piece_length=meta.piece_length,
        task_id=meta.task_id,
        expected_length=meta.content_length,
    )
