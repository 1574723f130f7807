"""dfget's minimal HTTP/1.1 client for the local API, against canned answers on a unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from damselfly.cli import local_http
from damselfly.cli.local_http import LocalHttpError


@pytest.fixture
async def canned(tmp_path: Path) -> AsyncIterator[Callable[[bytes], asyncio.Future[bytes]]]:
    """Answer the next connection with the given bytes; the future gets what the client sent."""
    path = tmp_path / "s.sock"
    answers: list[tuple[bytes, asyncio.Future[bytes]]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer, sent = answers.pop(0)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        sent.set_result(head + await reader.readexactly(length))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(handle, str(path))

    def serve(answer: bytes) -> asyncio.Future[bytes]:
        sent: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        answers.append((answer, sent))
        return sent

    serve.path = path  # type: ignore[attr-defined]
    yield serve
    server.close()
    await server.wait_closed()


async def post(
    canned: Callable[[bytes], asyncio.Future[bytes]], answer: bytes
) -> tuple[local_http.LocalResponse, asyncio.Future[bytes]]:
    sent = canned(answer)
    path: Path = canned.path  # type: ignore[attr-defined]
    return await local_http.post(path, "/v1/downloads", b'{"a": 1}', "application/json"), sent


async def test_chunked_ndjson_is_split_into_lines(canned: Callable[[bytes], asyncio.Future[bytes]]):
    body = b'{"event": "one"}\n{"event": "t'
    rest = b'wo"}\n{"event": "three"}'
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-ndjson\r\n"
        b"\r\n%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n" % (len(body), body, len(rest), rest)
    )
    response, sent = await post(canned, answer)
    assert (response.status, response.headers["content-type"]) == (200, "application/x-ndjson")
    lines = [line async for line in response.lines()]
    assert lines == [b'{"event": "one"}', b'{"event": "two"}', b'{"event": "three"}']
    request = await sent
    assert request.startswith(b"POST /v1/downloads HTTP/1.1\r\n")
    assert b"Connection: close\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a": 1}')
    response.close()


async def test_content_length_and_read_to_close(canned: Callable[[bytes], asyncio.Future[bytes]]):
    response, _ = await post(canned, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope!")
    assert (response.status, await response.read()) == (403, b"nope")
    response.close()
    response, _ = await post(canned, b"HTTP/1.0 200 OK\r\n\r\nall of it")
    assert await response.read() == b"all of it"
    response.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n", "closed the connection in the headers"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "is not a number"),
    ],
)
async def test_what_is_not_http_is_a_clear_error(
    canned: Callable[[bytes], asyncio.Future[bytes]], answer: bytes, message: str
):
    with pytest.raises(LocalHttpError, match=message):
        await post(canned, answer)


async def test_a_cut_chunk_is_an_incomplete_read(canned: Callable[[bytes], asyncio.Future[bytes]]):
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort"
    response, _ = await post(canned, answer)
    with pytest.raises(asyncio.IncompleteReadError):
        await response.read()
    response.close()
