"""``BlockingTlsConnection``: a piece connection over TLS read by a worker thread.

Over TLS, asyncio's transport does Python work for every read the kernel hands it (copy into
a memory BIO, one ``SSLObject.read`` per record, the protocol callbacks): in a swarm, where
bytes arrive ~28 KiB at a time, that was most of what mTLS cost a receiving node (issue 11,
``docs/benchmarks.md``). Here a blocking ``ssl.SSLSocket`` fills the caller's buffer in a
worker thread: OpenSSL reads the socket and decrypts straight into it, ``recv_into`` loops
in C, the GIL is released while it waits and decrypts; the event loop sees one hand-off per
part (1 MiB), not one per read.

The socket's timeout is the caller's patience (the longest wait for one byte, which is what
``timeout_no_bytes`` means). A cancelled read shuts the socket down (so the thread's
``recv_into`` returns at once) and the socket is closed by the thread when it returns, never
while it is in use. Requests and answers are as in ``piece_wire.py``; the head is read into
the same kind of fixed buffer, bytes after it are the body's first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from damselfly.transport.low_water import low_water, receive_buffer, set_low_water
from damselfly.transport.piece_wire import (
    HeadBuffer,
    HeadTooLong,
    WireClosed,
    WireStalled,
    readable_fd,
)

# What OpenSSL may hold of a record it has not finished reading (16 KiB + header, IV, tag):
# those bytes left the kernel but are not ``pending()`` plaintext yet
_RECORD_IN_OPENSSL = 16 * 1024 + 64
_THREADS = 64  # piece reads in flight at once, over every download of the process
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
T = TypeVar("T")


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(_THREADS, thread_name_prefix="piece-tls")
        return _executor


class BlockingTlsConnection:
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self.closed = False
        self.idle_since = time.monotonic()
        self._busy = False
        self._head = HeadBuffer()
        self._rate: float | None = None  # bytes/s of the last part read (``low_water``)

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        context: ssl.SSLContext,
        server_hostname: str,
        connect_timeout: float,
    ) -> BlockingTlsConnection:
        """Connect and shake hands in a worker thread, both within ``connect_timeout``."""

        def connect() -> ssl.SSLSocket:
            raw = socket.create_connection((host, port), timeout=connect_timeout)
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return context.wrap_socket(raw, server_hostname=server_hostname)
            except BaseException:
                raw.close()
                raise

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_pool(), connect)
        try:  # bounded here too: a connect may wait for a free thread first
            return cls(await asyncio.wait_for(asyncio.shield(future), 2 * connect_timeout))
        except (asyncio.CancelledError, TimeoutError):
            future.add_done_callback(_close_result)
            raise

    # -- WireConnection ------------------------------------------------------------------------

    async def exchange(self, request: bytes, patience: float) -> bytes:
        self._head.reset()
        return await self._in_thread(lambda: self._exchange(request, patience))

    async def read_into(self, target: memoryview, patience: float) -> None:
        await self._in_thread(lambda: self._fill(target, patience))

    def take_early_body(self, limit: int) -> memoryview:
        return self._head.take_early_body(limit)

    def early_body_length(self) -> int:
        return self._head.early_body_length()

    def finish(self) -> None:
        self._head.reset()
        self.idle_since = time.monotonic()

    def reusable(self) -> bool:
        """Nothing read while idle, so check: no decrypted byte buffered, nothing (nor a
        close_notify or a FIN) waiting in the kernel."""
        if self.closed:
            return False
        try:
            return not self._sock.pending() and not readable_fd(self._sock.fileno())
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._busy:  # the thread returns at once and closes the socket itself
            _shutdown(self._sock)
        else:
            self._sock.close()

    # -- in the worker thread ------------------------------------------------------------------

    def _exchange(self, request: bytes, patience: float) -> bytes:
        self._sock.settimeout(patience)
        try:
            self._sock.sendall(request)
        except (OSError, ValueError) as exc:
            raise WireClosed(0) from exc
        head = self._head
        while True:
            if head.overflowed:
                raise HeadTooLong
            if head.received(self._receive(head.free(), head.length)):
                return head.head()

    def _fill(self, target: memoryview, patience: float) -> None:
        """Fill ``target``, the socket waking the thread only once ``low_water`` bytes of
        ciphertext wait, and never for more than the kernel can still get: the plaintext to
        come, less what OpenSSL holds."""
        self._sock.settimeout(patience)
        filled, waiting_for, started = 0, 1, time.monotonic()
        buffer = receive_buffer(self._sock)
        try:
            while filled < len(target):
                rest = len(target) - filled - self._sock.pending() - _RECORD_IN_OPENSSL
                wanted = low_water(rest, self._rate, patience, buffer)
                if wanted < waiting_for or (filled == 0 and wanted != waiting_for):
                    waiting_for = wanted  # set once, then only lowered near the end
                    set_low_water(self._sock, wanted)
                filled += self._receive(target[filled:], filled)
        finally:
            if waiting_for != 1:
                set_low_water(self._sock, 1)
        elapsed = time.monotonic() - started
        self._rate = len(target) / elapsed if elapsed > 0 else None

    def _receive(self, view: memoryview, received: int) -> int:
        """One ``recv_into``; ``WireClosed``/``WireStalled`` naming ``received`` bytes."""
        try:
            count = self._sock.recv_into(view)
        except TimeoutError as exc:  # socket.timeout
            raise WireStalled(received) from exc
        except (OSError, ValueError) as exc:  # reset, TLS alert, shut down by close()
            raise WireClosed(received) from exc
        if not count:
            raise WireClosed(received)
        return count

    async def _in_thread(self, work: Callable[[], T]) -> T:
        if self.closed:
            raise WireClosed(0)
        self._busy = True
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_pool(), self._guarded(work))
        future.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self.close()  # the shut-down socket ends the thread's wait; it closes the socket
            raise

    def _guarded(self, work: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            try:
                return work()
            finally:
                self._busy = False
                if self.closed:
                    self._sock.close()

        return run


def _shutdown(sock: ssl.SSLSocket) -> None:
    """Shut the TCP connection down under the TLS layer (``SSLSocket.shutdown`` would also
    drop the ``SSLObject`` a worker thread is using)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a thread's error as seen: after a cancellation nobody awaits it."""
    if not future.cancelled():
        future.exception()


def _close_result(future: asyncio.Future[ssl.SSLSocket]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()
