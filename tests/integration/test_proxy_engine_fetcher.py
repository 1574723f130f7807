"""``EngineFetcher`` over a real store and a real origin: the response streams as pieces are
stored, ranges are answered from the store (206/416), a second client of a running task reads
along, private URLs are checked with each client's own credentials, and what the engine
cannot take goes to the origin."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from pydantic import SecretStr

from damselfly.core.digests import piece_digest
from damselfly.core.errors import PieceDigestError
from damselfly.core.pieces import MIN_PIECE_LENGTH
from damselfly.daemon.proxy.engine_fetcher import EngineFetcher, byte_window
from damselfly.daemon.proxy.mesh import MeshRequest, MeshResponse, MeshUnavailableError
from damselfly.daemon.proxy.upstream import DirectFetcher, Upstream
from damselfly.download.jobs import DownloadContext, FillRequest
from damselfly.storage.store import Store
from damselfly.testing.origin import Behaviour, OriginServer

PIECE = MIN_PIECE_LENGTH
DATA = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(PIECE * 3 // 32 + 100))
TOKEN = "proxy-engine-secret"


class GatedFiller:
    """A fake mesh that holds the files' bytes: it stores the first piece of a task at once
    and every other one only after ``release`` is set, so a test sees what the client got
    before the rest arrived. Counts fills and piece writes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.release = asyncio.Event()
        self.first_stored = asyncio.Event()
        self.fills = 0
        self.writes = 0

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        self.fills += 1
        task, data = request.task, self.files[request.job.url.path]
        for number in range(task.piece_count):
            if number == 1:
                await self.release.wait()
            if task.has_piece(number):
                continue
            offset = number * task.piece_length
            request.on_piece(task.write_piece(number, data[offset : offset + task.piece_length]))
            self.writes += 1
            self.first_stored.set()
        return 0


FILES = {"/f.bin": DATA, "/private.bin": DATA[:5000]}


@pytest.fixture
async def origin():
    async with OriginServer(files=FILES) as server:
        server.set_behaviour(Behaviour(require_token=TOKEN), "/private.bin")
        yield server


@pytest.fixture
async def upstream():
    up = Upstream()
    await up.start()
    yield up
    await up.aclose()


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store") as opened:
        yield opened


async def _read(response: MeshResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.body])
    finally:
        await response.aclose()


def _header(response: MeshResponse, name: str) -> str | None:
    return next((v for n, v in response.headers if n.lower() == name.lower()), None)


async def test_bytes_stream_before_the_last_piece_is_stored(origin, upstream, store):
    filler = GatedFiller(FILES)
    async with EngineFetcher(store, filler, DirectFetcher(upstream), poll_interval=5) as mesh:
        response = await mesh.fetch(MeshRequest(origin.url("/f.bin")))
        assert response.status == 200
        assert _header(response, "Content-Length") == str(len(DATA))
        first = b""
        async with asyncio.timeout(10):  # a fetcher that waits for the whole file hangs here
            while len(first) < PIECE:
                first += await anext(response.body)
        assert first == DATA[:PIECE]  # sent while pieces 1.. were still held back
        assert not filler.release.is_set()
        filler.release.set()
        rest = await _read(response)
    assert first + rest == DATA
    assert mesh.outcomes["mesh"] == 1


class TornFiller(GatedFiller):
    """Stores piece 0, then puts wrong bytes where piece 1 goes without recording them (a
    write in progress, or a torn one) and offers wrong bytes for piece 2 (they fail its
    digest), then waits for ``release`` before storing the real pieces. Records the
    ``FillRequest`` it was given."""

    requests: list[FillRequest]

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        self.requests = [*getattr(self, "requests", []), request]
        task, data = request.task, self.files[request.job.url.path]
        request.on_piece(task.write_piece(0, data[:PIECE]))
        with open(task.content_path, "r+b") as content:
            content.seek(PIECE)
            content.write(b"\xff" * PIECE)
        good = piece_digest(data[2 * PIECE : 3 * PIECE])
        with pytest.raises(PieceDigestError):
            task.write_piece(2, b"\x00" * PIECE, expected_digest=good)
        self.first_stored.set()
        await self.release.wait()
        for number in range(1, task.piece_count):
            offset = number * PIECE
            request.on_piece(task.write_piece(number, data[offset : offset + PIECE]))
        return 0


async def test_unrecorded_or_unverified_bytes_are_never_served(origin, upstream, store):
    """The reader sends a piece only once the store recorded it (written whole, digest
    checked): bytes sitting in the content file before that never leave."""
    filler = TornFiller(FILES)
    async with EngineFetcher(store, filler, DirectFetcher(upstream), poll_interval=0.01) as mesh:
        response = await mesh.fetch(MeshRequest(origin.url("/f.bin")))
        received = b""
        async with asyncio.timeout(10):
            await filler.first_stored.wait()
            while len(received) < PIECE:
                received += await anext(response.body)
            more = asyncio.ensure_future(anext(response.body))
            await asyncio.sleep(0.1)  # ten looks at the store: piece 1 is there, unrecorded
            assert not more.done()
            filler.release.set()
            received += await more
        received += await _read(response)
    assert received == DATA


async def test_the_fill_starts_at_the_piece_the_reader_needs(origin, upstream, store):
    filler = GatedFiller(FILES)
    filler.release.set()
    async with EngineFetcher(store, filler, DirectFetcher(upstream)) as mesh:
        seen: list[int | None] = []
        fill = filler.fill

        async def recording(request: FillRequest, ctx: DownloadContext) -> int:
            seen.append(request.first_piece)
            return await fill(request, ctx)

        filler.fill = recording  # type: ignore[method-assign]
        for asked in [None, (2 * PIECE + 7, None), (None, 10), (PIECE, PIECE + 1)]:
            await _read(await mesh.fetch(MeshRequest(origin.url("/f.bin"), byte_range=asked)))
    assert seen == [0, 2, 3, 1]  # (None, 10): the last 10 bytes, in piece 3


async def test_ranges_are_answered_from_the_store(origin, upstream, store):
    filler = GatedFiller(FILES)
    filler.release.set()
    async with EngineFetcher(store, filler, DirectFetcher(upstream)) as mesh:
        assert await _read(await mesh.fetch(MeshRequest(origin.url("/f.bin")))) == DATA
        origin.reset_stats()
        total = len(DATA)
        cases = {
            (5, 10): (5, 10),
            (PIECE - 3, PIECE + 3): (PIECE - 3, PIECE + 3),
            (None, 100): (total - 100, total - 1),
            (total - 1, None): (total - 1, total - 1),
            (2 * PIECE, total + 50): (2 * PIECE, total - 1),
        }
        for asked, (first, last) in cases.items():
            response = await mesh.fetch(MeshRequest(origin.url("/f.bin"), byte_range=asked))
            assert response.status == 206
            assert _header(response, "Content-Range") == f"bytes {first}-{last}/{total}"
            assert await _read(response) == DATA[first : last + 1]
        response = await mesh.fetch(MeshRequest(origin.url("/f.bin"), byte_range=(total, None)))
        assert (response.status, _header(response, "Content-Range")) == (416, f"bytes */{total}")
        assert await _read(response) == b""
    assert origin.bytes_served == 0  # every range from the store
    assert filler.fills == 1 + len(cases) + 1  # the engine saw each; all cache hits


async def test_a_second_client_reads_along_with_a_running_fill(origin, upstream, store):
    filler = GatedFiller(FILES)
    async with EngineFetcher(store, filler, DirectFetcher(upstream), poll_interval=5) as mesh:
        one = await mesh.fetch(MeshRequest(origin.url("/f.bin")))
        await filler.first_stored.wait()
        two = await mesh.fetch(MeshRequest(origin.url("/f.bin"), byte_range=(PIECE, None)))
        filler.release.set()
        assert await _read(one) == DATA
        assert await _read(two) == DATA[PIECE:]
    assert (filler.fills, filler.writes) == (2, 4)  # the second fill waited, found all held


class FailingFiller(GatedFiller):
    """Stores piece 0, then fails (a source or every parent gone mid-way)."""

    async def fill(self, request: FillRequest, ctx: DownloadContext) -> int:
        self.fills += 1
        task, data = request.task, self.files[request.job.url.path]
        if not task.has_piece(0):
            request.on_piece(task.write_piece(0, data[:PIECE]))
        raise OSError("the source went away")


async def test_a_fill_failing_mid_way_cuts_the_body_short(origin, upstream, store):
    """Once the head is out a failure can only end the body early: the bytes that did go
    out are the file's, and the reader gets an error, not a clean end."""
    filler = FailingFiller(FILES)
    async with EngineFetcher(store, filler, DirectFetcher(upstream), poll_interval=5) as mesh:
        response = await mesh.fetch(MeshRequest(origin.url("/f.bin")))
        assert _header(response, "Content-Length") == str(len(DATA))
        received: list[bytes] = []

        async def read_all() -> None:
            async with asyncio.timeout(10):  # a reader that waits for piece 1 forever hangs
                async for chunk in response.body:
                    received.append(chunk)

        with pytest.raises(MeshUnavailableError, match="piece 1 never arrived"):
            await read_all()
        await response.aclose()
    assert b"".join(received) == DATA[:PIECE]


async def test_a_client_leaving_mid_body_leaves_the_fill_running(origin, upstream, store):
    filler = GatedFiller(FILES)
    async with EngineFetcher(store, filler, DirectFetcher(upstream), poll_interval=5) as mesh:
        gone = await mesh.fetch(MeshRequest(origin.url("/f.bin")))
        async with asyncio.timeout(10):
            await anext(gone.body)
        await gone.aclose()  # the client hung up after its first bytes
        filler.release.set()
        async with asyncio.timeout(10):  # a fill cancelled with its client never gets there
            while filler.writes < 4:
                await asyncio.sleep(0.01)
        again = await mesh.fetch(MeshRequest(origin.url("/f.bin"), byte_range=(PIECE, None)))
        assert await _read(again) == DATA[PIECE:]
    assert (filler.fills, filler.writes) == (2, 4)  # the second fill found every piece held


async def test_private_url_checked_with_each_clients_own_credentials(origin, upstream, store):
    filler = GatedFiller(FILES)
    filler.release.set()
    url = origin.url("/private.bin")
    async with EngineFetcher(store, filler, DirectFetcher(upstream)) as mesh:
        owner = MeshRequest(url, authorization=SecretStr(f"Bearer {TOKEN}"))
        assert await _read(await mesh.fetch(owner)) == DATA[:5000]
        for credential in (None, SecretStr("Bearer wrong")):
            response = await mesh.fetch(MeshRequest(url, authorization=credential))
            assert response.status == 401
            assert DATA[:64] not in await _read(response)
        assert await _read(await mesh.fetch(owner)) == DATA[:5000]
    assert mesh.outcomes == {"mesh": 2, "fallback": 2}
    assert (filler.fills, filler.writes) == (2, 1)  # the owner's second read: the store
    assert not any(TOKEN in str(task) for task in store.list_tasks())


async def test_what_the_engine_cannot_take_goes_to_the_origin(origin, upstream, store):
    filler = GatedFiller(FILES)
    async with EngineFetcher(store, filler, DirectFetcher(upstream)) as mesh:
        missing = await mesh.fetch(MeshRequest(origin.url("/missing.bin")))
        assert missing.status == 404
        await _read(missing)
        url = origin.url("/o/r/resolve/main/f.bin")  # a hub URL with a credential it cannot use
        odd = await mesh.fetch(MeshRequest(url, authorization=SecretStr("Basic eDp5")))
        assert (odd.status, odd.source) == (404, "origin")
        await odd.aclose()
    assert filler.fills == 0
    assert mesh.outcomes["fallback"] == 2


@pytest.mark.parametrize(
    ("asked", "total", "window"),
    [
        (None, 10, (0, 9)),
        (None, 0, (0, -1)),
        ((0, 0), 10, (0, 0)),
        ((3, None), 10, (3, 9)),
        ((None, 4), 10, (6, 9)),
        ((None, 40), 10, (0, 9)),
        ((None, 0), 10, None),
        ((10, None), 10, None),
        ((0, None), 0, None),
    ],
)
def test_byte_window(asked, total, window):
    assert byte_window(asked, total) == window
