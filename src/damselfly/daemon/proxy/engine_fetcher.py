"""``EngineFetcher``: the proxy's content GETs through the daemon's P2P engine.

Each content GET becomes a download job (``content_jobs.py``: the job ``dfget`` would run for
the same file, so the same task) that the download layer fills into the daemon's store with
the daemon's ``PieceFiller`` (the engine: parents, or the origin as the task's reader), exactly
as a dfget request through the local API, minus the delivery to an output file.

The response streams as pieces arrive: the filler is wrapped (``_TapFiller``) so that the
moment the task is opened its head is known (length, piece length) and every piece the fill
stores wakes the readers of that task (``PieceWatch``); a reader sends each piece from the
content file once the store holds it, so the first bytes leave long before the last arrive.
A reader also looks at the store every ``poll_interval`` seconds, so pieces stored by another
fill of the same task (a concurrent dfget) are seen too.

Fills of one task are serialised (a second client waits for the first fill and then finds the
pieces held); a fill runs to the end even if its client leaves (the next one hits the cache),
owned by the fetcher and cancelled by ``aclose()``. The origin check happens per request, with
the requesting client's own credentials, before any byte of the store is served: the backend's
``stat`` (a ``HEAD`` on the hub's ``resolve`` URL with the client's token, or on the signed URL)
must succeed. When the engine cannot serve a request (a URL the download layer does not take,
the origin refusing the client, no length) the request goes to ``fallback`` (the origin,
``DirectFetcher``), which relays the origin's own answer: its 401/403 with no content, or the
bytes. Once the head is sent a failure can only cut the body short: never a wrong byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from damselfly.backends.registry import BackendRegistry, BackendSettings, default_registry
from damselfly.core.background import BackgroundTasks
from damselfly.core.digests import piece_digest
from damselfly.core.errors import DamselflyError
from damselfly.core.ids import canonical_url
from damselfly.daemon.proxy.content_jobs import ContentJob, content_job
from damselfly.daemon.proxy.mesh import (
    ByteRange,
    MeshFetcher,
    MeshRequest,
    MeshResponse,
    MeshUnavailableError,
)
from damselfly.download.credentials import needs_credentials, private_task_id
from damselfly.download.events import NullObserver
from damselfly.download.file_download import fill_file
from damselfly.download.jobs import DownloadContext, FileJob, FillRequest, PieceFiller
from damselfly.download.public_files import PublicFiles
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.store import Store, TaskStorage

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5  # seconds between looks at the store while waiting for a piece
READ_LENGTH = 4 * 1024 * 1024  # at most this many bytes per read (a worker thread hop each)


class PieceWatch:
    """Wakes the readers of a task when a piece of it is stored (event loop thread only)."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, task_id: str) -> None:
        event = self._events.pop(task_id, None)
        if event is not None:
            event.set()

    async def wait(self, task_id: str, seconds: float) -> None:
        """Until the next piece of ``task_id`` is stored, or ``seconds`` passed."""
        event = self._events.setdefault(task_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()


@dataclass
class _Fill:
    """One running fill, as its reader sees it."""

    opened: asyncio.Future[TaskStorage]  # a handle on the task, once the store opened it
    byte_range: ByteRange | None = None  # what the reader will stream
    finished: asyncio.Future[None] = field(default_factory=asyncio.Future)


class EngineFetcher:
    def __init__(
        self,
        store: Store,
        filler: PieceFiller,
        fallback: MeshFetcher,
        *,
        source_concurrency: int = 2,
        poll_interval: float = POLL_INTERVAL,
        registry_factory: Callable[[BackendSettings], BackendRegistry] = default_registry,
        private_task_key: bytes | None = None,
        public_files: PublicFiles | None = None,
    ) -> None:
        self._store = store
        self._public_files = public_files  # which files asked with a token are public
        self._registry_factory = registry_factory  # the daemon's: origin rate limits apply
        self._private_task_key = private_task_key  # the cluster's key for private task ids
        self._filler = filler
        self._fallback = fallback
        self._policy = FetchPolicy(concurrency=source_concurrency)
        self._poll_interval = poll_interval
        self._watch = PieceWatch()
        self._fills = BackgroundTasks()
        self._task_locks: dict[str, asyncio.Lock] = {}
        self.outcomes: Counter[str] = Counter()  # "mesh" | "fallback", for tests and logs

    async def start(self) -> None:
        await self._fills.start()

    async def aclose(self) -> None:
        await self._fills.aclose()

    async def __aenter__(self) -> EngineFetcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def fetch(self, request: MeshRequest) -> MeshResponse:
        secret = request.authorization.get_secret_value() if request.authorization else None
        try:
            planned = content_job(request.url, secret, request.linked)
        except DamselflyError as exc:
            return await self._fall_back(request, exc)
        fill = _Fill(asyncio.get_running_loop().create_future(), request.byte_range)
        self._fills.start_soon(self._run_fill(planned, fill), name="proxy fill")
        try:
            handle = await _opened(fill)
        except Exception as exc:
            return await self._fall_back(request, exc)
        self.outcomes["mesh"] += 1
        log.debug("proxy: %s from task %s", _without_query(request.url), handle.task_id[:12])
        return self._respond(request, fill, handle)

    async def _fall_back(self, request: MeshRequest, reason: BaseException) -> MeshResponse:
        self.outcomes["fallback"] += 1
        log.debug(
            "proxy: the engine cannot serve %s (%s); reading the origin",
            _without_query(request.url),
            type(reason).__name__ if not isinstance(reason, DamselflyError) else reason.message,
        )
        return await self._fallback.fetch(request)

    # -- the fill ------------------------------------------------------------------------------

    async def _run_fill(self, planned: ContentJob, fill: _Fill) -> None:
        registry = self._registry_factory(BackendSettings())
        tap = _TapFiller(self, fill)
        key = self._private_task_key
        ctx = DownloadContext(
            self._store, registry, NullObserver(), self._policy, tap, key, self._public_files
        )
        try:
            await fill_file(keyed_job(planned.job, key), ctx)
        except asyncio.CancelledError:
            _settle(fill, MeshUnavailableError("proxy", "the daemon is stopping"))
            raise
        except BaseException as exc:  # reported to the reader, never raised into the group
            log.debug("proxy: fill of %s failed: %s", planned.kind, type(exc).__name__)
            _settle(fill, exc)
        else:
            _settle(fill, None)
        finally:
            await registry.aclose()
            if tap.task_id is not None:
                self._watch.notify(tap.task_id)

    def _lock(self, task_id: str) -> asyncio.Lock:
        return self._task_locks.setdefault(task_id, asyncio.Lock())

    def _release(self, task_id: str, lock: asyncio.Lock) -> None:
        if not lock.locked() and self._task_locks.get(task_id) is lock:
            del self._task_locks[task_id]

    # -- the response --------------------------------------------------------------------------

    def _respond(self, request: MeshRequest, fill: _Fill, handle: TaskStorage) -> MeshResponse:
        total = handle.content_length
        window = byte_window(request.byte_range, total)
        if window is None:
            handle.close()
            headers = [("Content-Range", f"bytes */{total}"), ("Content-Length", "0")]
            return MeshResponse(416, headers, _nothing())
        first, last = window
        headers = content_headers(request, first, last, total)
        status = 206 if request.byte_range is not None else 200
        body = self._stream(handle, first, last, fill)
        return MeshResponse(status, headers, body, _closer(handle))

    async def _stream(
        self, handle: TaskStorage, first: int, last: int, fill: _Fill
    ) -> AsyncIterator[bytes]:
        try:
            offset = first
            while offset <= last:
                number = offset // handle.piece_length
                await self._until_held(handle, number, fill)
                end = min((number + 1) * handle.piece_length - 1, last)
                if handle.shared_with_output() and not handle.vouches_for(number):
                    yield await asyncio.to_thread(_checked_part, handle, number, offset, end)
                    offset = end + 1
                    continue
                while offset <= end:  # a piece of up to 64 MiB in steps
                    length = min(READ_LENGTH, end - offset + 1)
                    yield await asyncio.to_thread(handle.read_range, offset, length)
                    offset += length
        finally:
            handle.close()

    async def _until_held(self, handle: TaskStorage, number: int, fill: _Fill) -> None:
        while not handle.has_piece(number):
            if fill.finished.done() and not handle.has_piece(number):
                error = fill.finished.exception() if not fill.finished.cancelled() else None
                reason = type(error).__name__ if error is not None else "ended without it"
                raise MeshUnavailableError("proxy", f"piece {number} never arrived ({reason})")
            await self._watch.wait(handle.task_id, self._poll_interval)


def _checked_part(handle: TaskStorage, number: int, first: int, last: int) -> bytes:
    """Bytes ``first..last`` of piece ``number``, from a read of the whole piece that matched
    its digest: a file an output shares may hold the user's edits (``shared_content.py``)."""
    piece = handle.piece_meta(number)
    if piece is None:
        raise MeshUnavailableError("proxy", f"piece {number} is no longer held")
    data = handle.read_range(piece.offset, piece.length)
    if piece_digest(data) != piece.digest:
        raise MeshUnavailableError("proxy", f"piece {number} changed on disk")
    return data[first - piece.offset : last - piece.offset + 1]


class _TapFiller:
    """The engine's filler, seen by the proxy: opens a reader's handle on the task before
    the fill starts, serialises fills of one task, and wakes readers on every stored piece."""

    def __init__(self, fetcher: EngineFetcher, fill: _Fill) -> None:
        self._fetcher, self._fill = fetcher, fill
        self.task_id: str | None = None

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        task = request.task
        self.task_id = task.task_id
        self._hand_over(self._reader_handle(request))
        lock = self._fetcher._lock(task.task_id)
        try:
            async with lock:
                return await self._fetcher._filler.fill(self._watched(request), ctx)
        finally:
            self._fetcher._release(task.task_id, lock)

    def _reader_handle(self, request: FillRequest) -> TaskStorage:
        task = request.task
        return self._fetcher._store.open_task(
            task.task_id,
            url=canonical_url(request.job.url, request.job.filtered_query_params),
            content_length=task.content_length,
            piece_length=task.piece_length,
            content_digest=str(request.content_digest) if request.content_digest else None,
        )

    def _hand_over(self, handle: TaskStorage) -> None:
        if self._fill.opened.done():  # the reader gave up waiting
            handle.close()
        else:
            self._fill.opened.set_result(handle)

    def _watched(self, request: FillRequest) -> FillRequest:
        task_id, watch = request.task.task_id, self._fetcher._watch

        def on_piece(piece: PieceMeta) -> None:
            request.on_piece(piece)
            watch.notify(task_id)

        return dataclasses.replace(
            request, on_piece=on_piece, first_piece=self._first_piece(request.task)
        )

    def _first_piece(self, task: TaskStorage) -> int:
        """The piece the reader needs first: the fill starts there (``FillRequest``)."""
        window = byte_window(self._fill.byte_range, task.content_length)
        return window[0] // task.piece_length if window is not None else 0


async def _opened(fill: _Fill) -> TaskStorage:
    """The reader's handle; closed again if this request is cancelled meanwhile."""
    try:
        return await asyncio.shield(fill.opened)
    except asyncio.CancelledError:
        if fill.opened.done() and not fill.opened.cancelled() and not fill.opened.exception():
            fill.opened.result().close()
        elif not fill.opened.done():
            fill.opened.cancel()
        raise


def keyed_job(job: FileJob, key: bytes | None) -> FileJob:
    """A job named in advance (by a vouched digest) under the cluster's private id when it
    carries credentials, as the download layer names the ones it computes."""
    if job.task_id is None or key is None or not needs_credentials(job):
        return job
    return dataclasses.replace(job, task_id=private_task_id(job.task_id, key))


def _settle(fill: _Fill, error: BaseException | None) -> None:
    if not fill.opened.done():
        reason = error or MeshUnavailableError("proxy", "the task was not opened")
        fill.opened.set_exception(reason)
    if not fill.finished.done():
        if error is None:
            fill.finished.set_result(None)
        else:
            fill.finished.set_exception(error)
    # a reader that never looks must not leave "exception never retrieved" behind
    for future in (fill.opened, fill.finished):
        if future.done() and not future.cancelled():
            future.exception()


def byte_window(byte_range: ByteRange | None, total: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive within ``total`` bytes; None when unsatisfiable (416)."""
    if byte_range is None:
        return 0, total - 1  # (0, -1) for an empty file: no bytes
    first, last = byte_range
    if first is None:  # a suffix of ``last`` bytes
        if not last or not total:
            return None
        return max(0, total - last), total - 1
    if first >= total:
        return None
    return first, total - 1 if last is None else min(last, total - 1)


def content_headers(
    request: MeshRequest, first: int, last: int, total: int
) -> list[tuple[str, str]]:
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Accept-Ranges", "bytes"),
        ("Content-Length", str(last - first + 1)),
    ]
    if request.byte_range is not None:
        headers.append(("Content-Range", f"bytes {first}-{last}/{total}"))
    linked = request.linked
    if linked is not None and linked.sha256:
        headers.append(("ETag", f'"{linked.sha256}"'))
    if linked is not None and linked.commit:
        headers.append(("X-Repo-Commit", linked.commit))
    return headers


def _closer(handle: TaskStorage) -> Callable[[], Coroutine[Any, Any, None]]:
    async def close() -> None:
        handle.close()

    return close


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
