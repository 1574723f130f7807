"""One client connection spoken with h11: requests in, responses out, over asyncio streams.

h11 parses and frames; this class only moves bytes and keeps the two timeouts a server owes
itself: ``idle_timeout`` for a kept-alive connection to start its next request, and
``header_timeout`` for a request's head to arrive once its first byte has (a slow client
cannot hold a slot forever). ``ProtocolViolation`` carries h11's suggested status (400, 431).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import cast

import h11

from damselfly.daemon.proxy.headers import Headers

READ_LENGTH = 256 * 1024
# Body bytes go to the transport in slices of at most this many: a slice is encrypted (TLS),
# handed to the socket and gone while it is still in the CPU's cache, and the transport never
# buffers (copies) more than a slice. Whole 4 MiB pieces in one write cost ~2.5x the CPU per
# byte (bench/proxy/serve.py, docs/benchmarks.md).
SEND_LENGTH = 256 * 1024


class ProtocolViolation(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client closed the connection or timed out."""


class HttpConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_header_length: int = 65536,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.max_header_length = max_header_length
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_length)

    async def read_request(self, idle_timeout: float, header_timeout: float) -> h11.Request | None:
        """The next request's head; None when the client closed cleanly between requests."""
        deadline: float | None = None
        while True:
            event = self._next_event()
            if isinstance(event, h11.Request):
                return self._within_limit(event)
            if isinstance(event, h11.ConnectionClosed):
                return None
            timeout = idle_timeout if deadline is None else deadline - time.monotonic()
            received = await self._receive(timeout)
            if deadline is None and received:
                deadline = time.monotonic() + header_timeout

    def _within_limit(self, request: h11.Request) -> h11.Request:
        """h11 bounds only a head still incomplete; one that arrived whole is measured here."""
        length = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if length > self.max_header_length:
            raise ProtocolViolation(431, "request head too large")
        return request

    async def body(self) -> AsyncIterator[bytes]:
        """The current request's body, until its end."""
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ClientGone("client closed the connection mid-body")
            else:
                await self._receive(None)

    async def request_body(self, present: bool) -> AsyncIterator[bytes] | None:
        """The body to stream on, or None (after consuming the end of a body-less request).
        A client waiting for ``100 Continue`` gets it: the body will be read."""
        if not present:
            await self.drain_body()
            return None
        if self.h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        return self.body()

    async def drain_body(self) -> None:
        async for _ in self.body():
            pass

    async def send_head(self, status: int, headers: Headers, reason: str = "") -> None:
        reason = reason or _phrase(status)
        response = h11.Response(status_code=status, headers=headers, reason=reason.encode())
        await self._send(response)

    async def send_data(self, data: bytes) -> None:
        if len(data) <= SEND_LENGTH:
            await self._send(h11.Data(data=data))
            return
        view = memoryview(data)  # slices without copies; h11 passes them through as they are
        for start in range(0, len(view), SEND_LENGTH):
            await self._send(h11.Data(data=cast(bytes, view[start : start + SEND_LENGTH])))

    async def send_end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def send_error(self, status: int, message: str) -> None:
        """A short plain-text answer, then the connection closes."""
        body = (message + "\n").encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        await self.send_head(status, headers)
        await self.send_data(body)
        await self.send_end()

    def next_cycle(self) -> bool:
        """Ready the connection for another request; False when it must close instead."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            return True
        return False

    def switched_bytes(self) -> bytes:
        """After a 2xx to CONNECT: bytes the client sent past the request head."""
        data, _closed = self.h11.trailing_data
        return bytes(data)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProtocolViolation(exc.error_status_hint, str(exc)) from exc

    async def _receive(self, wait: float | None) -> bool:
        try:
            async with asyncio.timeout(None if wait is None else max(wait, 0.0)):
                data = await self.reader.read(READ_LENGTH)
        except TimeoutError as exc:
            raise ClientGone("client timed out") from exc
        except (ConnectionError, OSError) as exc:
            raise ClientGone(str(exc)) from exc
        try:
            self.h11.receive_data(data)
        except RuntimeError as exc:  # data after the client's EOF
            raise ClientGone(str(exc)) from exc
        return bool(data)

    async def _send(self, event: h11.Event) -> None:
        try:  # passthrough: body bytes are handed on as they are, not joined into a copy
            pieces = self.h11.send_with_data_passthrough(event)
        except h11.LocalProtocolError as exc:
            raise ClientGone(f"cannot send: {exc}") from exc
        if pieces:
            self.writer.writelines(pieces)
            try:
                await self.writer.drain()
            except (ConnectionError, OSError) as exc:
                raise ClientGone(str(exc)) from exc


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def has_body(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
