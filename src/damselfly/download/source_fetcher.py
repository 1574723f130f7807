"""Fill a task's pieces from the origin ("back-to-source").

Pieces are fetched with parallel range requests, each piece verified by its length, hashed
(BLAKE3) and written at its offset by the store in a worker thread, so the event loop only
moves bytes. A piece whose body breaks off is retried on its own; a failure before the first
byte is retried by the backend. When the origin does not honour ``Range`` the fetcher falls
back to one sequential stream and cuts it into pieces as it arrives (pieces already held are
skipped, not rewritten).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from damselfly.backends.base import Backend, RangeNotHonouredError, RequestOptions, open_stream
from damselfly.core.errors import (
    SourceProtocolError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange, piece_at
from damselfly.core.urls import SourceUrl
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.store import TaskStorage

RETRYABLE_PIECE_ERRORS = (SourceProtocolError, SourceUnreachableError, SourceTimeoutError)


@dataclass(frozen=True)
class FetchPolicy:
    concurrency: int = 8  # range requests in flight per file
    piece_attempts: int = 4
    retry_delay: float = 0.25  # doubled after each failed attempt


PieceCallback = Callable[[PieceMeta], None]


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
        self.source_bytes = 0

    def missing_pieces(self) -> list[int]:
        return [n for n in range(self._task.piece_count) if not self._task.has_piece(n)]

    async def run(self, *, supports_ranges: bool) -> None:
        missing = self.missing_pieces()
        if not missing:
            return
        if supports_ranges and await self._try_ranged(missing):
            return
        await self._single_stream()

    async def _try_ranged(self, missing: list[int]) -> bool:
        """Fetch ``missing`` by ranges; False when the origin turned out to ignore ``Range``."""
        queue = deque(missing)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._policy.concurrency, len(queue))):
                    group.create_task(self._worker(queue))
        except BaseExceptionGroup as group:
            if group.subgroup(RangeNotHonouredError) is not None:
                return False
            raise first_error(group) from None
        return True

    async def _worker(self, queue: deque[int]) -> None:
        while queue:
            await self._fetch_piece(queue.popleft())

    async def _fetch_piece(self, number: int) -> None:
        piece = piece_at(number, self._task.content_length, self._task.piece_length)
        delay = self._policy.retry_delay
        for attempt in range(1, self._policy.piece_attempts + 1):
            try:
                data = await self._read_range(piece.byte_range)
                break
            except RangeNotHonouredError:
                raise
            except RETRYABLE_PIECE_ERRORS:
                if attempt == self._policy.piece_attempts:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        await self._store(number, data)

    async def _read_range(self, byte_range: ByteRange) -> bytearray:
        buffer = bytearray(byte_range.length)
        view = memoryview(buffer)
        position = 0
        stream = open_stream(self._backend, self._url, byte_range, self._options)
        async with stream as chunks:
            async for chunk in chunks:
                end = position + len(chunk)
                if end > byte_range.length:
                    raise self._length_error(byte_range.length, end)
                view[position:end] = chunk
                position = end
        if position != byte_range.length:
            raise self._length_error(byte_range.length, position)
        self.source_bytes += position
        return buffer

    async def _store(self, number: int, data: bytes | bytearray | memoryview) -> None:
        meta = await asyncio.to_thread(self._task.write_piece, number, data)
        self._on_piece(meta)

    async def _single_stream(self) -> None:
        """Read the whole body in order and cut it into pieces as it arrives."""
        piece_length = self._task.piece_length
        buffer = bytearray()
        number = 0
        stream = open_stream(self._backend, self._url, None, self._options)
        async with stream as chunks:
            async for chunk in chunks:
                self.source_bytes += len(chunk)
                buffer += chunk
                while len(buffer) >= piece_length and number < self._task.piece_count:
                    await self._keep_piece(number, buffer[:piece_length])
                    del buffer[:piece_length]
                    number += 1
        if buffer and number < self._task.piece_count:
            await self._keep_piece(number, buffer)
            number += 1
            buffer.clear()
        if buffer or number != self._task.piece_count or not self._task.is_complete:
            raise self._length_error(self._task.content_length, self.source_bytes)

    async def _keep_piece(self, number: int, data: bytearray) -> None:
        expected = piece_at(number, self._task.content_length, self._task.piece_length).length
        if len(data) != expected:
            raise self._length_error(self._task.content_length, self.source_bytes)
        if not self._task.has_piece(number):
            await self._store(number, bytes(data))

    def _length_error(self, expected: int, actual: int) -> SourceProtocolError:
        return SourceProtocolError(
            self._url.redacted(), f"expected {expected} bytes, received {actual}"
        )


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of an exception group: the error worth reporting."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
