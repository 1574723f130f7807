"""The one place that wires the manager: database, API routers, auth, metrics, the server.

``create_app(settings, database)`` builds the ASGI app (tests drive it in-process);
``serve(settings, env, stop=..., on_ready=...)`` opens (and migrates) the database, binds
the listening socket (port 0 works) and runs uvicorn until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DataError, IntegrityError

from damselfly.config.base import split_host_port
from damselfly.config.manager import ManagerSettings
from damselfly.core.errors import ConfigError
from damselfly.manager import console
from damselfly.manager.api import api_router
from damselfly.manager.auth import PrincipalCache
from damselfly.manager.db.database import Database, open_database
from damselfly.manager.metrics import ManagerMetrics

log = logging.getLogger("damselfly.manager")


def create_app(settings: ManagerSettings, database: Database) -> FastAPI:
    app = FastAPI(
        title="damselfly manager", version="1", docs_url=None, redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )  # fmt: skip
    app.state.settings = settings
    app.state.database = database
    app.state.principals = PrincipalCache()
    app.state.metrics = ManagerMetrics(database, settings)
    app.include_router(api_router())
    app.include_router(console.router)
    app.add_exception_handler(IntegrityError, _conflict)
    app.add_exception_handler(DataError, _unstorable)
    app.add_middleware(_RequestCounter, counter=app.state.metrics.requests)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body = generate_latest(app.state.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "conflicts with an existing row"}, status_code=409)


async def _unstorable(_request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL refuses some values SQLite takes (a NUL character in text, ...)."""
    detail = "a value the database cannot store (e.g. a NUL character)"
    return JSONResponse({"detail": detail}, status_code=422)


class _RequestCounter:
    """Counts answers by route template (not raw path: ids would explode the labels)."""

    def __init__(self, app: Any, counter: Any) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def record_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.counter.labels(_route_template(scope), str(status[0])).inc()


def _route_template(scope: Any) -> str:
    """``/api/v1/members/{member_id}/keepalive``: the path with its parameters put back."""
    if scope.get("route") is None:
        return "unmatched"
    segments = scope["path"].split("/")
    names = {str(value): name for name, value in scope.get("path_params", {}).items()}
    return "/".join(f"{{{names[part]}}}" if part in names else part for part in segments)


@dataclass
class RunningManager:
    address: str
    app: FastAPI


async def serve(
    settings: ManagerSettings,
    env: Mapping[str, str],
    *,
    stop: asyncio.Event,
    on_ready: Callable[[RunningManager], None] | None = None,
) -> None:
    database = await asyncio.to_thread(open_database, settings.resolved_database_url(env))
    try:
        app = create_app(settings, database)
        listener = _bind(settings.listen)
        host, port = listener.getsockname()[:2]
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        server = _QuietServer(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        if on_ready is not None:  # the socket already listens: connections wait in its backlog
            on_ready(RunningManager(f"{host}:{port}", app))
        await _first(stop.wait(), serving)
        server.should_exit = True
        await serving
    finally:
        database.close()


class _QuietServer(uvicorn.Server):
    """Leaves signals to the caller, who owns ``stop``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(listen: str) -> socket.socket:
    host, port = split_host_port(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ConfigError(f"listen {listen}: {exc.strerror or exc}") from exc
    listener.listen(1024)
    listener.setblocking(False)
    return listener


async def _first(*awaitables: Any) -> None:
    tasks = [asyncio.ensure_future(item) for item in awaitables]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        if task is not tasks[-1]:
            task.cancel()
