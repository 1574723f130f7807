"""``open_body`` (``backends/bodies.py``) against real origins on loopback: the http(s)
backend's own body, read from the adopted connection (``transport/origin_body.py``), and the
chunk-copying fallback every other backend gets, held to the same contract."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from damselfly.backends.base import Backend, RequestOptions
from damselfly.backends.bodies import ChunkBody, open_body
from damselfly.backends.http import HttpBackend, RetryPolicy
from damselfly.backends.http_responses import ResponseBody
from damselfly.core.errors import SourceProtocolError, SourceTimeoutError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import parse_url
from damselfly.security.roles import Role
from damselfly.testing.origin import Behaviour, OriginServer
from damselfly.testing.pki import TestPki

DATA = bytes(range(251)) * 20_000  # ~4.8 MiB; 251 is prime: every offset distinguishable
FAST_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.01, jitter=0.0)


class ChunksOnly:
    """The http backend seen through its ``get`` alone: ``open_body`` copies its chunks."""

    def __init__(self, backend: HttpBackend) -> None:
        self._backend = backend

    def get(self, url, byte_range, options):  # type: ignore[no-untyped-def]
        return self._backend.get(url, byte_range, options)


@pytest.fixture
async def origin() -> AsyncIterator[OriginServer]:
    async with OriginServer(files={"/data.bin": DATA}) as server:
        yield server


@pytest.fixture(params=["adopted", "chunks"])
async def backend(request) -> AsyncIterator[Backend]:
    http = HttpBackend(retry=FAST_RETRY)
    yield http if request.param == "adopted" else ChunksOnly(http)  # type: ignore[misc]
    await http.aclose()


async def read_all(
    backend: Backend,
    url: str,
    byte_range: ByteRange | None = None,
    options: RequestOptions | None = None,
    part: int = 1 << 20,
) -> bytes:
    """Read through one reused buffer, as the source fetcher does; the parts joined."""
    buffer = bytearray(part)
    parts: list[bytes] = []
    async with open_body(backend, parse_url(url), byte_range, options or RequestOptions()) as body:
        while count := await body.read_into(memoryview(buffer)):
            parts.append(bytes(buffer[:count]))
            if count < part:
                assert await body.read_into(memoryview(buffer)) == 0  # ended stays ended
                break
    return b"".join(parts)


@pytest.mark.parametrize(
    "byte_range",
    [None, ByteRange(0, len(DATA)), ByteRange(12_345, 3_000_001), ByteRange(7, 100)],
    ids=["whole", "whole-range", "middle", "small"],
)
async def test_the_origins_bytes_exactly(origin, backend, byte_range) -> None:
    got = await read_all(backend, origin.url("/data.bin"), byte_range)
    if byte_range is None:
        assert got == DATA
    else:
        assert got == DATA[byte_range.start : byte_range.end]


@pytest.mark.parametrize("part", [1, 4093, 65_536, 8 << 20])
async def test_any_part_length(origin, backend, part) -> None:
    wanted = ByteRange(1, 20_000 if part == 1 else len(DATA) - 1)
    assert (
        await read_all(backend, origin.url("/data.bin"), wanted, part=part)
        == DATA[1:][: wanted.length]
    )


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_a_declared_length_is_read_from_the_connection(origin, https_origin, tls) -> None:
    server = https_origin if tls else origin
    url, options = parse_url(server.url("/data.bin")), RequestOptions(insecure=tls)
    backend = HttpBackend(retry=FAST_RETRY)
    try:
        async with open_body(backend, url, ByteRange(0, 2_000_000), options) as body:
            assert isinstance(body, ResponseBody)
            assert body.adopted
        async with open_body(backend, url, ByteRange(0, 10), options) as body:
            assert isinstance(body, ResponseBody)
            assert body.adopted
            assert await body.read_into(memoryview(bytearray(20))) == 10
    finally:
        await backend.aclose()


async def test_short_body_is_a_protocol_error(origin, backend) -> None:
    origin.set_behaviour(Behaviour(short_body=100_000), "/data.bin")
    with pytest.raises(SourceProtocolError) as caught:
        await read_all(backend, origin.url("/data.bin"), ByteRange(10, 2_000_000))
    assert str(caught.value) == (
        f"{origin.url('/data.bin')}: expected 2000000 bytes, got 100000 (connection closed early)"
    )


async def test_stalling_body_times_out(origin, backend) -> None:
    origin.set_behaviour(Behaviour(rate=1000), "/data.bin")  # 50 bytes every 50 ms
    options = RequestOptions(timeout=0.02)
    with pytest.raises(SourceTimeoutError, match=r"no data for 0.02s after \d+ bytes"):
        await read_all(backend, origin.url("/data.bin"), ByteRange(0, 10_000), options)


async def test_leaving_early_closes_the_answer(origin, backend) -> None:
    url = parse_url(origin.url("/data.bin"))
    for _ in range(3):  # a connection left mid-body is never handed to the next request
        async with open_body(backend, url, None, RequestOptions()) as body:
            assert await body.read_into(memoryview(bytearray(1000))) == 1000
    assert await read_all(backend, origin.url("/data.bin"), ByteRange(5, 50)) == DATA[5:55]


async def test_chunked_answer_without_a_length(backend) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(DATA), 777_777):
            await response.write(DATA[start : start + 777_777])
        await response.write_eof()
        return response

    async with served(chunked) as url:
        assert await read_all(backend, url) == DATA


async def test_https_body_through_the_tls_transport(https_origin, make_http) -> None:
    backend = make_http()
    options = RequestOptions(insecure=True)
    got = await read_all(backend, https_origin.url("/data.bin"), ByteRange(3, 4_000_000), options)
    assert got == DATA[3:4_000_003]


async def test_chunk_body_reads_across_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"", b"cde", b"f"):
            yield piece

    body = ChunkBody(chunks())
    first, second = bytearray(4), bytearray(4)
    assert await body.read_into(memoryview(first)) == 4
    assert await body.read_into(memoryview(second)) == 2
    assert (bytes(first), bytes(second[:2])) == (b"abcd", b"ef")
    assert await body.read_into(memoryview(second)) == 0


# -- fixtures ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(handler: Callable[[web.Request], object]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/data.bin", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/data.bin"
    finally:
        await runner.cleanup()


@pytest.fixture
async def make_http() -> AsyncIterator[Callable[[], HttpBackend]]:
    made: list[HttpBackend] = []

    def make() -> HttpBackend:
        made.append(HttpBackend(retry=FAST_RETRY))
        return made[-1]

    yield make
    for backend in made:
        await backend.aclose()


@pytest.fixture
async def https_origin(tmp_path) -> AsyncIterator[OriginServer]:
    files = TestPki(tmp_path).node("origin", Role.PEER)  # any certificate for 127.0.0.1
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    async with OriginServer(files={"/data.bin": DATA}, ssl_context=context) as server:
        yield server


async def test_https_origin_that_closes_right_after_the_body(tmp_path) -> None:
    """asyncio's TLS makes one last read into the reader's buffer before it shuts down a
    connection the origin closed while reading was paused: nothing past that buffer may be
    lost (an origin answering ``Connection: close`` does exactly this)."""
    files = TestPki(tmp_path).node("origin", Role.PEER)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    body = DATA[:300_000]
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                request += tls.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            tls.sendall(head.encode())
            time.sleep(0.05)  # the head is read and adopted before the body comes
            tls.sendall(body)
            tls.shutdown(socket.SHUT_RDWR)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    backend = HttpBackend(retry=FAST_RETRY)
    url = parse_url(f"https://127.0.0.1:{listener.getsockname()[1]}/f")
    parts: list[bytes] = []
    try:
        options = RequestOptions(insecure=True, timeout=5)
        async with open_body(backend, url, None, options) as opened:
            assert isinstance(opened, ResponseBody)
            assert opened.adopted
            buffer = bytearray(65_536)
            while count := await opened.read_into(memoryview(buffer)):
                parts.append(bytes(buffer[:count]))
                await asyncio.sleep(0.05)  # a part written while the origin closes
    finally:
        await backend.aclose()
        listener.close()
        server.join(5)
    assert b"".join(parts) == body
