"""``PieceClient``: fetching pieces (and what a parent holds) from other daemons.

One ``aiohttp.ClientSession`` per process, shared by every download: keep-alive connections,
at most ``limit_per_host`` per parent (the download engine keeps ~8 pieces in flight, spread
over a few parents), no cookies, no proxy from the environment, no decompression. The wire is
``protocol/pieces_http.py``.

Every failure is a ``PeerError`` naming the parent, the task and the piece
(``piece_errors.py`` draws the tree), so the download engine can tell what to do from the type
alone.

A piece arrives as the list of chunks asyncio received (``readchunk``), never joined: the
caller hashes them and hands them to ``TaskStorage.write_piece`` as they are. A piece is
exactly ``length`` bytes or an error; a connection that failed mid-body is closed, never put
back in the pool.

With mTLS (``tls``: a callable giving the node's current client context) every parent is
dialled over ``https`` whatever scheme its address carries (the scheduler hands out
``ip:port``): the piece port's TLS 1.2 suite (``security/tls.py``), the parent's chain
checked against the cluster CA, this node's certificate presented (the parent checks its role
before it serves a byte). A private task's requests carry the scheduler's grant for this
node (``grants``: task id -> grant; ``security/grants.py``).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping

import aiohttp
from yarl import URL

from damselfly.core.errors import ProtocolError
from damselfly.protocol import pieces_http as wire
from damselfly.security.grants import GRANT_HEADER
from damselfly.transport.http_session import next_chunk, verbatim_session
from damselfly.transport.piece_errors import (
    ParentBusyError,
    ParentProtocolError,
    ParentStalledError,
    ParentStatusError,
    ParentUnreachableError,
    PieceLengthError,
    PieceNotHeldError,
    PieceTransferError,
)

__all__ = [
    "ParentBusyError",
    "ParentProtocolError",
    "ParentStalledError",
    "ParentStatusError",
    "ParentUnreachableError",
    "PieceClient",
    "PieceLengthError",
    "PieceNotHeldError",
    "PieceTransferError",
    "create_peer_session",
]

LIMIT = 128
LIMIT_PER_HOST = 4
CONNECT_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 30.0
READ_BUFFER_LENGTH = 4 * 1024 * 1024
PIECE_TIMEOUT_NO_BYTES = 10.0
WATCH_TIMEOUT_NO_BYTES = 3 * wire.WATCH_HEARTBEAT_INTERVAL
MAX_BITMAP_BODY = 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024
USER_AGENT = "damselfly-peer/0.1"


class _Request:
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


def create_peer_session(
    *,
    limit: int = LIMIT,
    limit_per_host: int = LIMIT_PER_HOST,
    read_buffer_length: int = READ_BUFFER_LENGTH,
) -> aiohttp.ClientSession:
    """A session for daemon-to-daemon traffic; call inside a running event loop."""
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=limit_per_host, keepalive_timeout=KEEPALIVE_TIMEOUT
    )
    return verbatim_session(connector, read_buffer_length=read_buffer_length, user_agent=USER_AGENT)


class PieceClient:
    """Fetches pieces from parents; owns its session unless one is given."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        limit: int = LIMIT,
        limit_per_host: int = LIMIT_PER_HOST,
        connect_timeout: float = CONNECT_TIMEOUT,
        tls: Callable[[], ssl.SSLContext] | None = None,
        grants: Mapping[str, str] | None = None,
    ) -> None:
        self._tls = tls
        self._grants = grants if grants is not None else {}
        self._session = session
        self._owns_session = session is None
        self._limit, self._limit_per_host = limit, limit_per_host
        self._connect_timeout = connect_timeout

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if self._owns_session and session is not None:
            await session.close()

    async def __aenter__(self) -> PieceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- operations ----------------------------------------------------------------------------

    async def fetch_piece(
        self,
        parent_url_base: str,
        task_id: str,
        number: int,
        length: int,
        *,
        timeout_no_bytes: float = PIECE_TIMEOUT_NO_BYTES,
    ) -> list[memoryview]:
        """Exactly ``length`` bytes of piece ``number``, as received chunks, or a typed error."""
        request = self._request(parent_url_base, task_id, number, wire.piece_path(task_id, number))
        response = await self._get(request, None, timeout_no_bytes)
        try:
            await _expect_ok(response, request)
            if response.content_length not in (None, length):
                declared = response.content_length
                raise request.error(PieceLengthError, f"{declared} bytes announced, {length} due")
            chunks = await _read_piece(response, request, length, timeout_no_bytes)
        except BaseException:
            response.close()
            raise
        response.release()
        return chunks

    async def bitmap(
        self,
        parent_url_base: str,
        task_id: str,
        *,
        piece_count: int | None = None,
        timeout_no_bytes: float = PIECE_TIMEOUT_NO_BYTES,
    ) -> frozenset[int]:
        """The pieces the parent holds; with ``piece_count``, checked against the parent's."""
        request = self._request(parent_url_base, task_id, None, wire.bitmap_path(task_id))
        response = await self._get(request, None, timeout_no_bytes)
        try:
            await _expect_ok(response, request)
            body = await _read_limited(response, request, MAX_BITMAP_BODY, timeout_no_bytes)
            with _protocol_errors(request):
                snapshot = wire.parse_snapshot(body, piece_count=piece_count)
        except BaseException:
            response.close()
            raise
        response.release()
        return snapshot.held

    async def watch(
        self,
        parent_url_base: str,
        task_id: str,
        *,
        piece_count: int | None = None,
        timeout_no_bytes: float = WATCH_TIMEOUT_NO_BYTES,
    ) -> AsyncGenerator[int, None]:
        """Every piece the parent holds (those held now first, in order), then each one as it
        lands; ends when the parent holds them all. Use with ``contextlib.aclosing``."""
        request = self._request(parent_url_base, task_id, None, wire.bitmap_path(task_id))
        response = await self._get(request, {wire.WATCH_QUERY: "1"}, timeout_no_bytes)
        try:
            await _expect_ok(response, request)
            first = await _read_line(response, request, timeout_no_bytes)
            with _protocol_errors(request):
                snapshot = wire.parse_snapshot(first, piece_count=piece_count)
            for number in sorted(snapshot.held):
                yield number
            async for number in _watch_lines(response, request, snapshot, timeout_no_bytes):
                yield number
        finally:
            response.close()  # a watch connection is never reused

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, parent: str, task_id: str, number: int | None, path: str) -> _Request:
        return _Request(parent, task_id, number, path, tls=self._tls is not None)

    async def _get(
        self, request: _Request, query: dict[str, str] | None, timeout_no_bytes: float
    ) -> aiohttp.ClientResponse:
        url = request.url(query)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=timeout_no_bytes
        )
        try:
            tls = True if self._tls is None else self._tls()
            grant = self._grants.get(request.task_id)
            headers = {GRANT_HEADER: grant} if grant else None
            return await self._client().get(
                url, timeout=timeout, allow_redirects=False, ssl=tls, headers=headers
            )
        except aiohttp.ConnectionTimeoutError as exc:
            reason = f"no connection within {self._connect_timeout:g}s"
            raise request.error(ParentUnreachableError, reason) from exc
        except TimeoutError as exc:
            reason = f"no answer within {timeout_no_bytes:g}s"
            raise request.error(ParentStalledError, reason) from exc
        except aiohttp.ClientResponseError as exc:
            raise request.error(ParentProtocolError, f"bad HTTP answer: {exc.message}") from exc
        except aiohttp.ClientError as exc:
            raise request.error(ParentUnreachableError, _connection_reason(exc)) from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = create_peer_session(
                limit=self._limit, limit_per_host=self._limit_per_host
            )
        return self._session


async def _expect_ok(response: aiohttp.ClientResponse, request: _Request) -> None:
    status = response.status
    if status == 200:
        return
    if (response.content_length or 0) <= _MAX_ERROR_BODY:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await response.read()  # a 404 or 429 is routine: keep the connection for reuse
            response.release()
    task_id, number = request.task_id, request.number
    if status == 404:
        raise request.error(PieceNotHeldError, "not held (HTTP 404)")
    if status == 429:
        retry_after = wire.parse_retry_after(response.headers.get(wire.RETRY_AFTER_HEADER))
        raise ParentBusyError(
            request.parent, task_id=task_id, piece_number=number, retry_after=retry_after
        )
    raise ParentStatusError(request.parent, status, task_id=task_id, piece_number=number)


async def _read_piece(
    response: aiohttp.ClientResponse, request: _Request, length: int, timeout_no_bytes: float
) -> list[memoryview]:
    chunks: list[memoryview] = []
    received = 0
    while True:
        data = await _read_chunk(response, request, length, received, timeout_no_bytes)
        if not data:
            break
        received += len(data)
        if received > length:
            raise request.error(PieceLengthError, f"more than {length} bytes ({received})")
        chunks.append(memoryview(data))
    if received < length:
        raise request.error(PieceLengthError, f"body ended after {received} of {length} bytes")
    return chunks


async def _read_chunk(
    response: aiohttp.ClientResponse,
    request: _Request,
    length: int,
    received: int,
    timeout_no_bytes: float,
) -> bytes:
    try:
        return await next_chunk(response)
    except TimeoutError as exc:
        reason = f"no byte for {timeout_no_bytes:g}s after {received} of {length} bytes"
        raise request.error(ParentStalledError, reason) from exc
    except aiohttp.ClientError as exc:
        reason = f"connection closed after {received} of {length} bytes"
        raise request.error(PieceLengthError, reason) from exc


async def _read_limited(
    response: aiohttp.ClientResponse, request: _Request, limit: int, timeout_no_bytes: float
) -> bytes:
    if (response.content_length or 0) > limit:
        raise request.error(ParentProtocolError, f"body over {limit} bytes")
    try:
        body = await response.content.read(limit + 1)
        rest = await response.content.read(1) if len(body) <= limit else b"x"
    except TimeoutError as exc:
        raise request.error(ParentStalledError, f"no byte for {timeout_no_bytes:g}s") from exc
    except aiohttp.ClientError as exc:
        raise request.error(ParentUnreachableError, _connection_reason(exc)) from exc
    if len(body) > limit or rest:
        raise request.error(ParentProtocolError, f"body over {limit} bytes")
    return body


async def _read_line(
    response: aiohttp.ClientResponse, request: _Request, timeout_no_bytes: float
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
        raise request.error(ParentUnreachableError, _connection_reason(exc)) from exc
    if line and not line.endswith(b"\n"):
        raise request.error(ParentUnreachableError, "watch stream cut off mid-line")
    return line


async def _watch_lines(
    response: aiohttp.ClientResponse,
    request: _Request,
    snapshot: wire.BitmapSnapshot,
    timeout_no_bytes: float,
) -> AsyncGenerator[int, None]:
    while True:
        line = await _read_line(response, request, timeout_no_bytes)
        if not line:
            raise request.error(ParentUnreachableError, "watch ended before the task completed")
        with _protocol_errors(request):
            event = wire.parse_watch_line(line, snapshot.piece_count)
        if isinstance(event, wire.TaskComplete):
            return
        if event is not None:
            yield event.number


@contextlib.contextmanager
def _protocol_errors(request: _Request) -> Iterator[None]:
    """A malformed message from a parent is the parent's fault: a ``PeerError``."""
    try:
        yield
    except ProtocolError as exc:
        raise request.error(ParentProtocolError, exc.message) from exc


def _connection_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection before answering"
    return " ".join(f"connection failed: {exc.__class__.__name__}: {exc}".split())
