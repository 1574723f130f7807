"""Download one file from its origin into the store, verify it, deliver it to the output.

``download_file`` reads as its steps: check the output path, ask the origin what the file is
(and, for a file asked with a hub token, whether it serves it to anyone: then the task is
public, ``public_files.py``), name the task, open (or resume) it in the store, fetch the
missing pieces while checking the whole-file digest, record the outcome, then deliver the
output atomically (a hard link to the store's file where it is on the same file system and no
other output has that file yet, else a copy or reflink), every piece re-hashed on the way;
pieces that rotted in the store are fetched again once. Nothing
appears at the output path unless every byte is verified.

Consistency with the origin: the task is named after the version ``stat`` found (ETag, else
Last-Modified, else length) and every read is held to it (``RequestOptions.expected``). When
the origin changes mid-download the task's pieces are dropped and the download starts once
more from the new version; a second change (or a task named by a scheduler, whose id fixes
the version) fails with ``SourceChangedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator

from damselfly.backends.base import ObjectStat
from damselfly.core.digests import Digest
from damselfly.core.error_groups import group_error
from damselfly.core.errors import (
    DiskFullError,
    IntegrityError,
    SourceChangedError,
    SourceProtocolError,
)
from damselfly.core.ids import canonical_url, task_id, task_id_for_text
from damselfly.core.pieces import choose_piece_length
from damselfly.download.credentials import needs_credentials, private_task_id
from damselfly.download.file_digest import InOrderDigest
from damselfly.download.jobs import (
    DownloadContext,
    FileJob,
    FileResult,
    FilledTask,
    FillRequest,
    PieceFiller,
)
from damselfly.download.output_check import check_output, check_same_filesystem, same_filesystem
from damselfly.download.staged_delivery import StagedDelivery
from damselfly.download.streaming import stream_without_length
from damselfly.storage.metadata import PieceMeta, TaskState
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.store import TaskStorage
from damselfly.storage.verification import CorruptContentError

log = logging.getLogger(__name__)

# A request param naming the version a task id was computed from (``SourceVersion.identity``):
# a seed given that task refuses to fill it from another version.
SOURCE_VERSION_PARAM = "source_version"


async def download_file(job: FileJob, ctx: DownloadContext) -> FileResult:
    started = time.monotonic()
    check_output(job.output, overwrite=job.overwrite)
    if job.require_hard_link:
        check_same_filesystem(job.output, ctx.store.root)
    job, stat = await _stat(job, ctx)
    if stat.content_length is None:
        return await stream_without_length(job, ctx, started)
    staging = None if _may_link(job, ctx) else _staging(job, ctx)
    try:
        filled = await _fill_latest(job, ctx, stat, staging)
        try:
            delivery = await _deliver(job, ctx, filled, staging)
        except CorruptContentError as exc:
            log.warning("%s: %s; fetching them again", job.url.redacted(), exc)
            again = await _fill_latest(job, ctx, stat, staging)
            source_bytes = filled.source_bytes + again.source_bytes
            reused = filled.reused_bytes  # ``again`` may name a new task: the origin changed
            filled = dataclasses.replace(again, source_bytes=source_bytes, reused_bytes=reused)
            delivery = await _deliver(job, ctx, filled, staging)
    finally:
        if staging is not None:
            await staging.aclose()
    ctx.observer.file_finished(job.display_name)
    elapsed = time.monotonic() - started
    return FileResult(
        job,
        filled.task_id,
        filled.content_length,
        filled.source_bytes,
        filled.reused_bytes,
        delivery,
        elapsed,
    )


def _may_link(job: FileJob, ctx: DownloadContext) -> bool:
    """Deliver by hard link (no second copy of the bytes) where the output is on the store's
    file system, unless ``--no-hard-link``; else copy, staged as the pieces come."""
    if job.require_hard_link:
        return True
    return job.hard_link and same_filesystem(job.output, ctx.store.root)


def _staging(job: FileJob, ctx: DownloadContext) -> StagedDelivery:
    with _storage_errors_name(job):
        return StagedDelivery(ctx.store, job.output, overwrite=job.overwrite)


async def _deliver(
    job: FileJob, ctx: DownloadContext, filled: FilledTask, staging: StagedDelivery | None
) -> DeliveryMethod:
    """A copy (or reflink) staged as the pieces came (``staged_delivery.py``), or the store's
    file itself, hard-linked, if no other output has it (with ``--force-hard-link`` even
    then), else a copy; verified either way (``Store.deliver``)."""
    with _storage_errors_name(job):
        if staging is not None:
            return await staging.deliver(filled.task_id)
        return await asyncio.to_thread(
            ctx.store.deliver,
            filled.task_id,
            job.output,
            overwrite=job.overwrite,
            hard_link=True,
            share=job.require_hard_link,
        )


async def fill_file(job: FileJob, ctx: DownloadContext) -> FilledTask:
    """Put the file's pieces in the store without delivering it anywhere (seeds, preheat)."""
    job, stat = await _stat(job, ctx)
    if stat.content_length is None:
        raise SourceProtocolError(job.url.redacted(), "the origin gives no length; cannot cache")
    filled = await _fill_latest(job, ctx, stat, None)
    ctx.observer.file_finished(job.display_name)
    return filled


async def _stat(job: FileJob, ctx: DownloadContext) -> tuple[FileJob, ObjectStat]:
    """What the origin says about the file, asked with the job's credentials (the access
    check); then, for a job that may be public, the anonymous job if the origin serves the
    same file to anyone (``public_files.py``)."""
    stat = await ctx.registry.for_url(job.url).stat(job.url, job.options)
    if ctx.public_files is None or not job.try_public:
        return job, stat
    return await ctx.public_files.choose(job, stat, ctx.registry)


async def _fill_latest(
    job: FileJob, ctx: DownloadContext, stat: ObjectStat, staging: StagedDelivery | None
) -> FilledTask:
    """Fill the task of the version ``stat`` describes; if the origin changes meanwhile, once
    more from its new version (not a task a scheduler named: its id fixes the version)."""
    try:
        return await _fill_from_stat(job, ctx, stat, staging)
    except SourceChangedError as exc:
        if job.task_id is not None:
            raise
        log.warning("%s; starting again from the new version", exc)
    stat = await ctx.registry.for_url(job.url).stat(job.url, job.options)
    try:
        return await _fill_from_stat(job, ctx, stat, staging)
    except SourceChangedError as exc:
        raise SourceChangedError(job.url.redacted(), "again, after a restart") from exc


async def _fill_from_stat(
    job: FileJob, ctx: DownloadContext, stat: ObjectStat, staging: StagedDelivery | None
) -> FilledTask:
    _check_listing_agrees(job, stat)
    _check_version_agrees(job, stat)
    content_length = stat.content_length
    if content_length is None:
        raise SourceChangedError(job.url.redacted(), "the origin no longer gives a length")
    digest = job.expected_digest or stat.content_digest
    piece_length = choose_piece_length(content_length, job.piece_length)
    tid = job.task_id or _task_id(job, stat, piece_length)
    if job.task_id is None and ctx.private_task_key and needs_credentials(job):
        tid = private_task_id(tid, ctx.private_task_key)
    with (
        _storage_errors_name(job),
        ctx.store.open_task(
            tid,
            url=canonical_url(job.url, job.filtered_query_params),
            content_length=content_length,
            piece_length=piece_length,
            content_digest=str(digest) if digest else None,
        ) as task,
    ):
        reused = _held_bytes(task)
        ctx.observer.file_started(job.display_name, task.content_length, reused)
        try:
            fetched = await _fill_task(job, ctx, task, stat, digest, staging)
        except DiskFullError:
            task.release_space()  # else the failed task keeps the space the next one needs
            raise
    return FilledTask(tid, content_length, fetched, reused)


async def _fill_task(
    job: FileJob,
    ctx: DownloadContext,
    task: TaskStorage,
    stat: ObjectStat,
    digest: Digest | None,
    staging: StagedDelivery | None = None,
) -> int:
    """Fill missing pieces (``ctx.filler``) and verify the whole file; returns bytes read from
    the origin."""
    checker = _digest_checker(job, ctx, task, digest)
    name = job.display_name

    def on_piece(piece: PieceMeta) -> None:
        ctx.observer.bytes_received(name, piece.length)
        if staging is not None:
            staging.piece_recorded(task, piece)
        if checker is not None:
            advance_tasks.add(asyncio.ensure_future(checker.advance()))

    advance_tasks: set[asyncio.Future[None]] = set()
    request = FillRequest(job, task, stat, digest, on_piece)
    try:
        with staging.tapping(task) if staging is not None else contextlib.nullcontext():
            source_bytes = await _filled(request, ctx)
        await asyncio.gather(*advance_tasks)
        if checker is not None:
            await checker.verify()
    except SourceChangedError:
        _forget_pieces(task)
        raise
    except IntegrityError:
        rejected = getattr(ctx.filler, "content_rejected", None)
        if rejected is None:
            _forget_pieces(task)
            raise
        await rejected(request)  # the mesh gave bad bytes: the scheduler makes it origin-only
        return await _refill_from_origin(job, ctx, task, stat, digest, staging)
    finally:
        for pending in advance_tasks:
            pending.cancel()
    task.mark_succeeded()
    return source_bytes


async def _filled(request: FillRequest, ctx: DownloadContext) -> int:
    """``ctx.filler.fill``, with a failed task group (the daemon's parents and origin
    fallback) turned into the one error it stands for, so that ``except`` clauses see it."""
    try:
        return await ctx.filler.fill(request, ctx)
    except BaseExceptionGroup as group:
        raise group_error(group) from None


async def _refill_from_origin(
    job: FileJob,
    ctx: DownloadContext,
    task: TaskStorage,
    stat: ObjectStat,
    digest: Digest | None,
    staging: StagedDelivery | None,
) -> int:
    """Once more after the whole file failed its check with pieces from peers: the scheduler
    now answers this task with ``BACK_TO_SOURCE`` (``scheduler/quarantine.py``)."""
    retry = dataclasses.replace(ctx, filler=_NoRetry(ctx.filler))
    return await _fill_task(job, retry, task, stat, digest, staging)


class _NoRetry:
    """The same filler, without ``content_rejected``: a second failure is final."""

    def __init__(self, filler: PieceFiller) -> None:
        self._filler = filler

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        return await self._filler.fill(request, ctx)


def _digest_checker(
    job: FileJob, ctx: DownloadContext, task: TaskStorage, digest: Digest | None
) -> InOrderDigest | None:
    """A whole-file check, unless this task already passed the same check before."""
    if digest is None:
        return None
    meta = ctx.store.get_task(task.task_id)
    if (
        meta is not None
        and meta.state is TaskState.SUCCEEDED
        and meta.content_digest == str(digest)
    ):
        return None
    return InOrderDigest(digest, task, job.url.redacted())


def _task_id(job: FileJob, stat: ObjectStat, piece_length: int) -> str:
    """By content when the origin vouches for a digest (a user's ``--digest`` is a claim to
    check, not a name), else by location."""
    if job.identity_text is not None:
        return task_id_for_text(
            job.identity_text, piece_length=piece_length, tag=job.tag, application=job.application
        )
    return task_id(
        job.url,
        piece_length=piece_length,
        content_digest=stat.content_digest,
        version=stat.version.identity(),
        tag=job.tag,
        application=job.application,
        filtered_query_params=job.filtered_query_params,
    )


def _check_listing_agrees(job: FileJob, stat: ObjectStat) -> None:
    if job.expected_length is not None and stat.content_length != job.expected_length:
        raise SourceProtocolError(
            job.url.redacted(),
            f"listing says {job.expected_length} bytes but the origin serves {stat.content_length}",
        )


def _check_version_agrees(job: FileJob, stat: ObjectStat) -> None:
    """A job that names the version its task id stands for (a seed's) must find it."""
    wanted = job.options.param(SOURCE_VERSION_PARAM)
    if wanted and wanted != stat.version.identity():
        raise SourceChangedError(job.url.redacted(), "not the version the task was named after")


@contextlib.contextmanager
def _storage_errors_name(job: FileJob) -> Iterator[None]:
    """A full disk is reported with the download it stopped."""
    try:
        yield
    except DiskFullError as exc:
        raise DiskFullError(f"{job.url.redacted()}: {exc}") from exc


def _forget_pieces(task: TaskStorage) -> None:
    """The whole file failed its digest, or the origin changed under it: no piece of it may
    be resumed or served, and its space goes back."""
    task.release_space()


def _held_bytes(task: TaskStorage) -> int:
    return sum(
        meta.length for n in task.finished_pieces() if (meta := task.piece_meta(n)) is not None
    )
