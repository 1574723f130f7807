"""``listening``: serves an app on host:port, says where, and names the setting on failure."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from damselfly.core.errors import ConfigError
from damselfly.transport.http_listener import listening


def _app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def test_serves_on_the_yielded_address_until_the_block_ends() -> None:
    async with (
        listening(_app(), "127.0.0.1:0", setting="metrics_listen") as address,
        aiohttp.ClientSession() as session,
        session.get(f"http://{address}/") as response,
    ):
        assert (response.status, await response.text()) == (200, "hello")
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(f"http://{address}/"):
            pass


async def test_a_taken_port_is_a_config_error_naming_the_setting() -> None:
    async with listening(_app(), "127.0.0.1:0", setting="metrics_listen") as address:
        with pytest.raises(ConfigError, match=rf"^metrics_listen {address}: "):
            async with listening(_app(), address, setting="metrics_listen"):
                pass
