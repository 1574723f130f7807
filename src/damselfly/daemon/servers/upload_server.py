"""``UploadServer``: every daemon's piece server (HTTP/1.1, keep-alive; ``docs/p2p.md``).

Routes and wire format live in ``protocol/pieces_http.py``. What this module decides:

**Only verified pieces go out.** A piece is served only if the store has it recorded (its
bytes were hashed when written). Before the bytes leave, they are re-checked against the
recorded BLAKE3 digest unless that was already done since the content file last changed:

- *checked path*: the piece is read with ``pread`` in 1 MiB chunks in a worker thread and
  hashed while it is sent; the last chunk is held back until the digest is known. On a
  mismatch the connection is closed instead of sending it (the child sees a short body, so
  bad bytes never arrive intact), the piece is dropped from the store and ``on_piece_dropped``
  is called. The piece then counts as verified *for the file's current fingerprint*
  (device, inode, size, mtime, ctime, taken by ``fstat`` before the read and unchanged after).
- *fast path*: a piece verified under the current fingerprint goes out with ``sendfile``
  (zero copy, no hashing). Any write to the file (ours while a download is running, or anyone
  else's) changes mtime/ctime and sends every piece back to the checked path once.

So a seed serving a finished task hashes each piece once per change of the file, not once per
upload. Pieces this daemon's store hashed and wrote itself (the engine's from parents, the
origin reader's from the origin) take the fast path from the start, however many of our own
writes to other pieces follow, while nobody else has written to the file
(``TaskStorage.vouches_for``, ``storage/piece_index.py``); a piece being written, or whose
write failed half-way, never does (nor is it recorded: a torn write is never shared). Before,
only the fingerprint after the engine's *last* write vouched, so while a download ran almost
every upload was hashed again (41 % of what a seed served). A change by anyone else sends
every piece back to the checked path once our writes pause. What it misses: bytes that
change without touching mtime/ctime (bit rot under the filesystem, a write within the same
timestamp tick as our read), and a foreign write while our own writes run. Children
verify every piece against the origin reader's digest anyway (``docs/p2p.md``, "Digests");
this re-check only keeps a parent from sending bad bytes again and again.

**Open tasks are cached.** ``Store.open_task`` re-verifies what is held, so each task is
opened once (in a worker thread, one opener per task however many requests wait) and kept in
a small LRU (``open_task_limit``) of handles; an evicted handle closes when its last request
ends (``upload_tasks.py``). An open handle pins the task against GC: call ``forget_task``
before removing one.

**Limits.** ``upload_slots`` concurrent piece responses (429 + ``Retry-After`` beyond; never a
queue) and one ``TokenBucket`` (``upload_limits.py``) shared by every upload, charged per chunk.
Before that, every connection passes ``ConnectionGuard`` (``upload_guard.py``): connection
caps, header and idle timeouts, the request rate per peer, and with mTLS (``tls``) the TLS
handshake (TLS 1.2, one AEAD suite with ECDHE: ``security/tls.py``) with a client certificate
of the cluster and the role check.

**Watch.** ``?watch=1`` streams newly held pieces (``upload_watch.py``), woken by
``piece_added`` and by a poll every ``watch_poll_interval`` s (another process's pieces).
Logging: never piece contents; a warning only when a re-check or the store fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import fields

import blake3
from aiohttp import hdrs, web

from damselfly.core.background import BackgroundTasks
from damselfly.core.digests import PIECE_DIGEST_ALGORITHM
from damselfly.core.errors import DamselflyError
from damselfly.daemon.servers.private_access import PrivateAccess
from damselfly.daemon.servers.upload_guard import ConnectionGuard, UploadLimits
from damselfly.daemon.servers.upload_limits import TokenBucket, UploadSlots, paced
from damselfly.daemon.servers.upload_statistics import UploadCounters, UploadStatistics
from damselfly.daemon.servers.upload_tasks import (
    SharedTask,
    TaskCache,
    read_and_hash,
    read_cached,
)
from damselfly.daemon.servers.upload_watch import PieceWatchers, abort_response
from damselfly.protocol import pieces_http as wire
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.store import Store

CHUNK_LENGTH = 1024 * 1024
# TLS writes (copied, encrypted, held until sent: docs/benchmarks.md, issue 11)
TLS_CHUNK_LENGTH = 256 * 1024
DEFAULT_HOST = "0.0.0.0"  # noqa: S104 - peers on other hosts must reach the piece port

_log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PieceDroppedCallback = Callable[[str, int], None]


class UploadServer:
    """Serves the pieces of ``store``; ``async with`` or ``start()`` / ``aclose()``."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = DEFAULT_HOST,
        port: int = wire.DEFAULT_UPLOAD_PORT,
        upload_slots: int = 32,
        rate_limit_bytes_per_second: float | None = None,
        open_task_limit: int = 16,
        watch_poll_interval: float = 0.25,
        watch_heartbeat_interval: float = wire.WATCH_HEARTBEAT_INTERVAL,
        shutdown_timeout: float = 2.0,
        on_piece_dropped: PieceDroppedCallback | None = None,
        limits: UploadLimits | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
        private: PrivateAccess | None = None,
    ) -> None:
        """``tls``: the server context to use for each new connection (mTLS); plain text
        when None. ``private``: who may fetch private tasks (``private_access.py``)."""
        self._limits = limits or UploadLimits()
        self._guard = ConnectionGuard(self._limits, tls=tls, private=private)
        self._scheme = "http" if tls is None else "https"
        self._server: asyncio.Server | None = None
        self._watchers = PieceWatchers(
            poll_interval=watch_poll_interval, heartbeat_interval=watch_heartbeat_interval
        )
        self._host, self._port = host, port
        self._store = store
        self._background = BackgroundTasks()  # the task cache's openers
        self._tasks = TaskCache(
            store,
            capacity=open_task_limit,
            spawn=self._background.start_soon,
        )
        self._slots = UploadSlots(upload_slots)
        self._bucket = (
            None
            if rate_limit_bytes_per_second is None
            else TokenBucket(rate_limit_bytes_per_second)
        )
        self._shutdown_timeout = shutdown_timeout
        self._on_piece_dropped = on_piece_dropped
        self._counters = UploadCounters()
        self._transports: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._runner: web.AppRunner | None = None

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._background.start()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(wire.PIECE_ROUTE, self._handle_piece, allow_head=False)
        app.router.add_get(wire.BITMAP_ROUTE, self._handle_bitmap, allow_head=False)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
            keepalive_timeout=self._limits.idle_timeout,
        )
        await runner.setup()
        try:
            self._server = await self._listen(runner)
        except BaseException:
            await runner.cleanup()
            await self._background.aclose()
            raise
        self._runner = runner
        self._port = int(self._server.sockets[0].getsockname()[1])
        _log.debug("upload server listening on %s:%d", self._host, self._port)

    async def aclose(self) -> None:
        """Stop listening, end watch streams, wait for uploads (up to ``shutdown_timeout``),
        then close every cached task."""
        self._watchers.close()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._tasks.aclose()
        await self._background.aclose()

    async def __aenter__(self) -> UploadServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _listen(self, runner: web.AppRunner) -> asyncio.Server:
        """Listen with every connection passing the guard first (``upload_guard.py``)."""
        assert runner.server is not None
        loop = asyncio.get_running_loop()
        factory = self._guard.factory(runner.server)
        return await loop.create_server(
            factory, self._host, self._port, reuse_address=True, backlog=1024
        )

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` as peers should dial it (not meaningful for 0.0.0.0)."""
        return f"{self._scheme}://{self._host}:{self._port}"

    # -- events from the download engine -------------------------------------------------------

    def piece_added(self, task_id: str, number: int) -> None:
        """A piece of ``task_id`` was stored and verified: tell its watchers now. Call it from
        the event loop's thread (after ``await asyncio.to_thread(task.write_piece, ...)``)."""
        self._watchers.notify(task_id)

    def forget_task(self, task_id: str) -> None:
        """Close the cached handle of ``task_id`` (once idle) so the store may remove it."""
        self._tasks.forget(task_id)

    def statistics(self) -> UploadStatistics:
        counts = {f.name: getattr(self._counters, f.name) for f in fields(UploadCounters)}
        return UploadStatistics(
            **counts,
            active_uploads=self._slots.in_use,
            tasks_opened=self._tasks.opened,
            watchers=self._watchers.open_streams,
            guard=dataclasses.replace(self._guard.counters),
        )

    # -- request handling ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if transport is not None and transport not in self._transports:
            self._transports.add(transport)
            self._counters.connections += 1
        refusal = self._guard.admit(request)
        if refusal is not None:
            return refusal
        try:
            return await handler(request)
        except DamselflyError as exc:  # raised before any byte of the response was sent
            if exc.http_status >= 500:
                _log.warning("upload request %s failed: %s", request.path, exc)
            return web.Response(status=exc.http_status, text=str(exc))

    async def _handle_piece(self, request: web.Request) -> web.StreamResponse:
        task_id = wire.validate_task_id(request.match_info["task_id"])
        number = wire.parse_piece_number(request.match_info["number"])
        if not self._slots.try_acquire():
            self._counters.rejected_busy += 1
            retry_after = str(wire.BUSY_RETRY_AFTER_SECONDS)
            return web.Response(status=429, headers={wire.RETRY_AFTER_HEADER: retry_after})
        try:
            async with self._tasks.use(task_id) as task:
                piece = task.storage.piece_meta(number) if task is not None else None
                if task is None or piece is None:
                    return self._not_found(f"task {task_id}: piece {number} is not held")
                return await self._send_piece(request, task, piece)
        finally:
            self._slots.release()

    async def _handle_bitmap(self, request: web.Request) -> web.StreamResponse:
        task_id = wire.validate_task_id(request.match_info["task_id"])
        async with self._tasks.use(task_id) as task:
            if task is None:
                return self._not_found(f"task {task_id} is not held")
            if request.query.get(wire.WATCH_QUERY) in ("1", "true"):
                return await self._watchers.serve(request, task)
            snapshot = wire.BitmapSnapshot(task.storage.piece_count, task.storage.finished_pieces())
            body = wire.encode_snapshot(snapshot)
            return web.Response(body=body, headers={hdrs.CONTENT_TYPE: wire.BITMAP_CONTENT_TYPE})

    def _not_found(self, text: str) -> web.Response:
        self._counters.not_found += 1
        return web.Response(status=404, text=text)

    # -- sending a piece -----------------------------------------------------------------------

    async def _send_piece(
        self, request: web.Request, task: SharedTask, piece: PieceMeta
    ) -> web.StreamResponse:
        checked, fingerprint = task.verified_since_change(piece.number)
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: wire.PIECE_CONTENT_TYPE})
        response.content_length = piece.length
        try:
            await response.prepare(request)
            if checked and self._scheme == "https":
                await self._send_read(response, task, piece)
            elif checked:
                await self._send_file(request, task, piece)
            elif await self._send_checked(response, task, piece):
                task.piece_verified(piece.number, fingerprint)
            else:
                await self._piece_corrupt(request, response, task, piece)
                return response
        except ConnectionError:
            _log.debug("task %s: child left during piece %d", task.task_id, piece.number)
            response.force_close()
            return response
        except DamselflyError as exc:  # headers are out: all we can do is cut the body short
            _log.warning("task %s: piece %d: upload failed: %s", task.task_id, piece.number, exc)
            abort_response(request, response)
            return response
        self._counters.pieces_served += 1
        return response

    async def _send_file(self, request: web.Request, task: SharedTask, piece: PieceMeta) -> None:
        """The fast path: ``loop.sendfile`` (asyncio falls back to read+write if it must)."""
        loop = asyncio.get_running_loop()
        step = piece.length if self._bucket is None else CHUNK_LENGTH
        for offset, length in _chunks(piece, step):
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the child closed the connection")
            await self._throttle(length)
            try:
                await loop.sendfile(transport, task.reader, offset, length)
            except RuntimeError as exc:  # "Transport is closing", raced with the check above
                raise ConnectionResetError(str(exc)) from exc
            self._counters.bytes_uploaded += length

    async def _send_read(
        self, response: web.StreamResponse, task: SharedTask, piece: PieceMeta
    ) -> None:
        """The fast path over TLS: ``pread`` in ``TLS_CHUNK_LENGTH`` chunks, no hashing
        (asyncio's sendfile fallback for TLS seeks the shared file object). Chunks the page
        cache holds (or tmpfs) are read on the loop (``read_cached``), the others in a thread."""
        for offset, length in _chunks(piece, TLS_CHUNK_LENGTH):
            chunk: bytes | bytearray | None = None
            if task.loop_read_flags is not None:
                chunk = read_cached(task.fileno, offset, length, task.loop_read_flags)
            if chunk is None:
                chunk = await asyncio.to_thread(read_and_hash, task.fileno, offset, length, None)
            if chunk is None:
                raise ConnectionResetError("piece no longer readable")  # cut the body short
            await self._write(response, chunk)

    async def _send_checked(
        self, response: web.StreamResponse, task: SharedTask, piece: PieceMeta
    ) -> bool:
        """Hash while sending; False (last chunk withheld) if the bytes do not match."""
        self._counters.pieces_rechecked += 1
        hasher = blake3.blake3()
        pending: bytes | None = None
        for offset, length in _chunks(piece, CHUNK_LENGTH):
            chunk = await asyncio.to_thread(read_and_hash, task.fileno, offset, length, hasher)
            if chunk is None:
                return False
            if pending is not None:
                await self._write(response, pending)
            pending = chunk
        if f"{PIECE_DIGEST_ALGORITHM}:{hasher.hexdigest()}" != piece.digest:
            return False
        if pending is not None:
            await self._write(response, pending)
        return True

    async def _write(self, response: web.StreamResponse, chunk: bytes | bytearray) -> None:
        """Over TLS in writes of at most ``TLS_CHUNK_LENGTH`` (the checked path reads more)."""
        view, step = memoryview(chunk), TLS_CHUNK_LENGTH if self._scheme == "https" else len(chunk)
        for start in range(0, len(view), max(step, 1)):
            part = view[start : start + step]
            await self._throttle(len(part))
            await response.write(part)
            self._counters.bytes_uploaded += len(part)

    def set_rate_limit(self, rate_bytes_per_second: float | None) -> None:
        """Change the upload limit live (``None``: unlimited); the control plane calls it."""
        current = None if self._bucket is None else self._bucket.rate
        if rate_bytes_per_second != current:
            limit = rate_bytes_per_second
            self._bucket = None if limit is None else TokenBucket(limit)

    async def _throttle(self, nbytes: int) -> None:
        if self._bucket is not None:
            await paced(self._bucket, nbytes)

    async def _piece_corrupt(
        self, request: web.Request, response: web.StreamResponse, task: SharedTask, piece: PieceMeta
    ) -> None:
        """Drop the piece, tell the owner, then cut the response short (in that order, so a
        child that retries after the short body already finds the piece gone)."""
        if task.stale():  # a handle on a file the store replaced: it drops nothing
            return abort_response(request, response)
        task.piece_failed(piece.number)
        self._counters.pieces_dropped += 1
        _log.warning(
            "task %s: piece %d does not match its recorded digest on disk; dropped",
            task.task_id,
            piece.number,
        )
        try:
            await asyncio.to_thread(task.storage.drop_piece, piece.number)
            if self._on_piece_dropped is not None:
                self._on_piece_dropped(task.task_id, piece.number)
        finally:
            abort_response(request, response)


def _chunks(piece: PieceMeta, step: int) -> list[tuple[int, int]]:
    end = piece.offset + piece.length
    return [(offset, min(step, end - offset)) for offset in range(piece.offset, end, step)]
