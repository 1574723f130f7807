"""A parent's answers read and their failures named, for ``piece_client.py``.

``PieceRequest`` is where one request goes and how its errors are named (parent, task,
piece); the readers turn a response into bytes or a typed ``PeerError``: the status
(``expect_ok``: 404, 429 and the rest), a bounded body (``read_limited``: a bitmap), and the
lines of a watch stream (``watch_batches``). Piece bodies do not come through aiohttp
(``piece_pool.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator

import aiohttp
from yarl import URL

from damselfly.core.errors import ProtocolError
from damselfly.protocol import pieces_http as wire
from damselfly.transport.piece_errors import (
    ParentBusyError,
    ParentProtocolError,
    ParentStalledError,
    ParentStatusError,
    ParentUnreachableError,
    PieceNotHeldError,
    PieceTransferError,
)

MAX_ERROR_BODY = 64 * 1024
MAX_WATCH_LINE = 4096  # a line after the snapshot: a piece number, a heartbeat, the end


class PieceRequest:
    """Where one request goes, and how its errors are named."""

    def __init__(
        self, parent: str, task_id: str, number: int | None, path: str, *, tls: bool = False
    ) -> None:
        self.parent = parent.rstrip("/")
        self.task_id = task_id
        self.number = number
        self.path = path
        self.tls = tls

    def url(self, query: dict[str, str] | None = None) -> URL:
        try:
            base = URL(self.parent)
        except (TypeError, ValueError) as exc:
            raise self.error(ParentUnreachableError, f"invalid parent address: {exc}") from exc
        if base.scheme not in ("http", "https") or not base.host:
            raise self.error(ParentUnreachableError, "parent address must be http(s)://host:port")
        if self.tls:
            base = base.with_scheme("https")
        return base.with_path(self.path, encoded=True).with_query(query)

    def error(self, kind: type[PieceTransferError], reason: str) -> PieceTransferError:
        return kind(self.parent, reason, task_id=self.task_id, piece_number=self.number)


async def expect_ok(response: aiohttp.ClientResponse, request: PieceRequest) -> None:
    status = response.status
    if status == 200:
        return
    if (response.content_length or 0) <= MAX_ERROR_BODY:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await response.read()  # a 404 or 429 is routine: keep the connection for reuse
            response.release()
    raise status_error(request, status, response.headers.get(wire.RETRY_AFTER_HEADER))


def status_error(request: PieceRequest, status: int, retry_after: str | None) -> Exception:
    """What a parent's non-200 answer means: 404 not held, 429 busy, any other status."""
    if status == 404:
        return request.error(PieceNotHeldError, "not held (HTTP 404)")
    if status == 429:
        return ParentBusyError(
            request.parent,
            task_id=request.task_id,
            piece_number=request.number,
            retry_after=wire.parse_retry_after(retry_after),
        )
    return ParentStatusError(
        request.parent, status, task_id=request.task_id, piece_number=request.number
    )


async def read_limited(
    response: aiohttp.ClientResponse, request: PieceRequest, limit: int, timeout_no_bytes: float
) -> bytes:
    if (response.content_length or 0) > limit:
        raise request.error(ParentProtocolError, f"body over {limit} bytes")
    try:
        body = await response.content.read(limit + 1)
        rest = await response.content.read(1) if len(body) <= limit else b"x"
    except TimeoutError as exc:
        raise request.error(ParentStalledError, f"no byte for {timeout_no_bytes:g}s") from exc
    except aiohttp.ClientError as exc:
        raise request.error(ParentUnreachableError, connection_reason(exc)) from exc
    if len(body) > limit or rest:
        raise request.error(ParentProtocolError, f"body over {limit} bytes")
    return body


async def read_line(
    response: aiohttp.ClientResponse, request: PieceRequest, timeout_no_bytes: float
) -> bytes:
    """One line with its newline; ``b""`` at the end of the stream."""
    try:
        line = await response.content.readline()
    except TimeoutError as exc:
        raise request.error(ParentStalledError, f"no byte for {timeout_no_bytes:g}s") from exc
    except ValueError as exc:  # a line longer than the read buffer
        raise request.error(ParentProtocolError, "watch line too long") from exc
    except aiohttp.ClientPayloadError as exc:
        reason = "watch stream cut off before the task completed"
        raise request.error(ParentUnreachableError, reason) from exc
    except aiohttp.ClientError as exc:
        raise request.error(ParentUnreachableError, connection_reason(exc)) from exc
    if line and not line.endswith(b"\n"):
        raise request.error(ParentUnreachableError, "watch stream cut off mid-line")
    return line


async def watch_batches(
    response: aiohttp.ClientResponse,
    request: PieceRequest,
    snapshot: wire.BitmapSnapshot,
    timeout_no_bytes: float,
) -> AsyncGenerator[tuple[int, ...], None]:
    """The pieces announced after the snapshot line, a batch per read: every whole line
    that arrived together (one wake-up of the parent's watch writes them together), so a
    busy stream costs one read, one parse loop and one yield per batch, not per piece."""
    rest = b""
    while True:
        data = await _read_some(response, request, timeout_no_bytes)
        if not data:
            reason = (
                "watch stream cut off mid-line" if rest else "watch ended before the task completed"
            )
            raise request.error(ParentUnreachableError, reason)
        *lines, rest = (rest + data).split(b"\n")
        if len(rest) > MAX_WATCH_LINE:
            raise request.error(ParentProtocolError, "watch line too long")
        batch = wire.parse_watch_lines(lines, snapshot.piece_count)
        if batch.numbers:  # the lines before a bad one still count
            yield batch.numbers
        if batch.error is not None:
            with protocol_errors(request):
                raise batch.error
        if batch.complete:
            return


async def _read_some(
    response: aiohttp.ClientResponse, request: PieceRequest, timeout_no_bytes: float
) -> bytes:
    """What has arrived of the body (waiting for at least a byte); ``b""`` at its end."""
    try:
        return await response.content.readany()
    except TimeoutError as exc:
        raise request.error(ParentStalledError, f"no byte for {timeout_no_bytes:g}s") from exc
    except aiohttp.ClientPayloadError as exc:
        reason = "watch stream cut off before the task completed"
        raise request.error(ParentUnreachableError, reason) from exc
    except aiohttp.ClientError as exc:
        raise request.error(ParentUnreachableError, connection_reason(exc)) from exc


@contextlib.contextmanager
def protocol_errors(request: PieceRequest) -> Iterator[None]:
    """A malformed message from a parent is the parent's fault: a ``PeerError``."""
    try:
        yield
    except ProtocolError as exc:
        raise request.error(ParentProtocolError, exc.message) from exc


def connection_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection before answering"
    return " ".join(f"connection failed: {exc.__class__.__name__}: {exc}".split())
