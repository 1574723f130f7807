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
part when it returns (the daemon's writes it to disk first). The buffer is kept for the next
piece (``PartBuffers``, at most ``KEPT_PART_BUFFERS``; all let go once no piece has been
received for ``keep_buffers_for`` seconds: a node that follows its seed often has no piece in
flight for a moment, and took a new buffer for nearly every piece when they went at once).
``fresh_parts=True`` gives each part a buffer of its own (``fetch_piece`` keeps them).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from yarl import URL

from damselfly.transport.http_session import default_ssl_context
from damselfly.transport.piece_body import BodyReader, PartBuffers, PartSink, skip_body
from damselfly.transport.piece_errors import (
    ParentProtocolError,
    ParentStalledError,
    ParentUnreachableError,
    PieceLengthError,
)
from damselfly.transport.piece_reads import PieceRequest, status_error
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

KEPT_PART_BUFFERS = 8  # the daemon's default pieces in flight per task (twins take new ones)
KEEP_BUFFERS_FOR = 2.0  # seconds part buffers are kept once no piece is being received
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
        keep_buffers_for: float = KEEP_BUFFERS_FOR,
    ) -> None:
        self._limit_per_host = limit_per_host
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._user_agent = user_agent
        self._tls = tls
        self._idle: dict[Parent, list[WireConnection]] = {}
        self._slots: dict[Parent, asyncio.Semaphore] = {}
        self._users: Counter[Parent] = Counter()  # requests to each parent now
        self._receiving = 0  # requests to any parent now
        self._buffers = PartBuffers(KEPT_PART_BUFFERS)
        self._keep_buffers_for = keep_buffers_for
        self._drop_buffers: asyncio.TimerHandle | None = None
        self._swept = time.monotonic()
        self._closed = False

    def parents(self) -> list[Parent]:
        """The parents this pool holds anything for (idle connections or a slot)."""
        return sorted(self._slots.keys() | self._idle.keys(), key=str)

    @property
    def kept_part_buffers(self) -> int:
        return len(self._buffers)

    async def aclose(self) -> None:
        self._closed = True
        if self._drop_buffers is not None:
            self._drop_buffers.cancel()
        self._buffers.drop()
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
        self._users[parent] += 1
        self._receiving += 1
        if self._drop_buffers is not None:
            self._drop_buffers.cancel()
            self._drop_buffers = None
        buffers = None if fresh_parts else self._buffers

        async def read_body(connection: WireConnection, head: Head) -> None:
            _check_length(request, head, length)
            reader = BodyReader(connection, request, length, timeout_no_bytes)
            await reader.read(sink, part_length, buffers)

        try:
            async with slot:
                await self._receive(request, parent, message, timeout_no_bytes, read_body)
        finally:
            self._users[parent] -= 1
            self._receiving -= 1
            if not self._receiving and len(self._buffers):
                loop = asyncio.get_running_loop()
                self._drop_buffers = loop.call_later(self._keep_buffers_for, self._buffers.drop)
            self._sweep()

    async def _receive(
        self,
        request: PieceRequest,
        parent: Parent,
        message: bytes,
        patience: float,
        read_body: Callable[[WireConnection, Head], Awaitable[None]],
    ) -> None:
        connection, head = await self._answer(request, parent, message, patience)
        if head.status != 200:
            raise await self._refused(parent, connection, request, head, patience)
        try:
            await read_body(connection, head)
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
            kept = await skip_body(connection, request, head, patience)
        except BaseException:
            connection.close()
            raise
        if kept:
            self._put_back(parent, connection, head.keep_alive)
        else:
            connection.close()
        return status_error(request, head.status, head.retry_after)

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
            if self._fresh(connection, now) and connection.reusable():
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

    def _sweep(self) -> None:
        """At most once a second: close connections idle past ``keepalive`` (or closed by
        their parent) and forget parents nobody asks now, so a daemon that meets many
        parents over weeks holds neither their sockets nor their entries."""
        now = time.monotonic()
        if now - self._swept < 1.0:
            return
        self._swept = now
        for parent in list(self._idle):
            keep = [c for c in self._idle[parent] if self._fresh(c, now)]
            for connection in self._idle[parent]:
                if connection not in keep:
                    connection.close()
            if keep:
                self._idle[parent] = keep
            else:
                del self._idle[parent]
        for parent in [p for p in self._slots if not self._users[p] and p not in self._idle]:
            del self._slots[parent]
            self._users.pop(parent, None)

    def _fresh(self, connection: WireConnection, now: float) -> bool:
        return not connection.closed and now - connection.idle_since < self._keepalive

    def _put_back(self, parent: Parent, connection: WireConnection, keep_alive: bool) -> None:
        if not keep_alive or self._closed or connection.closed:
            connection.close()
            return
        connection.finish()
        self._idle.setdefault(parent, []).append(connection)

    # -- requests ------------------------------------------------------------------------------

    def _parent(self, request: PieceRequest) -> Parent:
        url: URL = request.url()
        if url.raw_host is None or url.port is None:
            raise request.error(
                ParentUnreachableError, "parent address must be http(s)://host:port"
            )
        return Parent(url.scheme, url.raw_host, url.port)  # raw: IDNA, never non-ASCII

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


def _check_length(request: PieceRequest, head: Head, length: int) -> None:
    if head.content_length is None:
        raise request.error(ParentProtocolError, "a piece without Content-Length")
    if head.content_length != length:
        reason = f"{head.content_length} bytes announced, {length} due"
        raise request.error(PieceLengthError, reason)
