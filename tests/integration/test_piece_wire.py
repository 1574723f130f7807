"""The lean piece client (``piece_wire.py``, ``piece_pool.py``) against raw parents that
misbehave at the HTTP level: what aiohttp used to catch must still be caught."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from damselfly.testing.polling import wait_until
from damselfly.transport.piece_client import (
    ParentProtocolError,
    ParentUnreachableError,
    PieceClient,
    PieceLengthError,
)
from damselfly.transport.piece_pool import PieceConnections
from damselfly.transport.piece_reads import PieceRequest
from damselfly.transport.piece_wire import HeadError, parse_head

TASK_ID = "c7" * 32
BODY = bytes(range(256)) * 64  # 16 KiB
OK_HEAD = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()


# -- the head parser ----------------------------------------------------------------------------


def test_a_plain_head_is_parsed() -> None:
    head = parse_head(b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 0")
    assert (head.status, head.content_length, head.keep_alive, head.retry_after) == (
        429,
        0,
        True,
        "3",
    )
    assert not parse_head(b"HTTP/1.1 200 OK\r\nConnection: close").keep_alive
    assert not parse_head(b"HTTP/1.0 200 OK").keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/2 200 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 2x0 OK",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        b"HTTP/1.1 200 OK\r\nno colon here",
        b"HTTP/1.1 200 OK\r\n Folded: value",
        "HTTP/1.1 200 OK\r\nContent-Length: \u00b2".encode("latin-1"),  # isdigit() says yes
        "HTTP/1.1 2\u00b30 OK".encode("latin-1"),
    ],
)
def test_a_bad_head_is_refused(raw: bytes) -> None:
    with pytest.raises(HeadError):
        parse_head(raw)


# -- against raw parents ------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]


class RawParent:
    """Counts connections; answers each request with ``answer(request_number)`` bytes, then
    closes if ``close_after`` says so."""

    def __init__(self) -> None:
        self.connections = 0
        self.gone = 0  # connections that ended
        self.requests: list[bytes] = []
        self.answer: Callable[[int], bytes] = lambda _n: OK_HEAD + BODY
        self.close_after: Callable[[int], bool] = lambda _n: False
        self.base_url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(request)
                number = len(self.requests)
                writer.write(self.answer(number))
                await writer.drain()
                if self.close_after(number):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.gone += 1
            writer.close()


@pytest.fixture
async def parent() -> AsyncIterator[RawParent]:
    raw = RawParent()
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield raw


@pytest.fixture
async def client() -> AsyncIterator[PieceClient]:
    async with PieceClient(connect_timeout=2.0) as pieces:
        yield pieces


async def fetch(client: PieceClient, parent: RawParent, number: int = 0) -> bytes:
    chunks = await client.fetch_piece(
        parent.base_url, TASK_ID, number, len(BODY), timeout_no_bytes=2.0
    )
    return b"".join(chunks)


async def test_a_piece_and_keep_alive(parent: RawParent, client: PieceClient) -> None:
    assert await fetch(client, parent) == BODY
    assert await fetch(client, parent, 1) == BODY
    assert parent.connections == 1
    first = parent.requests[0].decode()
    assert first.startswith(f"GET /v1/tasks/{TASK_ID}/pieces/0 HTTP/1.1\r\n")
    assert "\r\nHost: 127.0.0.1:" in first


async def test_parts_share_one_buffer_and_arrive_in_order(
    parent: RawParent, client: PieceClient
) -> None:
    seen: list[tuple[int, bytes]] = []

    async def sink(part: list[memoryview]) -> None:
        seen.extend((id(view.obj), bytes(view)) for view in part)

    await client.receive_piece(parent.base_url, TASK_ID, 0, len(BODY), sink, part_length=5000)
    assert b"".join(data for _, data in seen) == BODY
    assert [len(data) for _, data in seen] == [5000, 5000, 5000, len(BODY) - 15000]
    assert len({owner for owner, _ in seen[:3]}) == 1  # one buffer for the full-size parts


async def test_a_reused_connection_the_parent_closed_is_replaced(
    parent: RawParent, client: PieceClient
) -> None:
    parent.close_after = lambda _n: True  # keep-alive promised, then closed after each answer
    assert await fetch(client, parent) == BODY
    await asyncio.sleep(0.05)
    assert await fetch(client, parent, 1) == BODY
    assert parent.connections == 2


async def test_a_connection_that_closes_before_answering_fails(
    parent: RawParent, client: PieceClient
) -> None:
    parent.answer = lambda _n: b""
    parent.close_after = lambda _n: True
    with pytest.raises(ParentUnreachableError, match="closed the connection before answering"):
        await fetch(client, parent)


async def test_bytes_past_the_content_length_are_refused(
    parent: RawParent, client: PieceClient
) -> None:
    parent.answer = lambda _n: OK_HEAD + BODY + b"HTTP/1.1 200 OK\r\n"
    result = await asyncio.gather(fetch(client, parent), return_exceptions=True)
    # either the surplus came with the head (refused at once) or it arrives while the
    # connection is idle (then it is retired): never read as the next answer
    if isinstance(result[0], BaseException):
        assert isinstance(result[0], PieceLengthError)
    else:
        assert result[0] == BODY
    parent.answer = lambda _n: OK_HEAD + BODY
    assert await fetch(client, parent, 1) == BODY
    assert parent.connections == 2


async def test_a_head_too_long_is_a_protocol_error(parent: RawParent, client: PieceClient) -> None:
    parent.answer = lambda _n: b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
    with pytest.raises(ParentProtocolError, match="head too long"):
        await fetch(client, parent)


async def test_a_piece_without_length_is_a_protocol_error(
    parent: RawParent, client: PieceClient
) -> None:
    parent.answer = lambda _n: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY
    with pytest.raises(ParentProtocolError, match="without Content-Length"):
        await fetch(client, parent)


async def test_a_grant_with_a_line_break_is_never_sent(parent: RawParent) -> None:
    grants = {TASK_ID: "abc\r\nX-Injected: 1"}
    async with PieceClient(connect_timeout=2.0, grants=grants) as pieces:
        with pytest.raises(ParentProtocolError, match="bad value"):
            await fetch(pieces, parent)
    assert parent.requests == []


async def test_a_parent_given_as_https_is_dialled_over_tls(parent: RawParent) -> None:
    async with PieceClient(connect_timeout=0.5) as pieces:
        with pytest.raises(ParentUnreachableError):  # a TLS handshake with a plain server
            await pieces.fetch_piece(
                parent.base_url.replace("http://", "https://"), TASK_ID, 0, len(BODY)
            )
    assert parent.connections == 1
    assert parent.requests == []  # no GET in clear text


async def test_a_slow_sink_is_not_a_stalled_parent(parent: RawParent, client: PieceClient) -> None:
    async def slow(part: list[memoryview]) -> None:
        await asyncio.sleep(0.3)  # a disk slower than the no-bytes timeout, every part

    await client.receive_piece(
        parent.base_url, TASK_ID, 0, len(BODY), slow, part_length=4096, timeout_no_bytes=0.2
    )


async def test_idle_connections_and_parents_are_swept(tmp_path: object) -> None:
    first, second = RawParent(), RawParent()
    servers = [await asyncio.start_server(p.handle, "127.0.0.1", 0) for p in (first, second)]
    for raw, server in zip((first, second), servers, strict=True):
        raw.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        pool = PieceConnections(
            limit_per_host=2, connect_timeout=2.0, keepalive=0.2, user_agent="t"
        )

        async def fetch_from(raw: RawParent) -> None:
            parts: list[bytes] = []

            async def keep(part: list[memoryview]) -> None:
                parts.append(b"".join(part))

            request = PieceRequest(raw.base_url, TASK_ID, 0, f"/v1/tasks/{TASK_ID}/pieces/0")
            await pool.receive_piece(request, len(BODY), keep, part_length=len(BODY),
                                     timeout_no_bytes=2.0, headers={})  # fmt: skip
            assert b"".join(parts) == BODY

        await fetch_from(first)
        assert first.gone == 0  # kept alive
        await asyncio.sleep(1.1)  # past keep-alive and the sweep interval
        await fetch_from(second)
        await wait_until(lambda: first.gone == 1)  # the first parent's idle connection closed
        assert [f"http://127.0.0.1:{p.port}" for p in pool.parents()] == [second.base_url]
        await pool.aclose()
    finally:
        for server in servers:
            server.close()


# -- part buffers kept from one piece to the next -----------------------------------------------


def piece_request(raw: RawParent, number: int) -> PieceRequest:
    return PieceRequest(raw.base_url, TASK_ID, number, f"/v1/tasks/{TASK_ID}/pieces/{number}")


async def receive_into_list(
    pool: PieceConnections, raw: RawParent, number: int, owners: list[object], pause: float = 0
) -> bytes:
    """Piece ``number``'s body; each part's buffer appended to ``owners``."""
    parts: list[bytes] = []

    async def sink(part: list[memoryview]) -> None:
        owners.extend(view.obj for view in part)
        parts.append(b"".join(part))
        await asyncio.sleep(pause)

    await pool.receive_piece(piece_request(raw, number), len(BODY), sink, part_length=4096,
                             timeout_no_bytes=2.0, headers={})  # fmt: skip
    return b"".join(parts)


@pytest.fixture
async def pool() -> AsyncIterator[PieceConnections]:
    connections = PieceConnections(
        limit_per_host=4, connect_timeout=2.0, keepalive=5, user_agent="t", keep_buffers_for=0.2
    )
    yield connections
    await connections.aclose()


async def test_the_next_piece_reuses_the_last_ones_buffer_and_an_idle_pool_keeps_none(
    parent: RawParent, pool: PieceConnections
) -> None:
    first: list[object] = []
    slow = asyncio.create_task(receive_into_list(pool, parent, 0, [], pause=0.05))  # keeps it busy
    await wait_until(lambda: len(parent.requests) == 1)
    assert await receive_into_list(pool, parent, 1, first) == BODY
    assert pool.kept_part_buffers == 1
    second: list[object] = []
    assert await receive_into_list(pool, parent, 2, second) == BODY
    assert len({id(owner) for owner in first + second}) == 1  # one buffer for both pieces
    assert await slow == BODY
    assert pool.kept_part_buffers == 2  # both kept a moment for the next pieces ...
    await wait_until(lambda: pool.kept_part_buffers == 0)  # ... then let go


async def test_a_piece_soon_after_the_last_one_reuses_its_buffer(
    parent: RawParent, pool: PieceConnections
) -> None:
    """A node that follows its seed often has no piece in flight between two."""
    first: list[object] = []
    second: list[object] = []
    assert await receive_into_list(pool, parent, 0, first) == BODY
    assert await receive_into_list(pool, parent, 1, second) == BODY
    assert len({id(owner) for owner in first + second}) == 1


async def test_pieces_in_flight_at_once_never_share_a_buffer(
    parent: RawParent, pool: PieceConnections
) -> None:
    slow = asyncio.create_task(receive_into_list(pool, parent, 0, [], pause=0.05))  # keeps it busy
    await wait_until(lambda: len(parent.requests) == 1)
    await receive_into_list(pool, parent, 1, [])
    assert pool.kept_part_buffers == 1
    owners: list[list[object]] = [[], [], []]
    await asyncio.gather(*(receive_into_list(pool, parent, n, owners[n], 0.01) for n in range(3)))
    assert await slow == BODY
    for one, other in [(0, 1), (0, 2), (1, 2)]:
        assert not {id(o) for o in owners[one]} & {id(o) for o in owners[other]}


async def test_the_buffer_of_a_body_cut_short_is_not_kept(
    parent: RawParent, pool: PieceConnections
) -> None:
    """A worker thread (the TLS wire's) may still be filling it after the error."""
    parent.answer = lambda n: OK_HEAD + (BODY[:5000] if n == 2 else BODY)
    parent.close_after = lambda n: n == 2
    slow = asyncio.create_task(receive_into_list(pool, parent, 0, [], pause=0.05))  # keeps it busy
    await wait_until(lambda: len(parent.requests) == 1)
    cut: list[object] = []
    with pytest.raises(PieceLengthError):
        await receive_into_list(pool, parent, 1, cut)
    after: list[object] = []
    assert await receive_into_list(pool, parent, 2, after) == BODY
    assert cut
    assert not {id(o) for o in cut} & {id(o) for o in after}
    assert await slow == BODY
