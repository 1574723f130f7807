"""PieceClient against a real UploadServer and against a deliberately broken parent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from damselfly.core.errors import PeerError, ProtocolError
from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.storage.store import Store, TaskStorage
from damselfly.transport.piece_client import (
    ParentBusyError,
    ParentProtocolError,
    ParentStalledError,
    ParentStatusError,
    ParentUnreachableError,
    PieceClient,
    PieceLengthError,
    PieceNotHeldError,
)

TASK_ID = "e5" * 32
PIECE = 256 * 1024
DATA = os.urandom(24 * PIECE - 777)
PIECES = (len(DATA) + PIECE - 1) // PIECE


def piece(number: int) -> bytes:
    return DATA[number * PIECE : (number + 1) * PIECE]


def write(task: TaskStorage, *numbers: int) -> None:
    for number in numbers:
        task.write_piece(number, piece(number))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as store:
        yield store


@pytest.fixture
def task(store: Store) -> Iterator[TaskStorage]:
    with store.open_task(
        TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
    ) as task:
        yield task


@pytest.fixture
async def client() -> AsyncIterator[PieceClient]:
    async with PieceClient(connect_timeout=2.0) as client:
        yield client


async def collect(
    watch: AsyncGenerator[int, None],
    seen: list[int],
    each: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Append every watched number to ``seen`` (kept when the watch fails)."""
    async with contextlib.aclosing(watch) as numbers, asyncio.timeout(5):
        async for number in numbers:
            seen.append(number)
            if each is not None:
                await each(number)


def serve(store: Store, **options: object) -> UploadServer:
    options.setdefault("shutdown_timeout", 0.2)
    return UploadServer(store, host="127.0.0.1", port=0, **options)  # type: ignore[arg-type]


# -- against the real server --------------------------------------------------------------------


async def test_every_piece_arrives_byte_identical_as_chunks(
    store: Store, task: TaskStorage, client: PieceClient
) -> None:
    write(task, *range(PIECES))
    async with serve(store) as server:
        for number in range(PIECES):
            length = len(piece(number))
            chunks = await client.fetch_piece(server.base_url, TASK_ID, number, length)
            assert all(isinstance(chunk, memoryview) for chunk in chunks)
            assert b"".join(chunks) == piece(number)
    assert server.statistics().pieces_served == PIECES  # once stopped: every handler is done


async def test_receive_piece_hands_over_parts_in_order_never_the_whole_piece(
    store: Store, task: TaskStorage, client: PieceClient
) -> None:
    write(task, 0, PIECES - 1)
    async with serve(store) as server:
        for number in (0, PIECES - 1):
            parts: list[bytes] = []

            async def keep(part: list[memoryview], parts: list[bytes] = parts) -> None:
                parts.append(b"".join(part))

            length = len(piece(number))
            await client.receive_piece(
                server.base_url, TASK_ID, number, length, keep, part_length=PIECE // 4
            )
            assert b"".join(parts) == piece(number)
            assert all(len(part) >= PIECE // 4 for part in parts[:-1])


async def test_missing_piece_and_unknown_task(
    store: Store, task: TaskStorage, client: PieceClient
) -> None:
    write(task, 0)
    async with serve(store) as server:
        with pytest.raises(PieceNotHeldError) as missing:
            await client.fetch_piece(server.base_url + "/", TASK_ID, 3, PIECE)
        with pytest.raises(PieceNotHeldError):
            await client.fetch_piece(server.base_url, "ab" * 32, 0, PIECE)
        with pytest.raises(PieceNotHeldError):
            await client.bitmap(server.base_url, "ab" * 32)
    # a 404 keeps the connection alive: one for both pieces, one for the bitmap (aiohttp)
    assert server.statistics().connections == 2
    error = missing.value
    assert isinstance(error, PeerError)
    assert (error.parent, error.task_id, error.piece_number) == (server.base_url, TASK_ID, 3)
    assert "HTTP 404" in str(error)


async def test_busy_parent(store: Store, task: TaskStorage, client: PieceClient) -> None:
    write(task, 0, 1)
    async with (
        serve(store, upload_slots=1, rate_limit_bytes_per_second=16 * 1024) as server,
        aiohttp.ClientSession() as raw,
    ):
        slow = await raw.get(f"{server.base_url}/v1/tasks/{TASK_ID}/pieces/0")
        with pytest.raises(ParentBusyError) as busy:
            await client.fetch_piece(server.base_url, TASK_ID, 1, PIECE)
        slow.close()
    assert busy.value.retry_after == 1.0


async def test_unreachable_parent(client: PieceClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(ParentUnreachableError) as error:
        await client.fetch_piece(f"http://127.0.0.1:{port}", TASK_ID, 0, PIECE)
    assert isinstance(error.value, ConnectionError)
    with pytest.raises(ParentUnreachableError, match="http"):
        await client.fetch_piece("ftp://127.0.0.1:1", TASK_ID, 0, PIECE)


async def test_wrong_length_is_refused_before_reading(
    store: Store, task: TaskStorage, client: PieceClient
) -> None:
    write(task, 0)
    async with serve(store) as server:
        with pytest.raises(PieceLengthError, match=f"{PIECE} bytes announced, {PIECE - 1} due"):
            await client.fetch_piece(server.base_url, TASK_ID, 0, PIECE - 1)


async def test_corrupted_piece_on_the_parent_never_arrives(
    store: Store, task: TaskStorage, client: PieceClient
) -> None:
    write(task, 0, 1)
    async with serve(store) as server:
        assert await client.bitmap(server.base_url, TASK_ID) == {0, 1}
        with open(task.content_path, "r+b") as f:
            f.seek(PIECE + 100)
            f.write(b"\x00" if piece(1)[100] else b"\x01")
        stat = task.content_path.stat()
        os.utime(task.content_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        with pytest.raises(PieceLengthError, match="closed after 0 of"):
            await client.fetch_piece(server.base_url, TASK_ID, 1, PIECE)
        with pytest.raises(PieceNotHeldError):
            await client.fetch_piece(server.base_url, TASK_ID, 1, PIECE)
    assert task.finished_pieces() == {0}


async def test_keep_alive_reuses_few_connections(
    store: Store, task: TaskStorage, tmp_path: Path
) -> None:
    write(task, *range(PIECES))
    async with serve(store) as server, PieceClient(limit_per_host=2) as client:

        async def fetch(number: int) -> bytes:
            length = len(piece(number))
            return b"".join(await client.fetch_piece(server.base_url, TASK_ID, number, length))

        for _ in range(2):
            got = await asyncio.gather(*(fetch(n) for n in range(PIECES)))
            assert got == [piece(n) for n in range(PIECES)]
    stats = server.statistics()  # once stopped, so the last handler has finished counting
    assert stats.pieces_served == 2 * PIECES
    assert 1 <= stats.connections <= 2


async def test_bitmap(store: Store, task: TaskStorage, client: PieceClient) -> None:
    write(task, 0, 5, PIECES - 1)
    async with serve(store) as server:
        held = await client.bitmap(server.base_url, TASK_ID, piece_count=PIECES)
        assert held == {0, 5, PIECES - 1}
        with pytest.raises(ParentProtocolError) as wrong:
            await client.bitmap(server.base_url, TASK_ID, piece_count=PIECES + 1)
    assert isinstance(wrong.value, ProtocolError)
    assert isinstance(wrong.value, PeerError)


async def test_watch_yields_held_then_new_pieces_and_ends_on_completion(
    store: Store, task: TaskStorage, client: PieceClient
) -> None:
    write(task, *range(2, PIECES))
    async with serve(store, watch_poll_interval=60.0) as server:
        seen: list[int] = []
        watch = client.watch(server.base_url, TASK_ID, piece_count=PIECES)
        async with contextlib.aclosing(watch) as numbers, asyncio.timeout(5):
            async for number in numbers:
                seen.append(number)
                late = {PIECES - 1: 1, 1: 0}.get(number)  # the next piece to land
                if late is not None:
                    write(task, late)
                    server.piece_added(TASK_ID, late)
    assert seen == [*range(2, PIECES), 1, 0]


async def test_watch_fails_when_the_parent_shuts_down(
    store: Store, task: TaskStorage, client: PieceClient
) -> None:
    write(task, 0, 3)
    server = serve(store)
    await server.start()
    seen: list[int] = []

    async def close_after_the_held_pieces(number: int) -> None:
        if number == 3:
            await server.aclose()

    try:
        with pytest.raises(ParentUnreachableError, match="ended before the task completed"):
            await collect(client.watch(server.base_url, TASK_ID), seen, close_after_the_held_pieces)
    finally:
        await server.aclose()
    assert seen == [0, 3]


# -- against a broken parent --------------------------------------------------------------------


class BrokenParent:
    """Answers every request the way ``mode`` says."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "stall-before-headers":
            await asyncio.sleep(30)
        if self.mode == "status":
            return web.Response(status=503, text="down")
        if self.mode == "busy":
            return web.Response(status=429, headers={"Retry-After": "7"})
        if self.mode.startswith("watch") or self.mode == "bad-bitmap":
            return await self.bitmap(request)
        return await self.piece(request)

    async def piece(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if self.mode != "chunked-long":
            response.content_length = PIECE
        await response.prepare(request)
        await response.write(b"x" * (PIECE // 2))
        if self.mode == "stall-mid-body":
            await asyncio.sleep(30)
        if self.mode == "short" and request.transport is not None:
            request.transport.close()
            return response
        await response.write(b"x" * (PIECE // 2 + (10 if self.mode == "chunked-long" else 0)))
        return response

    async def bitmap(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "bad-bitmap":
            return web.Response(body=b'{"piece_count": 3, "held": "!!"}')
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"piece_count": 3, "held": "oA=="}\n')  # pieces 0 and 2
        if self.mode == "watch-bad-line":  # in one read with a good line before it
            await response.write(b'{"piece": 1}\n{"piece": 3}\n')
        if self.mode == "watch-batch":  # one write: two pieces, a heartbeat, the end
            await response.write(b'{"piece": 1}\n\n{"piece": 0}\n{"complete": true}\n')
            return response
        if self.mode == "watch-ends-mid-line":
            await response.write(b'{"pie')
            return response  # the body ends (a last empty chunk) without the line's end
        if self.mode == "watch-long-line":
            await response.write(b" " * 5000)
        if request.transport is not None:
            request.transport.close()  # cut off before {"complete": true}
        return response


@pytest.fixture
async def broken() -> AsyncIterator[BrokenParent]:
    parent = BrokenParent()
    await parent.start()
    yield parent
    assert parent.runner is not None
    await parent.runner.cleanup()


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("stall-before-headers", ParentStalledError, "no answer within 0.2s"),
        ("stall-mid-body", ParentStalledError, f"no byte for 0.2s after {PIECE // 2} of"),
        ("short", PieceLengthError, f"closed after {PIECE // 2} of {PIECE}"),
        ("chunked-long", ParentProtocolError, "Transfer-Encoding body"),
        ("status", ParentStatusError, "HTTP 503"),
        ("busy", ParentBusyError, "retry after 7s"),
    ],
)
async def test_broken_parent_errors(
    broken: BrokenParent, client: PieceClient, mode: str, error: type[Exception], match: str
) -> None:
    broken.mode = mode
    with pytest.raises(error, match=match):
        await client.fetch_piece(broken.base_url, TASK_ID, 0, PIECE, timeout_no_bytes=0.2)


async def test_a_short_body_fails_after_its_parts_were_handed_over(
    broken: BrokenParent, client: PieceClient
) -> None:
    broken.mode = "short"
    parts: list[bytes] = []

    async def keep(part: list[memoryview]) -> None:
        parts.append(b"".join(part))

    with pytest.raises(PieceLengthError, match=f"closed after {PIECE // 2} of {PIECE}"):
        await client.receive_piece(broken.base_url, TASK_ID, 0, PIECE, keep, part_length=1024)
    assert 0 < sum(map(len, parts)) <= PIECE // 2


async def test_stall_is_a_timeout_error(broken: BrokenParent, client: PieceClient) -> None:
    broken.mode = "stall-mid-body"
    with pytest.raises(TimeoutError):
        await client.fetch_piece(broken.base_url, TASK_ID, 0, PIECE, timeout_no_bytes=0.05)


async def test_a_watch_hands_over_what_came_in_one_read_as_one_batch(
    broken: BrokenParent, client: PieceClient
) -> None:
    broken.mode = "watch-batch"
    stream = client.watch_batches(broken.base_url, TASK_ID, piece_count=3)
    async with contextlib.aclosing(stream) as batches:
        assert [batch async for batch in batches] == [(0, 2), (1, 0)]


async def test_malformed_bitmap(broken: BrokenParent, client: PieceClient) -> None:
    broken.mode = "bad-bitmap"
    with pytest.raises(ParentProtocolError, match="base64"):
        await client.bitmap(broken.base_url, TASK_ID)


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("watch-cut", ParentUnreachableError, "cut off before the task completed"),
        ("watch-bad-line", ParentProtocolError, "piece 3 is outside"),
        ("watch-ends-mid-line", ParentUnreachableError, "watch stream cut off mid-line"),
        ("watch-long-line", ParentProtocolError, "watch line too long"),
    ],
)
async def test_broken_watch(
    broken: BrokenParent, client: PieceClient, mode: str, error: type[Exception], match: str
) -> None:
    broken.mode = mode
    seen: list[int] = []
    with pytest.raises(error, match=match):
        await collect(client.watch(broken.base_url, TASK_ID), seen)
    assert seen == ([0, 2, 1] if mode == "watch-bad-line" else [0, 2])
