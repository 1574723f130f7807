"""Serving an aiohttp application on ``host:port`` for the duration of a block.

The daemon's metrics, the scheduler's metrics and the injector's webhook all listen the same
way: bind (port 0 allowed), say where they ended up, and clean up whatever happens.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from damselfly.config.base import split_host_port
from damselfly.core.errors import ConfigError


@contextlib.asynccontextmanager
async def listening(
    app: web.Application, listen: str, *, setting: str, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``listen``; yields the bound ``host:port`` (IPv6 hosts in brackets).
    A bind failure is a ``ConfigError`` naming ``setting`` (e.g. ``metrics_listen``)."""
    host, port = split_host_port(listen)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"{setting} {listen}: {exc.strerror or exc}") from exc
        yield bound_address(runner)
    finally:
        await runner.cleanup()


def bound_address(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
