"""``AdoptedBody``: the rest of an origin's answer read from its connection straight into the
caller's buffers (issue 15: "the same for reads from the origin").

aiohttp sends the request (redirects, proxies, TLS, retries stay its work) and parses the
head. Its body path then costs a new ``bytes`` per socket read, a copy by its parser into a
queue, and flow-control churn on a 64 KiB queue: ~2 CPU-s per GiB received on this machine
against ~0.9 for reading into one reused buffer. So once the head is in, the connection is
handed to a ``PieceConnection`` (``piece_wire.py``: a ``BufferedProtocol`` that fills the
buffer it is given), with the body bytes aiohttp had already queued taken first.

Only an answer whose body length is declared (``Content-Length``, no ``Transfer-Encoding``)
is adopted: then the bytes on the wire are exactly the body. An adopted connection is never
reused; ``close`` ends it, and aiohttp's protocol is told the connection ended, as it would
have been. An answer whose body already arrived whole is not adopted (its connection goes
back to aiohttp's pool).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from damselfly.transport.piece_wire import PieceConnection, WireClosed, WireStalled

_RECORD = 17 * 1024  # more than one TLS record's plaintext (16 KiB)
_SPILL = 256 * 1024


class _Adopted(PieceConnection):
    """A ``PieceConnection`` that tells aiohttp's protocol when the connection ends and, over
    asyncio's TLS, never loses decrypted bytes (see ``get_buffer``)."""

    def __init__(self, previous: asyncio.BaseProtocol, *, tls: bool) -> None:
        super().__init__()
        self._previous = previous
        self._tls = tls
        self._spill = bytearray()
        self._spilling = False
        self._over = bytearray()  # bytes past the last target, for the next one

    async def read_into(self, target: memoryview, patience: float) -> None:
        held = min(len(self._over), len(target))
        target[:held] = self._over[:held]
        del self._over[:held]
        if held == len(target):
            return
        if self.closed:
            raise WireClosed(held)
        try:
            await super().read_into(target[held:], patience)
        except WireClosed as closed:
            raise WireClosed(held + closed.received) from None
        except WireStalled as stalled:
            raise WireStalled(held + stalled.received) from None
        except ConnectionError:  # lost while paused between two targets
            raise WireClosed(held + self.filled) from None

    def get_buffer(self, sizehint: int) -> memoryview:
        """Over TLS never a buffer smaller than what asyncio may decrypt now: when the peer
        closes while reading is paused, asyncio's TLS protocol makes one last read into
        the buffer it is given and shuts down, dropping whatever did not fit. The surplus is
        kept for the next target."""
        rest = super().get_buffer(sizehint)
        if not self._tls or (self._target is not None and len(rest) >= sizehint + _RECORD):
            return rest
        size = max(sizehint + _RECORD, _SPILL)
        if len(self._spill) < size:
            self._spill = bytearray(size)
        self._spilling = True
        return memoryview(self._spill)[:size]

    def buffer_updated(self, nbytes: int) -> None:
        if not self._spilling:
            super().buffer_updated(nbytes)
            return
        self._spilling = False
        data = memoryview(self._spill)[:nbytes]
        take = 0
        if self._target is not None:
            take = min(nbytes, len(self._target) - self.filled)
            self._target[self.filled : self.filled + take] = data[:take]
        self._over += data[take:]
        if take:
            super().buffer_updated(take)
        else:
            self.last_byte = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._previous.connection_lost(exc)


def adoptable(response: aiohttp.ClientResponse, length: int) -> bool:
    """Is the body exactly the declared ``length`` bytes on the wire, as they are stored (no
    transfer or content coding a session might undo)?"""
    headers = response.headers
    coding = headers.get("Content-Encoding", "identity").strip().lower()
    return (
        "Transfer-Encoding" not in headers
        and coding == "identity"
        and headers.get("Content-Length") == str(length)
    )


class AdoptedBody:
    """The ``length`` body bytes of ``response`` (``adoptable``), read in order."""

    def __init__(self, response: aiohttp.ClientResponse, length: int) -> None:
        self._response = response
        early = response.content.read_nowait(-1)  # aiohttp's errors (a cut body) propagate
        if len(early) > length:
            raise WireClosed(len(early))  # cannot be: aiohttp holds a body to its length
        self._early = memoryview(early)
        self._rest = length - len(early)
        self._wire: PieceConnection | None = None
        connection = response.connection
        protocol = None if connection is None else connection.protocol
        transport = None if connection is None else connection.transport
        if self._rest and protocol is not None and isinstance(transport, asyncio.Transport):
            self._wire = _Adopted(protocol, tls=transport.get_extra_info("ssl_object") is not None)
            self._wire.adopt(transport)

    async def read_into(self, target: memoryview, patience: float) -> int:
        """Fill ``target``, or as much of it as the body still holds (0 at its end).
        ``WireClosed``/``WireStalled`` (``received``: the bytes of ``target`` filled)."""
        filled = 0
        if self._early:
            filled = min(len(self._early), len(target))
            target[:filled] = self._early[:filled]
            self._early = self._early[filled:]
        wanted = min(len(target) - filled, self._rest)
        if wanted <= 0:
            return filled
        if self._wire is None:
            raise WireClosed(filled)
        try:
            await self._wire.read_into(target[filled : filled + wanted], patience)
        except WireClosed as closed:
            raise WireClosed(filled + closed.received) from None
        except WireStalled as stalled:
            raise WireStalled(filled + stalled.received) from None
        self._rest -= wanted
        return filled + wanted

    def close(self) -> None:
        """The connection ends if it was adopted or is not read to its end; else it goes
        back to aiohttp's pool."""
        if self._wire is not None or self._rest or self._early:
            self._response.close()
        else:
            self._response.release()
