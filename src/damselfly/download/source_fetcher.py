"""Fill a task's pieces from the origin ("back-to-source").

The missing pieces are grouped into *runs* of consecutive pieces, each fetched with one range
request (at most ``FetchPolicy.max_request_length`` bytes), ``concurrency`` runs at a time:
fewer requests than one per piece means less work for the origin and less per-request
overhead here (and fewer billed GETs on object stores), while enough runs remain to keep
every connection busy until the end.

A run's body is read into two part buffers in turn (``backends/bodies.py``: for http(s)
straight from the socket, no ``bytes`` per read): while one fills, the other's bytes are
hashed and written at their place in the content file in a worker thread
(``storage/piece_stream.py``), and a piece is recorded with its digest once its last part is
written. A run holds its two buffers and nothing else, whatever the piece length (before,
whole pieces were gathered in memory: ``concurrency + 2`` of them), so a slow disk pushes
back on the network. ``part_length`` shares ``PART_BUDGET`` among the runs in flight:
larger parts cost less CPU per byte (fewer thread hand-offs and wake-ups).

A run that breaks off keeps the pieces it completed; the rest is retried. When the origin
ignores ``Range`` the whole body is read as one run and cut into pieces; a piece already held
is not rewritten but compared, so an origin without validators that changed shows up as
``SourceChangedError`` instead of a file of two versions. Version checks of the answers
themselves are the backend's (``RequestOptions.expected``); a change is never retried here.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from damselfly.backends.base import Backend, RangeNotHonouredError, RequestOptions
from damselfly.backends.bodies import Body, open_body
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
from damselfly.storage.piece_stream import PieceStream
from damselfly.storage.store import TaskStorage

RETRYABLE_PIECE_ERRORS = (SourceProtocolError, SourceUnreachableError, SourceTimeoutError)
MiB = 1024 * 1024
# Body bytes read into one buffer, then hashed and written: two buffers per request in
# flight, shared from this budget, each within these bounds (larger parts cost less CPU per
# byte; the floor wins over the budget for many requests)
PART_BUDGET = 8 * MiB
PART_BOUNDS = (MiB, 4 * MiB)


@dataclass(frozen=True)
class FetchPolicy:
    concurrency: int = 8  # range requests in flight per file
    piece_attempts: int = 4  # tries of one run before the download fails
    retry_delay: float = 0.25  # doubled after each failed attempt
    max_request_length: int = 256 * MiB  # bytes one range request may cover


PieceCallback = Callable[[PieceMeta], None]
Recorded = Callable[[PieceMeta | None], None]


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


def part_length(concurrency: int, piece_length: int) -> int:
    """The part buffers' length for ``concurrency`` requests in flight: a power of two (so it
    divides a piece: no odd last part) between ``PART_BOUNDS``, at most a piece."""
    low, high = PART_BOUNDS
    share = PART_BUDGET // (2 * max(1, concurrency))
    length = 1 << (max(low, min(high, share)).bit_length() - 1)
    return min(piece_length, length)


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
        self._part_length = part_length(policy.concurrency, task.piece_length)
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
        """One request for consecutive ``pieces``; each piece recorded as soon as it is whole."""
        span = ByteRange(pieces[0].offset, pieces[-1].offset + pieces[-1].length - pieces[0].offset)
        parts = _Parts(self._part_length)
        wanted = span if ranged else None
        async with open_body(self._backend, self._url, wanted, self._options) as opened:
            body = _RunBody(opened, span.length, self._length_error)
            try:
                for piece in pieces:
                    await self._read_piece(body, piece, parts)
                await body.expect_end()
            except BaseException:
                await parts.abandon()
                raise
            finally:
                self.source_bytes += body.received
            await parts.drain()

    async def _read_piece(self, body: _RunBody, piece: Piece, parts: _Parts) -> None:
        sink = self._sink(piece)
        for size, last in _part_sizes(piece.length, self._part_length):
            part = await body.fill(parts.buffer(size))
            work = functools.partial(_take_part, sink, part, last)
            await parts.submit(work, self._recorded if last else None)

    def _sink(self, piece: Piece) -> _Sink:
        """Where a piece's bytes go: the store (a missing piece), a comparison (one held
        already, in a whole read: an origin without validators that changed shows), or
        nowhere (a whole read's piece that someone else writes)."""
        if piece.number in self._held:
            held = self._task.piece_meta(piece.number)
            return _Compare(PieceStream(self._task, piece.number), held, self._url)
        if self._only is not None and piece.number not in self._only:
            return _Skip()
        return _Store(PieceStream(self._task, piece.number), self._url)

    def _recorded(self, meta: PieceMeta | None) -> None:
        if meta is not None:
            self._held.add(meta.number)
            self._on_piece(meta)

    def _piece(self, number: int) -> Piece:
        return piece_at(number, self._task.content_length, self._task.piece_length)

    def _length_error(self, expected: int, actual: int) -> SourceProtocolError:
        return SourceProtocolError(
            self._url.redacted(), f"expected {expected} bytes, received {actual}"
        )


class _RunBody:
    """A run's body, counted: a part it cannot fill, or a byte past the run, is an error."""

    def __init__(
        self, body: Body, length: int, error: Callable[[int, int], SourceProtocolError]
    ) -> None:
        self._body = body
        self._length = length
        self._error = error
        self.received = 0

    async def fill(self, part: memoryview) -> memoryview:
        count = await self._body.read_into(part)
        self.received += count
        if count < len(part):
            raise self._error(self._length, self.received)
        return part

    async def expect_end(self) -> None:
        extra = await self._body.read_into(memoryview(bytearray(1)))
        if extra:
            self.received += extra
            raise self._error(self._length, self.received)


class _Sink(Protocol):
    def take(self, part: memoryview) -> None: ...

    def end(self) -> PieceMeta | None: ...


class _Store:
    """A missing piece: hashed and written part by part, recorded with its digest."""

    def __init__(self, stream: PieceStream, url: SourceUrl) -> None:
        self._stream = stream
        self._url = url

    def take(self, part: memoryview) -> None:
        self._stream.write([part])

    def end(self) -> PieceMeta | None:
        meta = self._stream.record_as_read()
        if meta is None:  # a parent's stream wrote into it meanwhile: read it again
            detail = f"piece {self._stream.number} was overwritten in the store while read"
            raise SourceProtocolError(self._url.redacted(), detail)
        return meta


class _Compare:
    """A piece held already (a whole read): hashed and compared, never written."""

    def __init__(self, stream: PieceStream, held: PieceMeta | None, url: SourceUrl) -> None:
        self._stream = stream
        self._held = held
        self._url = url

    def take(self, part: memoryview) -> None:
        self._stream.skip([part])

    def end(self) -> PieceMeta | None:
        if self._held is not None and self._held.digest != self._stream.digest():
            detail = f"piece {self._stream.number} differs from the one read before"
            raise SourceChangedError(self._url.redacted(), detail)
        return None


class _Skip:
    def take(self, part: memoryview) -> None:
        return None

    def end(self) -> PieceMeta | None:
        return None


def _take_part(sink: _Sink, part: memoryview, last: bool) -> PieceMeta | None:
    sink.take(part)
    return sink.end() if last else None


def _part_sizes(length: int, part_length: int) -> Iterator[tuple[int, bool]]:
    """The sizes of a piece's parts in order, each with whether it is the last."""
    done = 0
    while done < length:
        size = min(part_length, length - done)
        done += size
        yield size, done == length


class _Parts:
    """Two part buffers in turn: one is filled from the body while the other's bytes are
    hashed and written in a worker thread, so reading never waits for a whole piece."""

    def __init__(self, part_length: int) -> None:
        self._buffers = (bytearray(part_length), bytearray(part_length))
        self._turn = 0
        self._writing: tuple[asyncio.Future[PieceMeta | None], Recorded | None] | None = None

    def buffer(self, size: int) -> memoryview:
        return memoryview(self._buffers[self._turn])[:size]

    async def submit(self, work: Callable[[], PieceMeta | None], then: Recorded | None) -> None:
        """Start ``work`` on the buffer just filled, once the part before it is done (its
        buffer is the one filled next)."""
        await self.drain()
        self._writing = (asyncio.ensure_future(asyncio.to_thread(work)), then)
        self._turn ^= 1

    async def drain(self) -> None:
        """Wait for the part in work; its errors propagate, then ``then`` has its result."""
        if self._writing is None:
            return
        future, then = self._writing
        self._writing = None
        await _to_its_end(future)
        meta = future.result()  # the worker's error, if any
        if then is not None:
            then(meta)

    async def abandon(self) -> None:
        """Wait for the part in work (an error is leaving the run); a piece it recorded is
        still announced, its own error gives way to the one leaving. A cancellation while
        waiting propagates (after the part is done)."""
        if self._writing is None:
            return
        future, then = self._writing
        self._writing = None
        await _to_its_end(future)
        if then is not None and not future.cancelled() and future.exception() is None:
            then(future.result())


async def _to_its_end(future: asyncio.Future[PieceMeta | None]) -> None:
    """Wait until a worker thread's part is done, through any number of cancellations (the
    last re-raised after): a write that lands after its run ended could be taken for one of
    the retry's."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
