"""``Body``: one ``get`` answer read into the caller's buffers, and ``open_body``, which opens
one on any backend.

Reading the origin into one reused buffer per request (issue 15) costs less than a new
``bytes`` per read: no allocation, no fresh pages, one copy. A backend that can do that
natively has an ``open_body(url, byte_range, options)`` method on its class (http(s):
``HttpBackend``; ``ThrottledBackend`` passes it on); for every other backend ``open_body``
here reads its ``get`` chunks into the buffers instead (one copy more, the same bytes). The
contract is ``get``'s: with a range, exactly ``byte_range.length`` bytes or an error; the
same errors; a server that ignores ``Range`` raises ``RangeNotHonouredError`` before any byte
is read. A wrapper found through ``__getattr__`` never counts: the method is looked up on the
class, so a wrapper that does not pass ``open_body`` on is read through its own ``get``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from damselfly.backends.base import Backend, RequestOptions, open_stream
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl


class Body(Protocol):
    async def read_into(self, target: memoryview) -> int:
        """Fill ``target`` with the next body bytes: all of it, or fewer only where the body
        ends (0: it has ended). Errors as ``get`` raises them."""


class EmptyBody:
    """The body of an empty range."""

    async def read_into(self, target: memoryview) -> int:
        return 0


def open_body(
    backend: Backend, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
) -> AbstractAsyncContextManager[Body]:
    """The body of ``backend.get(url, byte_range, options)``; the answer is closed however
    the reader leaves."""
    if callable(getattr(type(backend), "open_body", None)):
        opener: AbstractAsyncContextManager[Body]
        opener = backend.open_body(url, byte_range, options)  # type: ignore[attr-defined]
        return opener
    return _chunk_body(backend, url, byte_range, options)


@contextlib.asynccontextmanager
async def _chunk_body(
    backend: Backend, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
) -> AsyncIterator[Body]:
    async with open_stream(backend, url, byte_range, options) as chunks:
        yield ChunkBody(chunks)


class ChunkBody:
    """A ``Body`` over an iterator of chunks (copied into the caller's buffers)."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")
        self._ended = False

    async def read_into(self, target: memoryview) -> int:
        filled = 0
        while filled < len(target):
            if not self._rest:
                if self._ended or not await self._next():
                    break
                continue
            take = min(len(self._rest), len(target) - filled)
            target[filled : filled + take] = self._rest[:take]
            self._rest = self._rest[take:]
            filled += take
        return filled

    async def _next(self) -> bool:
        chunk = await anext(self._chunks, None)
        if chunk is None:
            self._ended = True
            return False
        self._rest = memoryview(chunk)
        return True
