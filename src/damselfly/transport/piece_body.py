"""``BodyReader``: exactly one answer's body from a ``WireConnection``, in parts, with the
piece errors ``piece_pool.py`` raises (a body cut short, a stall); and ``skip_body`` for the
small body of a 404 or 429, read so that the connection can be reused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from damselfly.transport.piece_errors import ParentStalledError, PieceLengthError
from damselfly.transport.piece_reads import MAX_ERROR_BODY, PieceRequest
from damselfly.transport.piece_wire import Head, WireClosed, WireConnection, WireStalled

PartSink = Callable[[list[memoryview]], Awaitable[None]]


class BodyReader:
    """Exactly ``length`` body bytes from one connection, handed over in parts."""

    def __init__(
        self, connection: WireConnection, request: PieceRequest, length: int, patience: float
    ) -> None:
        self._connection = connection
        self._request = request
        self._length = length
        self._timeout = patience
        self._received = 0

    async def read(self, sink: PartSink, part_length: int, fresh_parts: bool) -> None:
        early = self._connection.early_body_length()
        if early > self._length:
            reason = f"more than {self._length} bytes ({early})"
            raise self._request.error(PieceLengthError, reason)
        buffer: bytearray | None = None
        while self._received < self._length:
            size = min(part_length, self._length - self._received)
            if buffer is None or fresh_parts or len(buffer) != size:
                buffer = bytearray(size)
            view = memoryview(buffer)
            early = self._take_early(view)
            if early < size:
                await self._fill(view[early:], self._received + early)
            self._received += size
            await sink([view])

    def _take_early(self, view: memoryview) -> int:
        early = self._connection.take_early_body(len(view))
        count = len(early)
        if count:
            view[:count] = early
        return count

    async def _fill(self, view: memoryview, before: int) -> None:
        """Fill ``view``; ``before``: body bytes received before it (for the error)."""
        try:
            await self._connection.read_into(view, self._timeout)
        except WireClosed as closed:
            reason = f"connection closed after {before + closed.received} of {self._length} bytes"
            raise self._request.error(PieceLengthError, reason) from None
        except WireStalled as stalled:
            got = before + stalled.received
            reason = f"no byte for {self._timeout:g}s after {got} of {self._length} bytes"
            raise self._request.error(ParentStalledError, reason) from None


async def skip_body(
    connection: WireConnection, request: PieceRequest, head: Head, patience: float
) -> bool:
    """Read a small error body so that the connection can be reused (a 404 or 429 is
    routine); False (close it) for a large or unknown one, or one that did not arrive."""
    if head.content_length is None or head.content_length > MAX_ERROR_BODY:
        return False
    reader = BodyReader(connection, request, head.content_length, patience)
    try:
        await reader.read(_discard, max(1, head.content_length), False)
    except (PieceLengthError, ParentStalledError):
        return False
    return True


async def _discard(part: list[memoryview]) -> None:
    return None
