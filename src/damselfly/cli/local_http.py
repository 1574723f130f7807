"""Just enough HTTP/1.1 to talk to dfdaemon's local API over its unix socket: stdlib, blocking.

dfget runs once per file and often many times at once on a node, so its start-up counts:
handing a small file to the daemon must not pay for ``aiohttp`` (~0.3 s to import on a small
machine) nor even for ``asyncio`` (~40 ms here). The local API needs one request per connection
(``Connection: close``) and a response whose body is a length, ``chunked``, or everything until
the daemon closes; that is all this module speaks. Ctrl-C interrupts a blocked read (the
``KeyboardInterrupt`` reaches the caller, which closes the connection).

Errors: ``OSError`` from connecting is left to the caller (it decides what "no daemon"
means); a connection that ends in the middle of a response (the daemon died) is
``ConnectionResetError``; a read past the deadline is ``TimeoutError``; a response that is not
HTTP as described is ``LocalHttpError``.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from damselfly.core.errors import ProtocolError

LINE_LIMIT = 1024 * 1024  # longest header or NDJSON line accepted
READ_SIZE = 65536


class LocalHttpError(ProtocolError):
    """The daemon's answer is not the HTTP/1.1 we expect."""


def _cut_short() -> ConnectionResetError:
    return ConnectionResetError(errno.ECONNRESET, "The connection ended in the middle of a message")


class LocalResponse:
    """The status and headers of one answer; the body is read from it once."""

    def __init__(self, status: int, headers: dict[str, str], sock: socket.socket) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self._sock = sock
        self._file: BinaryIO = sock.makefile("rb")
        self._deadline: float | None = None

    def set_deadline(self, seconds: float | None) -> None:
        """Reads from now on raise ``TimeoutError`` once ``seconds`` have passed (None: never)."""
        self._deadline = None if seconds is None else time.monotonic() + seconds
        if seconds is None:
            self._sock.settimeout(None)

    def read(self) -> bytes:
        return b"".join(self.body())

    def lines(self) -> Iterator[bytes]:
        """The body split at newlines (the last line may lack one)."""
        pending = b""
        for chunk in self.body():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
            if len(pending) > LINE_LIMIT:
                raise LocalHttpError("local API: a line longer than 1 MiB")
        if pending:
            yield pending

    def body(self) -> Iterator[bytes]:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            yield from self._chunked()
            return
        length = self.headers.get("content-length")
        if length is not None:
            yield self._exactly(_number(length, 10))
            return
        while chunk := self._read1():
            yield chunk

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._line()
            if not line:
                raise _cut_short()
            size = _number(line.split(b";", 1)[0].strip().decode("ascii", "replace"), 16)
            if size == 0:
                self._line()  # the empty trailer
                return
            chunk = self._exactly(size)
            self._exactly(2)  # CRLF after each chunk
            yield chunk

    def _line(self) -> bytes:
        self._arm()
        line = self._file.readline(LINE_LIMIT + 1)
        if len(line) > LINE_LIMIT:
            raise LocalHttpError("local API: a line longer than 1 MiB")
        return line

    def _exactly(self, size: int) -> bytes:
        self._arm()
        data = self._file.read(size)
        if len(data) < size:
            raise _cut_short()
        return data

    def _read1(self) -> bytes:
        self._arm()
        return self._file.read1(READ_SIZE)  # type: ignore[attr-defined,no-any-return]

    def _arm(self) -> None:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the deadline passed")
            self._sock.settimeout(left)


def post(
    socket_path: Path, target: str, body: bytes, content_type: str, *, timeout: float | None
) -> LocalResponse:
    """Send one POST and read the status line and headers, all within ``timeout`` seconds;
    the caller reads the body."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        head = (
            f"POST {target} HTTP/1.1\r\nHost: dfdaemon\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode("ascii") + body)
        response = LocalResponse(0, {}, sock)
        response.status = _status(response._line())
        response.headers = _headers(response)
    except BaseException:
        sock.close()
        raise
    return response


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise LocalHttpError(f"local API: not an HTTP status line: {line[:80]!r}")
    return _number(parts[1].decode("ascii", "replace"), 10)


def _headers(response: LocalResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    while (line := response._line()) not in (b"\r\n", b"\n"):
        if not line:
            raise LocalHttpError("local API: the daemon closed the connection in the headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise LocalHttpError(f"local API: malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _number(text: str, base: int) -> int:
    try:
        value = int(text, base)
    except ValueError:
        raise LocalHttpError(f"local API: {text[:20]!r} is not a number") from None
    if value < 0:
        raise LocalHttpError(f"local API: negative length {value}")
    return value
