"""A forward proxy for tests: ``CONNECT host:port`` tunnels (https) and absolute-form plain
HTTP requests (one per connection), counting what went through it.

``connects`` lists the ``host:port`` of every tunnel, ``forwarded`` every plain request's
absolute URL, so a test can assert that a client reached an origin only through the proxy.
Loopback only; started and stopped by the test (``async with ForwardProxy() as proxy``).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

_HEADER_LIMIT = 64 * 1024


class ForwardProxy:
    def __init__(self) -> None:
        self.connects: list[str] = []
        self.forwarded: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await self._route(head, reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _route(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        request_line, _, rest = head.partition(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self.connects.append(target)
            upstream = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(f"{version} 200 Connection established\r\n\r\n".encode())
            await writer.drain()
            await _pipe_both(reader, writer, *upstream)
            return
        parts = urlsplit(target)
        self.forwarded.append(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            parts.hostname, parts.port or 80
        )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [h for h in rest.split(b"\r\n") if h and not _hop_by_hop(h)]
        lines = [f"{method} {path} {version}".encode(), *headers, b"Connection: close", b""]
        upstream_writer.write(b"\r\n".join(lines) + b"\r\n")
        await _pipe_both(reader, writer, upstream_reader, upstream_writer)


def _hop_by_hop(header: bytes) -> bool:
    name = header.partition(b":")[0].strip().lower()
    return name in (b"connection", b"proxy-connection", b"proxy-authorization", b"keep-alive")


async def _pipe_both(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pipe(client_reader, upstream_writer))
            group.create_task(_pipe(upstream_reader, client_writer))
    except* (ConnectionError, OSError):
        pass
    finally:
        upstream_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_HEADER_LIMIT):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
