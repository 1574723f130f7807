"""Fill a task from the mesh: the daemon's ``PieceFiller``.

``fill`` registers the task with its scheduler and follows the decision:

- ``BACK_TO_SOURCE``: read the origin (``SourceFiller``) as the task's *origin reader*,
  reporting every piece with its digest so others can verify what they receive from us.
- ``FROM_PARENTS`` / ``WAIT_FOR_SEED``: ``PeerDownload`` fetches pieces from parents.
- no scheduler answers: read the origin, with one warning; the download never depends on the
  control plane being up.

Each stored piece is announced to the upload server at once (``on_piece_stored``), so it is
shareable the moment it is verified. Requests for a task already being filled here wait for
that fill (``_wait_for_other_fill``) instead of registering a second peer of the same host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from damselfly.core.digests import SUPPORTED_ALGORITHMS, Digest
from damselfly.core.errors import SchedulerError
from damselfly.core.ids import canonical_url
from damselfly.daemon.engine.counters import EngineCounters
from damselfly.daemon.engine.peer_download import NoParentError, PeerDownload
from damselfly.daemon.engine.reporter import PeerReporter, reporting
from damselfly.daemon.engine.settings import EngineSettings, PieceStored, Rehome
from damselfly.daemon.engine.spot_check import spot_check
from damselfly.download.credentials import needs_credentials
from damselfly.download.file_download import SOURCE_VERSION_PARAM
from damselfly.download.jobs import DownloadContext, FillRequest, PieceFiller, SourceFiller
from damselfly.protocol.bitmap import PieceBitmap
from damselfly.protocol.messages import Decision, PeerReport, TaskMeta
from damselfly.storage.metadata import PieceMeta
from damselfly.transport.piece_client import PieceClient
from damselfly.transport.scheduler.api import SchedulerApi

log = logging.getLogger(__name__)


class PeerFiller:
    def __init__(
        self,
        client: SchedulerApi,
        host_id: str,
        pieces: PieceClient,
        *,
        settings: EngineSettings | None = None,
        on_piece_stored: PieceStored = lambda task_id, number: None,
        source: PieceFiller | None = None,
        counters: EngineCounters | None = None,
        rehome: Rehome | None = None,
        origin_reader_tasks: set[str] | None = None,
        on_private_task: Callable[[str], None] = lambda task_id: None,
    ) -> None:
        self.counters = counters or EngineCounters()
        self._on_private_task = on_private_task  # downloaded with credentials: grants only
        self._client = client
        self._host_id = host_id
        self._pieces = pieces
        self._settings = settings or EngineSettings()
        self._on_piece_stored = self._timing_first_piece(on_piece_stored)
        self._first_piece_pending: dict[str, float] = {}  # task id -> fill start (monotonic)
        self._source = source or SourceFiller()
        # tasks read from the origin here (shared with the seed worker and the announcer)
        self.origin_reader_tasks = set() if origin_reader_tasks is None else origin_reader_tasks
        self._rehome = rehome  # how reporters recover when a scheduler forgot us
        self._filling: dict[str, asyncio.Event] = {}  # task -> set when its fill here ends

    async def _wait_for_other_fill(self, task_id: str) -> None:
        """One fill per task at a time in this daemon: 50 dfget of one file share one
        registration and one origin read. A later request waits for the running fill and then
        finds the task complete (or, if that fill failed, runs its own)."""
        while (running := self._filling.get(task_id)) is not None:
            await running.wait()

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        task_id = request.task.task_id
        if task_meta(request).needs_credentials:
            self._on_private_task(task_id)
        await self._wait_for_other_fill(task_id)
        if request.task.is_complete:
            self.counters.cache_hits += 1
            return 0
        started = asyncio.get_running_loop().time()
        self.counters.active_tasks += 1
        self._first_piece_pending.setdefault(task_id, time.monotonic())
        self._filling[task_id] = filled = asyncio.Event()
        try:
            source_bytes = await self._fill(request, ctx)
        except BaseException:
            self.counters.task_failures += 1
            raise
        finally:
            self.counters.active_tasks -= 1
            self._first_piece_pending.pop(task_id, None)
            del self._filling[task_id]
            filled.set()
        self.counters.source_bytes += source_bytes
        self.counters.duration.observe(asyncio.get_running_loop().time() - started)
        return source_bytes

    def _timing_first_piece(self, on_piece_stored: PieceStored) -> PieceStored:
        """``on_piece_stored`` that also times a running fill's first piece (cold start)."""

        def stored(task_id: str, number: int) -> None:
            started = self._first_piece_pending.pop(task_id, None)
            if started is not None:
                self.counters.first_piece.observe(time.monotonic() - started)
            on_piece_stored(task_id, number)

        return stored

    async def _fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        meta = task_meta(request)
        held = PieceBitmap.of(request.task.piece_count, request.task.finished_pieces())
        settings = self._settings
        if not request.job.back_to_source:
            settings = dataclasses.replace(settings, back_to_source=False)
        try:
            registration = await self._client.register_peer(self._host_id, meta, held)
        except SchedulerError as exc:
            if not settings.back_to_source:
                raise
            log.warning("%s: scheduler unavailable (%s); reading the origin", meta.url, exc)
            return await self._source.fill(self._announcing(request), ctx)
        reporter = PeerReporter(
            self._client,
            self._host_id,
            meta.task_id,
            origin_reader=registration.decision is Decision.BACK_TO_SOURCE,
            interval=self._settings.report_interval,
            rehome=self._rehome,
        )
        if registration.decision is Decision.BACK_TO_SOURCE:
            if not settings.back_to_source:
                raise NoParentError(
                    f"{meta.url}: no peer holds it yet and --disable-back-to-source forbids "
                    "reading the origin"
                )
            return await self._read_origin(request, ctx, reporter)
        download = PeerDownload(
            request,
            ctx,
            registration,
            reporter,
            self._client,
            self._pieces,
            settings=settings,
            source=self._source,
            on_piece_stored=self._on_piece_stored,
        )
        self.counters.parents_in_use += len(registration.parents)
        try:
            source_bytes = await download.run()
        finally:
            self.counters.parents_in_use -= len(registration.parents)
            self.counters.peer_bytes += download.peer_bytes
        if await self._spot_check_failed(request, ctx, download.peer_bytes):
            await self.content_rejected(request)
            return source_bytes + await self._source.fill(self._announcing(request), ctx)
        return source_bytes

    async def _spot_check_failed(
        self, request: FillRequest, ctx: DownloadContext, peer_bytes: int
    ) -> bool:
        """Bytes from peers, no origin checksum to hold them against: sample the origin."""
        if request.content_digest is not None or not peer_bytes:
            return False
        found = await spot_check(request, ctx, count=self._settings.spot_checks)
        self.counters.spot_check_bytes += found.origin_bytes  # not source_bytes: not the download
        return found.failed

    async def content_rejected(self, request: FillRequest) -> None:
        """The bytes got from peers failed a check against the origin (a spot check, or the
        download layer's whole-file checksum): tell the scheduler, which makes the task
        origin-only and blocks its origin readers, and forget every piece held."""
        task_id = request.task.task_id
        report = PeerReport(self._host_id, task_id, content_rejected=True)
        try:
            await self._client.report_peer(report)
        except SchedulerError as exc:
            log.warning("task %s: could not report the rejected content: %s", task_id[:12], exc)
        for number in request.task.finished_pieces():
            request.task.drop_piece(number)

    async def _read_origin(
        self, request: FillRequest, ctx: DownloadContext, reporter: PeerReporter
    ) -> int:
        self.origin_reader_tasks.add(request.task.task_id)
        filler = ReportingSourceFiller(reporter, self._on_piece_stored, self._source)
        async with reporting(reporter):
            try:
                source_bytes = await filler.fill(request, ctx)
            except BaseException:
                await reporter.finish(failed=True, reason="origin read failed")
                raise
            await reporter.finish()
        return source_bytes

    def _announcing(self, request: FillRequest) -> FillRequest:
        task_id = request.task.task_id

        def on_piece(piece: PieceMeta) -> None:
            request.on_piece(piece)
            self._on_piece_stored(task_id, piece.number)

        return _with_on_piece(request, on_piece)


class ReportingSourceFiller:
    """Reads the origin as the task's origin reader: every stored piece is reported with its
    digest and announced to the upload server at once."""

    def __init__(
        self,
        reporter: PeerReporter,
        on_piece_stored: PieceStored,
        source: PieceFiller | None = None,
    ) -> None:
        self._reporter = reporter
        self._on_piece_stored = on_piece_stored
        self._source = source or SourceFiller()

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        task_id = request.task.task_id

        def on_piece(piece: PieceMeta) -> None:
            self._reporter.piece_gained(piece.number, piece.digest)
            request.on_piece(piece)
            self._on_piece_stored(task_id, piece.number)

        return await self._source.fill(_with_on_piece(request, on_piece), ctx)


def task_meta(request: FillRequest) -> TaskMeta:
    """What the scheduler may know of the task: no credentials, ever."""
    job = request.job
    params = {k: v for k, v in job.options.params if k in SHAREABLE_PARAMS}
    if version := request.stat.version.identity():
        params[SOURCE_VERSION_PARAM] = version  # a seed fills the task only from this version
    return TaskMeta(
        task_id=request.task.task_id,
        url=canonical_url(job.url, job.filtered_query_params),
        content_length=request.task.content_length,
        piece_length=request.task.piece_length,
        params=params,
        digest=_wire_digest(request.content_digest),
        needs_credentials=needs_credentials(job) or not job.seedable,
    )


# Request params a seed needs to fetch the same bytes, and that are not secrets.
SHAREABLE_PARAMS = frozenset(
    {"hf_revision", "hf_endpoint", "ms_revision", "ms_endpoint", "s3_endpoint", "s3_region"}
)


def _wire_digest(digest: Digest | None) -> str:
    """The whole-file digest in the protocol's ``alg:hex`` form; git blob ids stay local."""
    if digest is None or digest.algorithm not in SUPPORTED_ALGORITHMS:
        return ""
    return str(digest)


def _with_on_piece(request: FillRequest, on_piece: Callable[[PieceMeta], None]) -> FillRequest:
    return dataclasses.replace(request, on_piece=on_piece)
