"""What stands between the network and the piece server: connection caps, timeouts, TLS, roles.

Issue 11 showed ~20,000 idle half-open connections taking a piece port offline (no header
timeout, no caps: the process ran out of file descriptors and logged every failed accept).
``ConnectionGuard`` wraps aiohttp's protocol factory, so every TCP connection passes it
*before* any byte is parsed or any TLS handshake is done:

- **caps**: at most ``max_connections`` open at once and ``max_connections_per_peer`` from one
  IP address; a connection over a cap is aborted at once (RST, no bytes, no log line);
- **header timeout**: a connection that has not sent complete request headers (TLS handshake
  included) within ``header_timeout`` seconds of connecting is aborted; later requests on a
  kept-alive connection are bounded by aiohttp's ``keepalive_timeout`` (``idle_timeout``): an
  idle connection, or one that dribbles a partial request, is closed after it;
- **TLS**: with a server context, the handshake is started here (``loop.start_tls``) after
  the caps let the connection in, so handshakes count against them too; the client's
  certificate (verified against the cluster CA) is read once per connection;
- **per request** (``admit``, from the server's middleware): at most
  ``requests_per_second_per_peer`` per IP address (429 beyond), with TLS the client's role
  must be allowed to fetch pieces (``security/roles.py``: seed, peer; 403 beyond), and a
  private task needs a grant for the caller (``private_access.py``; 403 beyond).

What goes to the log: at most one line per ``LOG_INTERVAL`` seconds about refusals (with the
count since the last line), never one per connection. Failed accepts (out of descriptors)
are asyncio's: it logs one and pauses accepting for a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from damselfly.core.errors import DamselflyError
from damselfly.daemon.servers.private_access import PrivateAccess
from damselfly.security.grants import GRANT_HEADER
from damselfly.security.roles import Action, Caller, caller_of_der, may

_log = logging.getLogger(__name__)
LOG_INTERVAL = 1.0
Clock = Callable[[], float]


@dataclass(frozen=True)
class UploadLimits:
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 4096
    max_connections_per_peer: int = 128
    requests_per_second_per_peer: float = 1000.0


@dataclass
class GuardCounters:
    connections_open: int = 0
    connections_refused: int = 0  # over a cap
    header_timeouts: int = 0
    handshakes_failed: int = 0
    requests_refused_rate: int = 0  # 429 for the per-peer request rate
    access_refused: int = 0  # 403: role (or a missing grant)


class _RequestRate:
    """Requests per second for one peer: a bucket of ``rate`` tokens, burst of one second."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.rate, self._clock = rate, clock
        self.level, self._updated = rate, clock()

    def try_take(self) -> bool:
        now = self._clock()
        self.level = min(self.rate, self.level + (now - self._updated) * self.rate)
        self._updated = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


class _ThrottledLog:
    """One warning per interval, saying how many events it stands for."""

    def __init__(self, clock: Clock) -> None:
        self._clock, self._last, self._pending = clock, float("-inf"), 0

    def event(self, what: str) -> None:
        self._pending += 1
        now = self._clock()
        if now - self._last >= LOG_INTERVAL:
            _log.warning("piece port: %s (%d since the last such line)", what, self._pending)
            self._last, self._pending = now, 0


@dataclass
class _Peer:
    connections: int = 0
    rate: _RequestRate | None = None


class ConnectionGuard:
    def __init__(
        self,
        limits: UploadLimits,
        *,
        tls: Callable[[], ssl.SSLContext] | None = None,
        private: PrivateAccess | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limits = limits
        self._private = private
        self.counters = GuardCounters()
        self._tls = tls
        self._clock = clock
        self._peers: dict[str, _Peer] = {}
        self._by_transport: dict[Any, _GuardedProtocol] = {}
        self._refusals = _ThrottledLog(clock)
        self._handshakes: set[asyncio.Task[None]] = set()

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner)

    def caller_of(self, transport: Any) -> Caller | None:
        connection = self._by_transport.get(transport)
        return None if connection is None else connection.caller

    def admit(self, request: web.Request) -> web.Response | None:
        """None to serve ``request``; else the refusal to send (429 or 403)."""
        connection = self._by_transport.get(request.transport)
        if connection is None:
            return self._private_refusal(request, None)  # not guarded (tests calling the app)
        connection.request_seen()
        peer = self._peers.get(connection.ip)
        if peer is not None and peer.rate is not None and not peer.rate.try_take():
            self.counters.requests_refused_rate += 1
            self._refusals.event("request rate per peer exceeded")
            return web.Response(status=429, headers={"Retry-After": "1"})
        if self._tls is not None and not self._may_fetch(connection.caller):
            self.counters.access_refused += 1
            self._refusals.event("a certificate whose role may not fetch pieces")
            return web.Response(status=403, text="this certificate's role may not fetch pieces")
        return self._private_refusal(request, connection.caller)

    def _private_refusal(self, request: web.Request, caller: Caller | None) -> web.Response | None:
        task_id = request.match_info.get("task_id")
        if self._private is None or not task_id:
            return None
        reason = self._private.refusal(task_id, caller, request.headers.get(GRANT_HEADER))
        if reason is None:
            return None
        self.counters.access_refused += 1
        self._refusals.event("a private task asked for without a valid grant")
        return web.Response(status=403, text=reason)

    def _may_fetch(self, caller: Caller | None) -> bool:
        return caller is not None and may(caller.role, Action.FETCH_PIECES)

    # -- connection accounting (called by _GuardedProtocol) ------------------------------------

    def opened(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False if it is over a cap (abort it)."""
        peer = self._peers.get(ip)
        per_peer = 0 if peer is None else peer.connections
        over_total = self.counters.connections_open >= self.limits.max_connections
        if over_total or per_peer >= self.limits.max_connections_per_peer:
            self.counters.connections_refused += 1
            self._refusals.event("connection over the caps refused")
            return False
        if peer is None:
            peer = self._peers[ip] = _Peer()
            peer.rate = _RequestRate(self.limits.requests_per_second_per_peer, self._clock)
        peer.connections += 1
        self.counters.connections_open += 1
        return True

    def closed(self, ip: str) -> None:
        self.counters.connections_open -= 1
        peer = self._peers.get(ip)
        if peer is not None:
            peer.connections -= 1
            if peer.connections <= 0:
                del self._peers[ip]

    def serving(self, transport: Any, connection: _GuardedProtocol) -> None:
        self._by_transport[transport] = connection

    def forget(self, transport: Any) -> None:
        self._by_transport.pop(transport, None)

    def header_timed_out(self) -> None:
        self.counters.header_timeouts += 1
        self._refusals.event(f"no request headers within {self.limits.header_timeout:g} s")

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a handshake; the guard holds it until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def server_context(self) -> ssl.SSLContext | None:
        return None if self._tls is None else self._tls()


@dataclass
class _State:
    counted: bool = False
    started: bool = False  # the inner protocol got connection_made
    lost: bool = False
    early_data: list[bytes] = field(default_factory=list)


class _GuardedProtocol(asyncio.Protocol):
    """One connection: counted, timed, TLS-wrapped, then handed to aiohttp's handler."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._inner_factory = inner
        self._inner: asyncio.Protocol | None = None
        self._state = _State()
        self._timer: asyncio.TimerHandle | None = None
        self._transport: Any = None
        self.ip = ""
        self.caller: Caller | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else ""
        if not self._guard.opened(self.ip):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._state.counted = True
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.limits.header_timeout, self._header_timeout)
        context = self._guard.server_context()
        if context is None:
            self._start_inner(transport)
            return
        transport.pause_reading()  # type: ignore[attr-defined]
        self._guard.spawn(self._handshake(loop, transport, context))

    async def _handshake(
        self, loop: asyncio.AbstractEventLoop, raw: Any, context: ssl.SSLContext
    ) -> None:
        timeout = self._guard.limits.header_timeout
        try:
            wrapped = await loop.start_tls(
                raw, self, context, server_side=True, ssl_handshake_timeout=timeout
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError, RuntimeError):
            self._guard.counters.handshakes_failed += 1
            raw.abort()
            self._release()
            return
        if self._state.lost or wrapped is None:
            return
        ssl_object = wrapped.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        with contextlib.suppress(DamselflyError):
            self.caller = caller_of_der(der) if der else None
        self._start_inner(wrapped)

    def _start_inner(self, transport: Any) -> None:
        self._transport = transport
        self._guard.serving(transport, self)
        self._inner = self._inner_factory()
        self._state.started = True
        self._inner.connection_made(transport)
        for data in self._state.early_data:
            self._inner.data_received(data)
        self._state.early_data.clear()

    def request_seen(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timeout(self) -> None:
        self._timer = None
        self._guard.header_timed_out()
        if self._transport is not None:
            self._transport.abort()

    def _release(self) -> None:
        if self._state.counted:
            self._state.counted = False
            self._guard.closed(self.ip)
        self.request_seen()  # cancels the timer

    # -- asyncio.Protocol, forwarded ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            self._state.early_data.append(data)  # arrived with the end of the handshake
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.lost = True
        self._guard.forget(self._transport)
        self._release()
        if self._inner is not None:
            self._inner.connection_lost(exc)
