"""``next_chunk`` ends every kind of body, including aiohttp's shared empty one."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from damselfly.transport.http_session import next_chunk


@pytest.fixture
async def origin():
    async def body(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1000)

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/body", body)
    app.router.add_route("*", "/empty", empty)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def _read_all(url: str, method: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        received = b""
        while chunk := await next_chunk(response):
            received += chunk
        return received


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [("/body", "GET", b"x" * 1000), ("/body", "HEAD", b""), ("/empty", "GET", b"")],
)
async def test_next_chunk_reaches_the_end_of_the_body(origin, path, method, expected) -> None:
    async with asyncio.timeout(5):
        assert await _read_all(origin + path, method) == expected
