"""``BodyReader``: exactly one answer's body from a ``WireConnection``, in parts, with the
piece errors ``piece_pool.py`` raises (a body cut short, a stall); ``PartBuffers``, the part
buffers kept from one piece's body for the next; and ``skip_body`` for the small body of a 404
or 429, read so that the connection can be reused.

Part buffers are reused because a new one per piece cost the event loop a zero-filled
allocation whose pages the kernel had to fault in and clear again for every piece (issue 15:
``clear_page`` and the ``bytearray`` were ~4 % of a swarm node's CPU). A buffer goes back to
the pool only after a body was read to its end and the sink returned for every part; after
an error or a cancellation it is dropped, since a worker thread (the TLS wire's) may still be
filling it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from damselfly.transport.piece_errors import ParentStalledError, PieceLengthError
from damselfly.transport.piece_reads import MAX_ERROR_BODY, PieceRequest
from damselfly.transport.piece_wire import Head, WireClosed, WireConnection, WireStalled

PartSink = Callable[[list[memoryview]], Awaitable[None]]


class PartBuffers:
    """At most ``keep`` part buffers, kept for the next bodies' reads."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._free: list[bytearray] = []

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes: a kept one, or a new one of exactly that."""
        while self._free:
            buffer = self._free.pop()
            if len(buffer) >= size:
                return buffer
        return bytearray(size)

    def give_back(self, buffer: bytearray) -> None:
        if buffer and len(self._free) < self._keep:
            self._free.append(buffer)

    def drop(self) -> None:
        """Let the kept buffers go (nothing is being read: an idle daemon holds none)."""
        self._free.clear()

    def __len__(self) -> int:
        return len(self._free)


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

    async def read(
        self, sink: PartSink, part_length: int, buffers: PartBuffers | None = None
    ) -> None:
        """Hand the body to ``sink`` in parts of ``part_length`` bytes. With ``buffers`` the
        parts share one buffer taken from (and given back to) them, so ``sink`` must be done
        with a part when it returns; without, each part is a buffer of its own."""
        early = self._connection.early_body_length()
        if early > self._length:
            reason = f"more than {self._length} bytes ({early})"
            raise self._request.error(PieceLengthError, reason)
        shared = None if buffers is None else buffers.take(min(part_length, self._length))
        while self._received < self._length:
            size = min(part_length, self._length - self._received)
            view = memoryview(bytearray(size) if shared is None else shared)[:size]
            early = self._take_early(view)
            if early < size:
                await self._fill(view[early:], self._received + early)
            self._received += size
            await sink([view])
        if shared is not None and buffers is not None:
            buffers.give_back(shared)

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
        await reader.read(_discard, max(1, head.content_length))
    except (PieceLengthError, ParentStalledError):
        return False
    return True


async def _discard(part: list[memoryview]) -> None:
    return None
