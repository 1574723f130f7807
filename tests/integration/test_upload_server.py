"""UploadServer on 127.0.0.1 with a real store, spoken to with plain aiohttp (the raw wire)."""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from damselfly.core.errors import StorageError
from damselfly.daemon.servers.upload_server import CHUNK_LENGTH, UploadServer
from damselfly.storage import content as content_module
from damselfly.storage.store import Store, TaskStorage

TASK_ID = "c3" * 32
OTHER_ID = "d4" * 32
PIECE = 1536 * 1024  # two send chunks per piece (1 MiB + 512 KiB)
DATA = os.urandom(3 * PIECE - 1000)


def piece(number: int, data: bytes = DATA) -> bytes:
    return data[number * PIECE : (number + 1) * PIECE]


def open_task(store: Store, task_id: str = TASK_ID, data: bytes = DATA) -> TaskStorage:
    return store.open_task(task_id, url="https://x/f", content_length=len(data), piece_length=PIECE)


def write(task: TaskStorage, *numbers: int, data: bytes = DATA) -> None:
    for number in numbers:
        task.write_piece(number, piece(number, data))


def touch(path: Path) -> None:
    """Move mtime as another writer would: what the server verified is no longer vouched for."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def corrupt(path: Path, offset: int) -> None:
    """Flip one byte and move mtime, as a damaged or tampered file would."""
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store") as store:
        yield store


@pytest.fixture
def task(store: Store) -> Iterator[TaskStorage]:
    with open_task(store) as task:
        yield task


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def serve(store: Store, **options: object) -> UploadServer:
    options.setdefault("shutdown_timeout", 0.2)
    return UploadServer(store, host="127.0.0.1", port=0, **options)  # type: ignore[arg-type]


def piece_url(server: UploadServer, number: int, task_id: str = TASK_ID) -> str:
    return f"{server.base_url}/v1/tasks/{task_id}/pieces/{number}"


def bitmap_url(server: UploadServer, task_id: str = TASK_ID, *, watch: bool = False) -> str:
    return f"{server.base_url}/v1/tasks/{task_id}/bitmap" + ("?watch=1" if watch else "")


async def get_bytes(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:
        return response.status, await response.read()


async def read_into(response: aiohttp.ClientResponse, received: list[bytes]) -> None:
    async for chunk in response.content.iter_any():
        received.append(chunk)


# -- serving pieces ---------------------------------------------------------------------------


async def test_every_piece_is_served_byte_identical(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    write(task, 0, 1, 2)
    async with serve(store) as server:
        assert (await get_bytes(http, bitmap_url(server)))[0] == 200  # opened (and verified)
        touch(task.content_path)  # changed since: every piece is checked again
        for round_ in range(2):  # first round re-checks, second goes out with sendfile
            for number in range(3):
                async with http.get(piece_url(server, number)) as response:
                    assert response.status == 200
                    assert response.content_type == "application/octet-stream"
                    assert response.content_length == len(piece(number))
                    assert await response.read() == piece(number), (round_, number)
    stats = server.statistics()  # once stopped, so the last handler has finished counting
    assert (stats.pieces_served, stats.bytes_uploaded) == (6, 2 * len(DATA))
    assert (stats.pieces_rechecked, stats.tasks_opened, stats.active_uploads) == (3, 1, 0)


async def test_rate_limited_pieces_are_still_exact(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    write(task, 0, 2)
    async with serve(store, rate_limit_bytes_per_second=400 * 1024 * 1024) as server:
        assert (await get_bytes(http, bitmap_url(server)))[0] == 200
        touch(task.content_path)
        for _ in range(2):  # checked path, then chunked sendfile
            assert await get_bytes(http, piece_url(server, 2)) == (200, piece(2))
            assert await get_bytes(http, piece_url(server, 0)) == (200, piece(0))
        assert server.statistics().pieces_rechecked == 2


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/v1/tasks/{TASK_ID}/pieces/1", 404),  # recorded task, piece not held
        (f"/v1/tasks/{TASK_ID}/pieces/3", 404),  # past the last piece
        (f"/v1/tasks/{OTHER_ID}/pieces/0", 404),  # task not in the store
        (f"/v1/tasks/{OTHER_ID}/bitmap", 404),
        (f"/v1/tasks/{TASK_ID}/pieces/01", 400),
        (f"/v1/tasks/{TASK_ID}/pieces/-1", 400),
        ("/v1/tasks/a%20b/pieces/0", 400),
        ("/v1/tasks/x/bitmap", 400),
    ],
)
async def test_missing_and_malformed_requests(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession, path: str, status: int
) -> None:
    write(task, 0)
    async with serve(store) as server:
        got, _ = await get_bytes(http, server.base_url + path)
        stats = server.statistics()
    assert got == status
    assert stats.not_found == (1 if status == 404 else 0)
    assert stats.pieces_served == 0
    assert store.get_task(OTHER_ID) is None  # a 404 never creates a task


async def test_busy_when_every_slot_is_taken(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    write(task, 0, 1)
    async with serve(store, upload_slots=1, rate_limit_bytes_per_second=64 * 1024) as server:
        slow = await http.get(piece_url(server, 0))  # headers sent, body throttled to a crawl
        assert slow.status == 200
        assert server.statistics().active_uploads == 1
        async with http.get(piece_url(server, 1)) as busy:
            assert busy.status == 429
            assert busy.headers["Retry-After"] == "1"
        stats = server.statistics()
        slow.close()
    assert (stats.rejected_busy, stats.active_uploads, stats.pieces_served) == (1, 1, 0)


# -- re-checking before upload ------------------------------------------------------------------


@pytest.mark.parametrize("served_before", [False, True], ids=["cold", "after-sendfile"])
@pytest.mark.parametrize("offset", [10, PIECE - 10], ids=["first-chunk", "last-chunk"])
async def test_corrupted_piece_is_cut_short_and_dropped(
    store: Store,
    task: TaskStorage,
    http: aiohttp.ClientSession,
    served_before: bool,
    offset: int,
) -> None:
    write(task, 0, 1, 2)
    dropped: list[tuple[str, int]] = []
    async with serve(store, on_piece_dropped=lambda t, n: dropped.append((t, n))) as server:
        assert (await get_bytes(http, bitmap_url(server)))[0] == 200  # the server opened it
        if served_before:
            assert await get_bytes(http, piece_url(server, 1)) == (200, piece(1))
            assert await get_bytes(http, piece_url(server, 1)) == (200, piece(1))
        corrupt(task.content_path, PIECE + offset)
        received: list[bytes] = []
        async with http.get(piece_url(server, 1)) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await read_into(response, received)
        assert len(b"".join(received)) <= CHUNK_LENGTH  # the last chunk is withheld: never intact
        assert (await get_bytes(http, piece_url(server, 1)))[0] == 404
        assert await get_bytes(http, piece_url(server, 2)) == (200, piece(2))
        stats = server.statistics()
    assert not task.has_piece(1)
    assert task.finished_pieces() == {0, 2}
    assert dropped == [(TASK_ID, 1)]
    assert stats.pieces_dropped == 1


async def test_piece_corrupted_before_the_server_opened_the_task_is_never_served(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    write(task, 0, 1)
    corrupt(task.content_path, PIECE + 5)
    async with serve(store) as server:
        with pytest.raises(aiohttp.ClientPayloadError):  # re-checked as sent: cut short
            await get_bytes(http, piece_url(server, 1))
        assert (await get_bytes(http, piece_url(server, 1)))[0] == 404  # and dropped
        assert await get_bytes(http, piece_url(server, 0)) == (200, piece(0))
    assert task.finished_pieces() == {0}
    with Store(store.root) as other, open_task(other) as reopened:  # a new process re-reads
        assert reopened.finished_pieces() == {0}


async def test_a_write_to_the_file_sends_pieces_back_to_the_checked_path(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    with Store(store.root) as other, open_task(other) as theirs:  # another process wrote it
        write(theirs, 0)
    async with serve(store) as server:
        for _ in range(3):
            await get_bytes(http, piece_url(server, 0))
        assert server.statistics().pieces_rechecked == 1  # the first time only
        touch(task.content_path)
        for _ in range(2):
            assert await get_bytes(http, piece_url(server, 0)) == (200, piece(0))
        assert server.statistics().pieces_rechecked == 2


async def test_pieces_this_daemon_verified_skip_the_recheck_until_someone_else_writes(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    async with serve(store) as server:
        for number in (0, 1):
            write(task, number)
            server.piece_added(TASK_ID, number)  # the engine hashed it as it wrote it
            assert await get_bytes(http, piece_url(server, number)) == (200, piece(number))
        for number in (0, 1, 0):
            assert await get_bytes(http, piece_url(server, number)) == (200, piece(number))
        assert server.statistics().pieces_rechecked == 0  # the file grew, but only by us
        corrupt(task.content_path, PIECE + 10)  # someone else writes: nothing is vouched for
        with pytest.raises(aiohttp.ClientPayloadError):  # cut short, never the bad bytes
            await get_bytes(http, piece_url(server, 1))
        assert await get_bytes(http, piece_url(server, 0)) == (200, piece(0))
        stats = server.statistics()
        assert (stats.pieces_rechecked, stats.pieces_dropped) == (2, 1)
        assert task.finished_pieces() == {0}


# -- the open-task cache ------------------------------------------------------------------------


async def test_cache_evicts_and_forget_lets_the_store_remove_a_task(
    store: Store, http: aiohttp.ClientSession
) -> None:
    other = os.urandom(PIECE)
    with open_task(store) as first, open_task(store, OTHER_ID, other) as second:
        write(first, 0)
        write(second, 0, data=other)
    async with serve(store, open_task_limit=1) as server:
        for task_id, expected in [(TASK_ID, piece(0)), (OTHER_ID, other), (TASK_ID, piece(0))]:
            assert await get_bytes(http, piece_url(server, 0, task_id)) == (200, expected)
        assert server.statistics().tasks_opened == 3
        assert store.remove_task(OTHER_ID)  # evicted from the cache: not pinned
        assert not store.remove_task(TASK_ID)  # cached: pinned
        server.forget_task(TASK_ID)
        assert store.remove_task(TASK_ID)
        assert (await get_bytes(http, piece_url(server, 0)))[0] == 404


# -- bitmaps and watching -----------------------------------------------------------------------


async def test_bitmap_lists_held_pieces(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    write(task, 0, 2)
    async with serve(store) as server, http.get(bitmap_url(server)) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = json.loads(await response.read())
    assert body == {"piece_count": 3, "held": base64.b64encode(b"\xa0").decode()}


async def read_line(response: aiohttp.ClientResponse) -> bytes:
    async with asyncio.timeout(5):
        return await response.content.readline()


@pytest.mark.parametrize("notify", [True, False], ids=["notified", "polled"])
async def test_watch_streams_new_pieces_until_complete(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession, notify: bool
) -> None:
    write(task, 1)
    poll = 60.0 if notify else 0.02  # notified: a poll would never come in time
    async with serve(store, watch_poll_interval=poll) as server:
        async with http.get(bitmap_url(server, watch=True)) as response:
            assert response.content_type == "application/x-ndjson"
            first = json.loads(await read_line(response))
            assert first == {"piece_count": 3, "held": base64.b64encode(b"\x40").decode()}
            assert server.statistics().watchers == 1
            for number in (2, 0):
                write(task, number)
                if notify:
                    server.piece_added(TASK_ID, number)
                assert json.loads(await read_line(response)) == {"piece": number}
            assert json.loads(await read_line(response)) == {"complete": True}
            assert await read_line(response) == b""
        await asyncio.sleep(0)
        assert server.statistics().watchers == 0


async def test_watch_of_a_complete_task_ends_at_once(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    write(task, 0, 1, 2)
    async with serve(store) as server, http.get(bitmap_url(server, watch=True)) as response:
        lines = (await response.read()).splitlines()
    assert [json.loads(line) for line in lines[1:]] == [{"complete": True}]


async def test_watch_sends_heartbeats_and_ends_when_the_server_closes(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    server = serve(store, watch_poll_interval=0.01, watch_heartbeat_interval=0.03)
    await server.start()
    try:
        response = await http.get(bitmap_url(server, watch=True))
        await read_line(response)
        assert await read_line(response) == b"\n"
    finally:
        await server.aclose()
    assert await read_line(response) == b""  # ended without {"complete": true}
    response.close()


# -- pieces this daemon wrote itself --------------------------------------------------------


async def test_own_pieces_skip_the_recheck_while_our_writes_go_on(
    store: Store, task: TaskStorage, http: aiohttp.ClientSession
) -> None:
    """The engine's later writes (to other pieces) do not send what it wrote before back to
    the checked path, even before it told the server (``piece_added``) of the later ones."""
    async with serve(store) as server:
        write(task, 0)
        server.piece_added(TASK_ID, 0)
        assert await get_bytes(http, piece_url(server, 0)) == (200, piece(0))
        write(task, 1)  # stored, not yet announced: the file changed under the server
        for number in (0, 1, 0):
            assert await get_bytes(http, piece_url(server, number)) == (200, piece(number))
        write(task, 2)
        assert await get_bytes(http, piece_url(server, 2)) == (200, piece(2))
        task.mark_succeeded()  # moves mtime (the store's fingerprint), not the bytes
        assert await get_bytes(http, piece_url(server, 1)) == (200, piece(1))
        assert server.statistics().pieces_rechecked == 0


def tear_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``pwritev`` writes half its first buffer, then fails as a full disk does."""

    def torn(fd: int, buffers: list[memoryview], offset: int) -> int:
        first = buffers[0]
        os.pwrite(fd, first[: len(first) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(content_module.os, "pwritev", torn)


@pytest.mark.parametrize("rewrite", [False, True], ids=["new-piece", "rewrite-of-a-damaged-one"])
async def test_a_torn_write_is_never_shared(
    store: Store,
    task: TaskStorage,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    rewrite: bool,
) -> None:
    write(task, 0)
    if rewrite:
        write(task, 1)
        corrupt(task.content_path, PIECE + 3)
    async with serve(store) as server:
        assert await get_bytes(http, piece_url(server, 0)) == (200, piece(0))
        with monkeypatch.context() as patch:
            tear_writes(patch)
            with pytest.raises(StorageError):
                write(task, 1)
        assert not task.has_piece(1)
        assert (await get_bytes(http, piece_url(server, 1)))[0] == 404
        assert await get_bytes(http, piece_url(server, 0)) == (200, piece(0))
        write(task, 1)  # the next whole write is served again, and vouched for
        rechecked = server.statistics().pieces_rechecked
        assert await get_bytes(http, piece_url(server, 1)) == (200, piece(1))
        assert server.statistics().pieces_rechecked == rechecked
