"""Just enough HTTP/1.1 to talk to dfdaemon's local API over its unix socket, stdlib only.

dfget runs once per file and often many times at once on a node, so its start-up counts:
``aiohttp`` takes ~0.3 s to import on a small machine (it builds TLS contexts at import),
which is longer than handing a download to the daemon. The local API needs one request per
connection (``Connection: close``) and a response whose body is a length, ``chunked``, or
everything until the daemon closes; that is all this module speaks.

Errors: ``OSError`` from connecting is left to the caller (it decides what "no daemon"
means); a connection that ends in the middle of a response (the daemon died) is
``ConnectionResetError`` or ``asyncio.IncompleteReadError``; a response that is not HTTP as
described is ``LocalHttpError``.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from damselfly.core.errors import ProtocolError

LINE_LIMIT = 1024 * 1024  # longest header or NDJSON line accepted


class LocalHttpError(ProtocolError):
    """The daemon's answer is not the HTTP/1.1 we expect."""


@dataclass
class LocalResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    _reader: asyncio.StreamReader
    _writer: asyncio.StreamWriter

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.body()])

    async def lines(self) -> AsyncIterator[bytes]:
        """The body split at newlines (the last line may lack one)."""
        pending = b""
        async for chunk in self.body():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line
            if len(pending) > LINE_LIMIT:
                raise LocalHttpError("local API: a line longer than 1 MiB")
        if pending:
            yield pending

    async def body(self) -> AsyncIterator[bytes]:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            async for chunk in _chunked(self._reader):
                yield chunk
            return
        length = self.headers.get("content-length")
        if length is not None:
            yield await self._reader.readexactly(_number(length, 10))
            return
        while chunk := await self._reader.read(65536):
            yield chunk

    def close(self) -> None:
        self._writer.close()


async def post(socket_path: Path, target: str, body: bytes, content_type: str) -> LocalResponse:
    """Send one POST and read the status line and headers; the caller reads the body."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=LINE_LIMIT)
    try:
        head = (
            f"POST {target} HTTP/1.1\r\nHost: dfdaemon\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode("ascii") + body)
        await writer.drain()
        status = _status(await reader.readline())
        headers = await _headers(reader)
    except BaseException:
        writer.close()
        raise
    return LocalResponse(status, headers, reader, writer)


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise LocalHttpError(f"local API: not an HTTP status line: {line[:80]!r}")
    return _number(parts[1].decode("ascii", "replace"), 10)


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise LocalHttpError("local API: the daemon closed the connection in the headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise LocalHttpError(f"local API: malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


async def _chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError(errno.ECONNRESET, "the daemon closed the connection")
        size = _number(line.split(b";", 1)[0].strip().decode("ascii", "replace"), 16)
        if size == 0:
            await reader.readline()  # the empty trailer
            return
        chunk = await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF after each chunk
        yield chunk


def _number(text: str, base: int) -> int:
    try:
        value = int(text, base)
    except ValueError:
        raise LocalHttpError(f"local API: {text[:20]!r} is not a number") from None
    if value < 0:
        raise LocalHttpError(f"local API: negative length {value}")
    return value
