"""``PieceConnection``: one keep-alive HTTP/1.1 connection to a parent's piece port, read
straight into the caller's buffers (issue 15's lean piece path).

aiohttp hands a body over as a new ``bytes`` per read (a 256 KiB allocation per ``recv``,
over TLS one per 16 KiB record plus a joining copy), each copied again by its parser into a
queue. Here the response head is read into a small fixed buffer and every body byte goes
from the socket (or, over TLS, from OpenSSL's decryption) straight into the part buffer the
caller hands in: a ``BufferedProtocol``, one copy in all, no per-read object.

What it speaks (only what ``protocol/pieces_http.py`` needs, nothing a parent could steer):

- ``GET`` with a fixed set of headers; one request at a time on a connection (no pipelining);
- a head of at most ``MAX_HEAD`` bytes, status line ``HTTP/1.x NNN``; ``Content-Length``
  (required for a body we read; ``Transfer-Encoding`` is refused), ``Connection: close``
  (the connection is not reused), ``Retry-After``; other headers are ignored;
- while idle in the pool nothing may arrive: a byte then, or the parent closing, retires the
  connection.

The protocol never blocks the loop and never reads past what it was asked for: it pauses the
transport when a head is complete or a buffer is full, and the caller resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import time
from dataclasses import dataclass
from typing import Protocol

from damselfly.transport.low_water import low_water, receive_buffer, set_low_water

MAX_HEAD = 16 * 1024
_DIGITS = re.compile(r"[0-9]{3}")  # not str.isdigit: that takes superscripts int() refuses
_LENGTH = re.compile(r"[0-9]{1,18}")
_END_OF_HEAD = b"\r\n\r\n"


class HeadError(Exception):
    """The parent's answer is not an HTTP/1.1 head we accept."""


class WireClosed(Exception):
    """The connection ended after ``received`` bytes of what was being read."""

    def __init__(self, received: int) -> None:
        super().__init__(f"closed after {received} bytes")
        self.received = received


class WireStalled(Exception):
    """No byte came for the caller's patience, after ``received`` bytes."""

    def __init__(self, received: int) -> None:
        super().__init__(f"stalled after {received} bytes")
        self.received = received


class HeadTooLong(Exception):
    """The answer's head did not end within ``MAX_HEAD`` bytes."""


class WireConnection(Protocol):
    """What ``piece_pool.py`` drives: ``PieceConnection`` here (plain text, read by the
    event loop) or ``BlockingTlsConnection`` (TLS, read by worker threads:
    ``piece_wire_threads.py``)."""

    closed: bool
    idle_since: float

    async def exchange(self, request: bytes, patience: float) -> bytes:
        """Send ``request``; the answer's head without its empty line. ``WireClosed`` (the
        connection ended first), ``WireStalled``, ``HeadTooLong``."""

    async def read_into(self, target: memoryview, patience: float) -> None:
        """Fill ``target`` with the next body bytes, or ``WireClosed``/``WireStalled``
        (``received``: the bytes of ``target`` filled)."""

    def take_early_body(self, limit: int) -> memoryview:
        """Up to ``limit`` body bytes that arrived with the head, taken (a view of the head
        buffer: copy them before the next request)."""

    def early_body_length(self) -> int:
        """Body bytes that arrived with the head and were not taken yet."""

    def finish(self) -> None:
        """The answer is read: idle again."""

    def reusable(self) -> bool:
        """Open, and nothing arrived while idle (a parent's surplus byte or its close)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Head:
    status: int
    content_length: int | None
    keep_alive: bool
    retry_after: str | None


def parse_head(raw: bytes) -> Head:
    """A response head (without its final empty line), or ``HeadError``."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HeadError("undecodable head") from exc
    status_line, *lines = text.split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not _DIGITS.fullmatch(code):
        raise HeadError(f"bad status line {status_line[:40]!r}")
    fields: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HeadError(f"bad header line {line[:40]!r}")
        key = name.lower()
        if key in fields and key in ("content-length", "transfer-encoding"):
            raise HeadError(f"{name} given twice")
        fields[key] = value.strip()
    if "transfer-encoding" in fields:
        raise HeadError("a Transfer-Encoding body (pieces have a Content-Length)")
    length = fields.get("content-length")
    if length is not None and not _LENGTH.fullmatch(length):
        raise HeadError(f"bad Content-Length {length[:20]!r}")
    connection = fields.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return Head(
        int(code), None if length is None else int(length), keep_alive, fields.get("retry-after")
    )


class HeadBuffer:
    """An answer's head as it arrives (at most ``MAX_HEAD`` bytes), and the body bytes that
    came in with it, taken by the body's reader first."""

    def __init__(self) -> None:
        self.data = bytearray(MAX_HEAD)
        self.length = 0
        self.end = -1  # offset after the empty line, once the head is complete
        self._early = 0  # offset of the first body byte not taken yet

    def reset(self) -> None:
        self.length, self.end, self._early = 0, -1, 0

    def free(self) -> memoryview:
        """Where the next bytes go (empty once full)."""
        return memoryview(self.data)[self.length :]

    def received(self, count: int) -> bool:
        """``count`` more bytes are in ``free()``'s view: is the head complete now?"""
        start = max(0, self.length - len(_END_OF_HEAD) + 1)
        self.length = min(MAX_HEAD, self.length + count)
        end = self.data.find(_END_OF_HEAD, start, self.length)
        if end >= 0:
            self.end = self._early = end + len(_END_OF_HEAD)
        return end >= 0

    @property
    def complete(self) -> bool:
        return self.end >= 0

    @property
    def overflowed(self) -> bool:
        return self.end < 0 and self.length >= MAX_HEAD

    def head(self) -> bytes:
        """The complete head, without the empty line that ends it."""
        return bytes(self.data[: self.end - len(_END_OF_HEAD)])

    def take_early_body(self, limit: int) -> memoryview:
        """Up to ``limit`` body bytes that arrived with the head, taken (a view of the head
        buffer: copy them before the next request)."""
        end = min(self.length, self._early + limit)
        view = memoryview(self.data)[self._early : end]
        self._early = end
        return view

    def early_body_length(self) -> int:
        """Body bytes that arrived with the head and were not taken yet."""
        return self.length - self._early


class PieceConnection(asyncio.BufferedProtocol):
    """One connection; ``PieceConnections`` (``piece_pool.py``) drives it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.last_byte = 0.0
        self._head = HeadBuffer()
        self._target: memoryview | None = None  # where body bytes go now
        self._filled = 0
        self._waiter: asyncio.Future[None] | None = None
        self._idle = True
        self._low_water = 1
        self._rate: float | None = None  # bytes/s of the last full target
        self._started = 0.0
        self._marks = True  # SO_RCVLOWAT on the socket (not under asyncio's TLS: see adopt)

    # -- WireConnection --------------------------------------------------------------------

    async def exchange(self, request: bytes, patience: float) -> bytes:
        try:
            self.send(request)
        except (ConnectionError, RuntimeError) as exc:
            raise WireClosed(0) from exc
        deadline = time.monotonic() + patience
        while not self.head_received():
            if self.head_overflowed():
                raise HeadTooLong
            if self.closed:
                raise WireClosed(0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WireStalled(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.waiter(), remaining)
        return self.head_bytes()

    async def read_into(self, target: memoryview, patience: float) -> None:
        self.receive_into(target, patience)
        while not self.target_full():
            if self.closed:
                raise WireClosed(self._filled)
            waited = time.monotonic() - self.last_byte
            if waited >= patience:
                raise WireStalled(self._filled)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.waiter(), patience - waited)

    def adopt(self, transport: asyncio.Transport) -> None:
        """Take over a connection whose request another client sent and whose answer's
        head it read (``origin_body.py``); reading pauses until the first ``read_into``.
        Over asyncio's TLS no low-water mark is set: OpenSSL may hold part of a record, so
        a mark of the plaintext still to come could wait for bytes that never arrive."""
        transport.set_protocol(self)
        transport.pause_reading()
        self.connection_made(transport)
        self._idle = False
        self._marks = transport.get_extra_info("ssl_object") is None

    # -- the steps -----------------------------------------------------------------------------

    def send(self, request: bytes) -> None:
        """Start a request: the head buffer emptied, reading on."""
        transport = self._transport()
        self._idle = False
        self._head.reset()
        self._target = None
        self._set_low_water(1)  # a head is read byte by byte (``finish`` did it already)
        self.last_byte = time.monotonic()
        transport.write(request)
        transport.resume_reading()

    def head_received(self) -> bool:
        return self._head.complete

    def head_bytes(self) -> bytes:
        return self._head.head()

    def take_early_body(self, limit: int) -> memoryview:
        return self._head.take_early_body(limit)

    def early_body_length(self) -> int:
        return self._head.early_body_length()

    def receive_into(self, target: memoryview, patience: float) -> None:
        """Fill ``target`` (a non-empty buffer) with the next body bytes; wait with
        ``wait``. The transport is paused again once it is full. The no-bytes clock starts
        now: the transport was paused while the caller wrote the last part. The socket wakes
        the loop only once ``low_water`` bytes wait: fewer, larger reads."""
        self._target, self._filled = target, 0
        self.last_byte = self._started = time.monotonic()
        sock = self._transport().get_extra_info("socket")
        mark = low_water(len(target), self._rate, patience, receive_buffer(sock))
        self._set_low_water(mark)
        self._transport().resume_reading()

    @property
    def filled(self) -> int:
        return self._filled

    def target_full(self) -> bool:
        return self._target is not None and self._filled == len(self._target)

    def finish(self) -> None:
        """The response is read: idle again, reading on so that a close is noticed."""
        self._idle, self._target = True, None
        self._head.reset()
        self.idle_since = time.monotonic()
        self._set_low_water(1)
        if not self.closed:
            self._transport().resume_reading()

    def reusable(self) -> bool:
        return not self.closed and self.transport is not None and not readable(self.transport)

    def waiter(self) -> asyncio.Future[None]:
        """A future done at the next event (head complete, buffer full, connection lost)."""
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._wake()

    # -- asyncio.BufferedProtocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is not None:
            return self._target[self._filled :]
        free = self._head.free()  # never returned empty: a full head is refused
        return free if len(free) else memoryview(bytearray(1))

    def buffer_updated(self, nbytes: int) -> None:
        self.last_byte = time.monotonic()
        if self._target is not None:
            self._filled += nbytes
            rest = len(self._target) - self._filled
            if rest <= 0:
                elapsed = self.last_byte - self._started
                self._rate = len(self._target) / elapsed if elapsed > 0 else None
                self._pause_and_wake()
            elif rest < self._low_water:
                self._set_low_water(rest)
            return
        if self._idle:  # nothing was asked: a parent that talks out of turn is dropped
            self.close()
            return
        if self._head.received(nbytes) or self._head.overflowed:
            self._pause_and_wake()  # a full buffer with no head: the caller refuses it

    def head_overflowed(self) -> bool:
        return self._head.overflowed

    # -- helpers -------------------------------------------------------------------------------

    def _pause_and_wake(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_low_water(self, count: int) -> None:
        if not self._marks:
            return
        if count != self._low_water and self.transport is not None and not self.closed:
            self._low_water = count
            set_low_water(self.transport.get_extra_info("socket"), count)

    def _transport(self) -> asyncio.Transport:
        if self.transport is None or self.closed:
            raise ConnectionResetError("the connection is closed")
        return self.transport


def readable(transport: asyncio.BaseTransport) -> bool:
    """Bytes (or an end) wait in the kernel for an idle connection's socket: the event loop
    has not handed them over yet, and they would be taken for the next answer's head."""
    sock = transport.get_extra_info("socket")
    return sock is not None and readable_fd(sock.fileno())


def readable_fd(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
