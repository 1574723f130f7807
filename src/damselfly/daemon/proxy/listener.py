"""A TCP listener with a connection cap, and the request loop every proxy endpoint shares.

``Listener`` accepts, counts and, past ``max_connections``, answers 503 and closes (a client
retries; holding sockets we cannot serve would only hide the overload). ``serve_requests``
runs the keep-alive loop over one ``HttpConnection``: a malformed request gets the status h11
suggests (400, 431) and closes that connection; the listener keeps serving the others.
``send_reply`` streams a ``Reply`` and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import h11

from damselfly.config.proxy import ProxySettings
from damselfly.daemon.proxy.exchange import Reply
from damselfly.daemon.proxy.metrics import ProxyStatistics
from damselfly.daemon.proxy.wire import ClientGone, HttpConnection, ProtocolViolation

log = logging.getLogger(__name__)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RequestHandler = Callable[[HttpConnection, h11.Request], Awaitable[bool]]
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Listener:
    def __init__(
        self, host: str, port: int, handler: Handler, stats: ProxyStatistics, max_connections: int
    ) -> None:
        self.host, self.port = host, port
        self._handler, self._stats, self._max = handler, stats, max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        assert self._server is not None
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    async def aclose(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()  # _accept ends quietly: the owner asked for it
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stats.open_connections >= self._max:
            self._stats.rejected_connections += 1
            writer.write(_BUSY)
            await _close(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._stats.open_connections += 1
        try:
            await self._handler(reader, writer)
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except Exception:
            log.exception("proxy connection failed")
        finally:
            self._stats.open_connections -= 1
            self._tasks.discard(task)
            await _close(writer)


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handle: RequestHandler,
    settings: ProxySettings,
    stats: ProxyStatistics,
) -> None:
    """An endpoint's connection (mirror, registry mirror): its requests, with the proxy's
    header limit and timeouts."""
    conn = HttpConnection(reader, writer, max_header_length=settings.max_header_length)
    await serve_requests(
        conn,
        handle,
        idle_timeout=settings.idle_timeout,
        header_timeout=settings.header_timeout,
        stats=stats,
    )


async def serve_requests(
    conn: HttpConnection,
    handle: RequestHandler,
    *,
    idle_timeout: float,
    header_timeout: float,
    stats: ProxyStatistics,
) -> None:
    """Requests on one connection until it closes, times out, or a handler says stop."""
    while True:
        try:
            request = await conn.read_request(idle_timeout, header_timeout)
        except ProtocolViolation as exc:
            stats.request_finished("", "error", 0)
            await _answer_error(conn, exc.status, f"bad request: {exc}")
            return
        except ClientGone:
            return
        if request is None or not await handle(conn, request) or not conn.next_cycle():
            return


async def send_reply(conn: HttpConnection, reply: Reply, stats: ProxyStatistics) -> bool:
    """Stream ``reply`` to the client; False when the connection cannot be reused."""
    sent = 0
    try:
        await conn.send_head(reply.status, reply.headers)
        async for chunk in reply.body:
            await conn.send_data(chunk)
            sent += len(chunk)
        await conn.send_end()
        return True
    except ClientGone:
        return False
    except Exception as exc:  # the origin or mesh broke mid-body: the client sees a short body
        log.warning("proxy: response body broken after %d bytes: %s", sent, type(exc).__name__)
        return False
    finally:
        await reply.aclose()
        stats.request_finished(reply.rule, reply.outcome, sent)


async def answer_error(conn: HttpConnection, status: int, message: str) -> None:
    await _answer_error(conn, status, message)


async def _answer_error(conn: HttpConnection, status: int, message: str) -> None:
    with contextlib.suppress(ClientGone):
        await conn.send_error(status, message)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
