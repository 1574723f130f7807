"""``PieceClient``: fetching pieces (and what a parent holds) from other daemons.

Pieces come over ``piece_pool.py``'s keep-alive connections (a lean HTTP/1.1 client that
reads bodies straight into part buffers, ``piece_wire.py``); bitmaps and watches over one
``aiohttp.ClientSession`` per process. Either way at most ``limit_per_host`` connections per
parent (the download engine keeps ~8 pieces in flight, spread over a few parents), no
cookies, no proxy from the environment, no decompression. The wire is
``protocol/pieces_http.py``.

Every failure is a ``PeerError`` naming the parent, the task and the piece
(``piece_errors.py`` draws the tree; ``piece_reads.py`` reads the answers and names their
failures), so the download engine can tell what to do from the type alone.

``fetch_piece`` returns a piece as one buffer; ``receive_piece`` hands it over in parts of
``part_length`` bytes as they fill (the daemon writes each to disk before it reads on, so a
piece in flight never sits whole in memory: ``storage/piece_stream.py``), one buffer reused
for every part. A piece is exactly ``length`` bytes or an error; a connection that failed
mid-body is closed, never put back in the pool.

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
from collections.abc import AsyncGenerator, Callable, Mapping

import aiohttp

from damselfly.protocol import pieces_http as wire
from damselfly.security.grants import GRANT_HEADER
from damselfly.transport.http_session import verbatim_session
from damselfly.transport.piece_body import PartSink
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
from damselfly.transport.piece_pool import PieceConnections
from damselfly.transport.piece_reads import (
    PieceRequest,
    connection_reason,
    expect_ok,
    protocol_errors,
    read_limited,
    read_line,
    watch_batches,
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
USER_AGENT = "damselfly-peer/0.1"


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
        self._connections = PieceConnections(
            limit_per_host=limit_per_host,
            connect_timeout=connect_timeout,
            keepalive=KEEPALIVE_TIMEOUT,
            user_agent=USER_AGENT,
            tls=tls,
        )

    async def aclose(self) -> None:
        await self._connections.aclose()
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
        chunks: list[memoryview] = []

        async def keep(part: list[memoryview]) -> None:
            chunks.extend(part)

        request = self._request(parent_url_base, task_id, number, wire.piece_path(task_id, number))
        await self._connections.receive_piece(
            request,
            length,
            keep,
            part_length=max(1, length),
            timeout_no_bytes=timeout_no_bytes,
            headers=self._grant_header(task_id),
            fresh_parts=True,
        )
        return chunks

    async def receive_piece(
        self,
        parent_url_base: str,
        task_id: str,
        number: int,
        length: int,
        sink: PartSink,
        *,
        part_length: int,
        timeout_no_bytes: float = PIECE_TIMEOUT_NO_BYTES,
    ) -> None:
        """Piece ``number`` handed to ``sink`` in order as it arrives, in parts of
        ``part_length`` bytes (the last one shorter), so it is never held whole; a typed error
        if it is not exactly ``length`` bytes, maybe after some parts were handed over. The
        parts share one buffer: ``sink`` must be done with a part when it returns."""
        request = self._request(parent_url_base, task_id, number, wire.piece_path(task_id, number))
        await self._connections.receive_piece(
            request,
            length,
            sink,
            part_length=part_length,
            timeout_no_bytes=timeout_no_bytes,
            headers=self._grant_header(task_id),
        )

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
            await expect_ok(response, request)
            body = await read_limited(response, request, MAX_BITMAP_BODY, timeout_no_bytes)
            with protocol_errors(request):
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
        batches = self.watch_batches(
            parent_url_base, task_id, piece_count=piece_count, timeout_no_bytes=timeout_no_bytes
        )
        async with contextlib.aclosing(batches) as stream:
            async for batch in stream:
                for number in batch:
                    yield number

    async def watch_batches(
        self,
        parent_url_base: str,
        task_id: str,
        *,
        piece_count: int | None = None,
        timeout_no_bytes: float = WATCH_TIMEOUT_NO_BYTES,
    ) -> AsyncGenerator[tuple[int, ...], None]:
        """``watch`` in batches: the pieces held now (in order), then those of each read of
        the stream (the daemon's engine takes them so: a step per batch, not per piece)."""
        request = self._request(parent_url_base, task_id, None, wire.bitmap_path(task_id))
        response = await self._get(request, {wire.WATCH_QUERY: "1"}, timeout_no_bytes)
        try:
            await expect_ok(response, request)
            first = await read_line(response, request, timeout_no_bytes)
            with protocol_errors(request):
                snapshot = wire.parse_snapshot(first, piece_count=piece_count)
            if snapshot.held:
                yield tuple(sorted(snapshot.held))
            async for batch in watch_batches(response, request, snapshot, timeout_no_bytes):
                yield batch
        finally:
            response.close()  # a watch connection is never reused

    # -- plumbing ------------------------------------------------------------------------------

    def _grant_header(self, task_id: str) -> dict[str, str]:
        grant = self._grants.get(task_id)
        return {GRANT_HEADER: grant} if grant else {}

    def _request(self, parent: str, task_id: str, number: int | None, path: str) -> PieceRequest:
        return PieceRequest(parent, task_id, number, path, tls=self._tls is not None)

    async def _get(
        self, request: PieceRequest, query: dict[str, str] | None, timeout_no_bytes: float
    ) -> aiohttp.ClientResponse:
        url = request.url(query)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._connect_timeout, sock_read=timeout_no_bytes
        )
        try:
            tls = True if self._tls is None else self._tls()
            headers = self._grant_header(request.task_id)
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
            raise request.error(ParentUnreachableError, connection_reason(exc)) from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = create_peer_session(
                limit=self._limit, limit_per_host=self._limit_per_host
            )
        return self._session
