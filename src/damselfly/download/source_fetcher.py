"""Fill a task's pieces from the origin ("back-to-source").

The missing pieces are grouped into *runs* of consecutive pieces, each fetched with one range
request (at most ``FetchPolicy.max_request_length`` bytes), ``concurrency`` runs at a time:
fewer requests than one per piece means less work for the origin and less per-request
overhead here (and fewer billed GETs on object stores), while enough runs remain to keep
every connection busy until the end.

As a run's body streams in, the chunks asyncio received are gathered per piece without
copying them (memoryview slices); each whole piece goes to the store (BLAKE3 over the chunks,
one ``pwritev`` at its offset) in a worker thread while reading goes on. At most
``concurrency + 2`` pieces are held in memory at once, whatever the file size, so a slow disk
pushes back on the network.

A run that breaks off keeps the pieces it completed; the rest is retried. When the origin
ignores ``Range`` the whole body is read as one run and cut into pieces; a piece already held
is not rewritten but compared, so an origin without validators that changed shows up as
``SourceChangedError`` instead of a file of two versions. Version checks of the answers
themselves are the backend's (``RequestOptions.expected``); a change is never retried here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from damselfly.backends.base import Backend, RangeNotHonouredError, RequestOptions, open_stream
from damselfly.core.digests import piece_digest_of_chunks
from damselfly.core.error_groups import group_error, leaf_errors
from damselfly.core.errors import (
    SourceChangedError,
    SourceProtocolError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange, Piece, piece_at
from damselfly.core.urls import SourceUrl
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.store import TaskStorage

RETRYABLE_PIECE_ERRORS = (SourceProtocolError, SourceUnreachableError, SourceTimeoutError)
MiB = 1024 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    concurrency: int = 8  # range requests in flight per file
    piece_attempts: int = 4  # tries of one run before the download fails
    retry_delay: float = 0.25  # doubled after each failed attempt
    max_request_length: int = 256 * MiB  # bytes one range request may cover


PieceCallback = Callable[[PieceMeta], None]


def plan_runs(missing: Sequence[int], piece_length: int, policy: FetchPolicy) -> deque[list[int]]:
    """Group ``missing`` (sorted) into runs of consecutive pieces for one request each."""
    per_run = max(1, policy.max_request_length // piece_length)
    balanced = -(-len(missing) // (2 * max(1, policy.concurrency)))  # >= 2 runs per worker
    per_run = max(1, min(per_run, balanced))
    runs: deque[list[int]] = deque()
    for number in missing:
        last = runs[-1] if runs else None
        if last is not None and number == last[-1] + 1 and len(last) < per_run:
            last.append(number)
        else:
            runs.append([number])
    return runs


class SourceFetcher:
    def __init__(
        self,
        backend: Backend,
        url: SourceUrl,
        options: RequestOptions,
        task: TaskStorage,
        *,
        policy: FetchPolicy,
        on_piece: PieceCallback,
    ) -> None:
        self._backend = backend
        self._url = url
        self._options = options
        self._task = task
        self._policy = policy
        self._on_piece = on_piece
        self._held: set[int] = set()
        self._only: frozenset[int] | None = None
        self._slots = asyncio.Semaphore(policy.concurrency + 2)  # pieces held in memory
        self.source_bytes = 0

    async def run(self, *, supports_ranges: bool, only: frozenset[int] | None = None) -> None:
        """Fill the missing pieces, or only those of ``only`` (the others are being written
        by someone else: a whole read stores none of them)."""
        self._held = set(self._task.finished_pieces())
        self._only = only
        wanted = range(self._task.piece_count) if only is None else sorted(only)
        missing = [n for n in wanted if n not in self._held]
        if not missing:
            return
        if supports_ranges and await self._try_ranged(missing):
            return
        await self._fetch_run(list(range(self._task.piece_count)), ranged=False)

    async def _try_ranged(self, missing: list[int]) -> bool:
        """Fetch ``missing`` by ranges; False when the origin turned out to ignore ``Range``."""
        runs = plan_runs(missing, self._task.piece_length, self._policy)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._policy.concurrency, len(runs))):
                    group.create_task(self._worker(runs))
        except BaseExceptionGroup as group:
            changed = group.subgroup(SourceChangedError)
            if changed is not None:  # the first one alone: the others say the same
                raise leaf_errors(changed)[0] from None
            if group.subgroup(RangeNotHonouredError) is not None:
                return False
            raise group_error(group) from None
        return True

    async def _worker(self, runs: deque[list[int]]) -> None:
        while runs:
            await self._fetch_run(runs.popleft(), ranged=True)

    async def _fetch_run(self, numbers: list[int], *, ranged: bool) -> None:
        delay = self._policy.retry_delay
        for attempt in range(1, self._policy.piece_attempts + 1):
            remaining = [n for n in numbers if n not in self._held] if ranged else numbers
            if not remaining:
                return
            try:
                await self._stream_run([self._piece(n) for n in remaining], ranged=ranged)
                return
            except RangeNotHonouredError:
                raise
            except RETRYABLE_PIECE_ERRORS:
                if attempt == self._policy.piece_attempts:
                    raise
                await asyncio.sleep(delay)
                delay *= 2

    async def _stream_run(self, pieces: list[Piece], *, ranged: bool) -> None:
        """One request for consecutive ``pieces``; each piece stored as soon as it is whole."""
        span = ByteRange(pieces[0].offset, pieces[-1].offset + pieces[-1].length - pieces[0].offset)
        cutter = _PieceCutter(pieces, self._slots, self._store_piece)
        try:
            stream = open_stream(self._backend, self._url, span if ranged else None, self._options)
            async with stream as chunks:
                async for chunk in chunks:
                    self.source_bytes += len(chunk)
                    if not await cutter.feed(chunk):
                        raise self._length_error(span.length, cutter.received)
            if not cutter.complete:
                raise self._length_error(span.length, cutter.received)
        finally:
            await cutter.aclose()

    async def _store_piece(self, piece: Piece, chunks: list[memoryview]) -> None:
        if self._only is not None and piece.number not in self._only | self._held:
            return  # a whole read: someone else writes this one
        if piece.number in self._held:  # single-stream fallback: already stored earlier
            await asyncio.to_thread(self._check_held, piece, chunks)
            return
        meta = await asyncio.to_thread(self._task.write_piece, piece.number, chunks)
        self._held.add(piece.number)
        self._on_piece(meta)

    def _check_held(self, piece: Piece, chunks: list[memoryview]) -> None:
        held = self._task.piece_meta(piece.number)
        if held is not None and held.digest != piece_digest_of_chunks(chunks):
            detail = f"piece {piece.number} differs from the one read before"
            raise SourceChangedError(self._url.redacted(), detail)

    def _piece(self, number: int) -> Piece:
        return piece_at(number, self._task.content_length, self._task.piece_length)

    def _length_error(self, expected: int, actual: int) -> SourceProtocolError:
        return SourceProtocolError(
            self._url.redacted(), f"expected {expected} bytes, received {actual}"
        )


StorePiece = Callable[[Piece, list[memoryview]], Awaitable[None]]


class _PieceCutter:
    """Cuts one response body into pieces, handing each whole piece to ``store``.

    A piece is the list of memoryview slices of the received chunks that make it up; a slot
    of ``slots`` is held from a piece's first byte until the store has written it."""

    def __init__(self, pieces: list[Piece], slots: asyncio.Semaphore, store: StorePiece) -> None:
        self._pieces = pieces
        self._slots = slots
        self._store = store
        self._index = 0
        self._filled = 0
        self._chunks: list[memoryview] = []
        self._holding_slot = False
        self._writes: set[asyncio.Task[None]] = set()
        self.received = 0

    @property
    def complete(self) -> bool:
        return self._index == len(self._pieces)

    async def feed(self, chunk: bytes) -> bool:
        """Take ``chunk``; False if it runs past the last piece."""
        view = memoryview(chunk)
        self.received += len(view)
        while view:
            if self.complete:
                return False
            if not self._holding_slot:
                await self._slots.acquire()
                self._holding_slot = True
            piece = self._pieces[self._index]
            take = min(len(view), piece.length - self._filled)
            self._chunks.append(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == piece.length:
                self._hand_over(piece)
        return True

    def _hand_over(self, piece: Piece) -> None:
        write = asyncio.ensure_future(self._write(piece, self._chunks))
        self._writes.add(write)
        self._chunks, self._filled, self._holding_slot = [], 0, False
        self._index += 1

    async def _write(self, piece: Piece, chunks: list[memoryview]) -> None:
        try:
            await self._store(piece, chunks)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        """Wait for every handed-over piece; re-raise the first write failure."""
        if self._holding_slot:
            self._slots.release()
            self._chunks, self._holding_slot = [], False
        writes, self._writes = self._writes, set()
        results = await asyncio.gather(*writes, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
