"""``PieceConnections``: keep-alive piece connections per parent, and one piece's GET on
them (``PieceClient.receive_piece``; the wire is ``piece_wire.py``).

At most ``limit_per_host`` requests run to one parent at a time (more wait for a slot); an
idle connection is reused for ``keepalive`` seconds unless the parent closed it or said
``Connection: close``. A request on a reused connection that fails before any byte of the
answer (the parent closed it as we sent) is sent once more on a new one. A connection that
failed mid-answer is closed, never put back. Errors are ``piece_errors.py``'s, worded as
``piece_reads.py`` words aiohttp's.

Body bytes go into part buffers of ``part_length`` bytes, each handed to the sink when full
(the last one shorter) and reused once the sink has returned: the sink must be done with a
part when it returns (the daemon's writes it to disk first). ``fresh_parts=True`` gives each
part a buffer of its own (``fetch_piece`` keeps them).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from yarl import URL

from damselfly.protocol import pieces_http as wire
from damselfly.transport.http_session import default_ssl_context
from damselfly.transport.piece_errors import (
    ParentBusyError,
    ParentProtocolError,
    ParentStalledError,
    ParentStatusError,
    ParentUnreachableError,
    PieceLengthError,
    PieceNotHeldError,
)
from damselfly.transport.piece_reads import PieceRequest
from damselfly.transport.piece_wire import (
    Head,
    HeadError,
    HeadTooLong,
    PieceConnection,
    WireClosed,
    WireConnection,
    WireStalled,
    parse_head,
)
from damselfly.transport.piece_wire_threads import BlockingTlsConnection

PartSink = Callable[[list[memoryview]], Awaitable[None]]
_MAX_ERROR_BODY = 64 * 1024
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
_PATH = re.compile(r"/[A-Za-z0-9/_.~-]*")


@dataclass(frozen=True)
class Parent:
    """Where a parent listens, from its base URL."""

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class PieceConnections:
    def __init__(
        self,
        *,
        limit_per_host: int,
        connect_timeout: float,
        keepalive: float,
        user_agent: str,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self._limit_per_host = limit_per_host
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._user_agent = user_agent
        self._tls = tls
        self._idle: dict[Parent, list[WireConnection]] = {}
        self._slots: dict[Parent, asyncio.Semaphore] = {}
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    async def receive_piece(
        self,
        request: PieceRequest,
        length: int,
        sink: PartSink,
        *,
        part_length: int,
        timeout_no_bytes: float,
        headers: dict[str, str],
        fresh_parts: bool = False,
    ) -> None:
        parent = self._parent(request)
        message = self._request_bytes(request, parent, headers)
        slot = self._slots.setdefault(parent, asyncio.Semaphore(self._limit_per_host))
        async with slot:
            connection, head = await self._answer(request, parent, message, timeout_no_bytes)
            if head.status != 200:
                raise await self._refused(parent, connection, request, head, timeout_no_bytes)
            try:
                _check_length(request, head, length)
                reader = _BodyReader(connection, request, length, timeout_no_bytes)
                await reader.read(sink, part_length, fresh_parts)
            except BaseException:
                connection.close()
                raise
            self._put_back(parent, connection, head.keep_alive)

    async def _refused(
        self,
        parent: Parent,
        connection: WireConnection,
        request: PieceRequest,
        head: Head,
        patience: float,
    ) -> Exception:
        """The error a non-200 answer means; its connection kept if its body was small."""
        try:
            kept = await _skip_body(connection, request, head, patience)
        except BaseException:
            connection.close()
            raise
        if kept:
            self._put_back(parent, connection, head.keep_alive)
        else:
            connection.close()
        return _status_error(request, head)

    # -- a request's answer --------------------------------------------------------------------

    async def _answer(
        self, request: PieceRequest, parent: Parent, message: bytes, patience: float
    ) -> tuple[WireConnection, Head]:
        """Send ``message``; the connection and the answer's head. Once more on a new
        connection if a reused one was closed before any byte came back."""
        connection, reused = await self._connection(request, parent)
        while True:
            try:
                return connection, await self._head(connection, request, message, patience)
            except _ClosedBeforeAnswer as closed:
                connection.close()
                if not reused:
                    raise request.error(ParentUnreachableError, closed.reason) from None
            except BaseException:
                connection.close()
                raise
            connection, reused = await self._connect(request, parent), False

    async def _head(
        self, connection: WireConnection, request: PieceRequest, message: bytes, patience: float
    ) -> Head:
        try:
            raw = await connection.exchange(message, patience)
        except WireClosed:
            raise _ClosedBeforeAnswer("closed the connection before answering") from None
        except WireStalled:
            raise request.error(ParentStalledError, f"no answer within {patience:g}s") from None
        except HeadTooLong:
            raise request.error(ParentProtocolError, "answer head too long") from None
        try:
            return parse_head(raw)
        except HeadError as exc:
            raise request.error(ParentProtocolError, f"bad HTTP answer: {exc}") from exc

    # -- connections ---------------------------------------------------------------------------

    async def _connection(
        self, request: PieceRequest, parent: Parent
    ) -> tuple[WireConnection, bool]:
        idle = self._idle.get(parent, [])
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._keepalive:
                return connection, True
            connection.close()
        return await self._connect(request, parent), False

    async def _connect(self, request: PieceRequest, parent: Parent) -> WireConnection:
        context = self._tls() if self._tls is not None else None
        if context is None and parent.scheme == "https":  # a parent given as https://
            context = default_ssl_context()
        try:
            return await self._dial(parent, context)
        except TimeoutError as exc:
            reason = f"no connection within {self._connect_timeout:g}s"
            raise request.error(ParentUnreachableError, reason) from exc
        except ssl.SSLError as exc:
            reason = f"TLS handshake failed: {exc.reason or exc}"
            raise request.error(ParentUnreachableError, reason) from exc
        except OSError as exc:
            reason = f"cannot connect: {exc.strerror or exc}"
            raise request.error(ParentUnreachableError, reason) from exc

    async def _dial(self, parent: Parent, context: ssl.SSLContext | None) -> WireConnection:
        """Over TLS a connection read by a worker thread (``piece_wire_threads.py``), in
        plain text one read by the event loop (``piece_wire.py``)."""
        if context is not None:
            return await BlockingTlsConnection.open(
                parent.host, parent.port, context, parent.host, self._connect_timeout
            )
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(PieceConnection, parent.host, parent.port),
            self._connect_timeout,
        )
        return connection

    def _put_back(self, parent: Parent, connection: WireConnection, keep_alive: bool) -> None:
        if not keep_alive or self._closed or connection.closed:
            connection.close()
            return
        connection.finish()
        self._idle.setdefault(parent, []).append(connection)

    # -- requests ------------------------------------------------------------------------------

    def _parent(self, request: PieceRequest) -> Parent:
        url: URL = request.url()
        if url.host is None or url.port is None:
            raise request.error(
                ParentUnreachableError, "parent address must be http(s)://host:port"
            )
        return Parent(url.scheme, url.host, url.port)

    def _request_bytes(
        self, request: PieceRequest, parent: Parent, headers: dict[str, str]
    ) -> bytes:
        if not _PATH.fullmatch(request.path):
            raise request.error(ParentProtocolError, "unexpected characters in the request path")
        lines = [
            f"GET {request.path} HTTP/1.1",
            f"Host: {parent.host_header}",
            f"User-Agent: {self._user_agent}",
            "Accept-Encoding: identity",
        ]
        for name, value in headers.items():
            if not _HEADER_VALUE.fullmatch(value):  # a grant with a line break would inject
                raise request.error(ParentProtocolError, f"header {name} carries a bad value")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class _ClosedBeforeAnswer(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _BodyReader:
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


def _check_length(request: PieceRequest, head: Head, length: int) -> None:
    if head.content_length is None:
        raise request.error(ParentProtocolError, "a piece without Content-Length")
    if head.content_length != length:
        reason = f"{head.content_length} bytes announced, {length} due"
        raise request.error(PieceLengthError, reason)


def _status_error(request: PieceRequest, head: Head) -> Exception:
    if head.status == 404:
        return request.error(PieceNotHeldError, "not held (HTTP 404)")
    if head.status == 429:
        retry_after = wire.parse_retry_after(head.retry_after)
        return ParentBusyError(
            request.parent,
            task_id=request.task_id,
            piece_number=request.number,
            retry_after=retry_after,
        )
    return ParentStatusError(
        request.parent, head.status, task_id=request.task_id, piece_number=request.number
    )


async def _skip_body(
    connection: WireConnection, request: PieceRequest, head: Head, patience: float
) -> bool:
    """Read a small error body so that the connection can be reused (a 404 or 429 is
    routine); False (close it) for a large or unknown one, or one that did not arrive."""
    if head.content_length is None or head.content_length > _MAX_ERROR_BODY:
        return False
    reader = _BodyReader(connection, request, head.content_length, patience)
    try:
        await reader.read(_discard, max(1, head.content_length), False)
    except (PieceLengthError, ParentStalledError):
        return False
    return True


async def _discard(part: list[memoryview]) -> None:
    return None
