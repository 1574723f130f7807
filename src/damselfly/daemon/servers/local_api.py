"""dfdaemon's local API: HTTP over a unix socket, for dfget (and later dfctl).

Routes and events are in ``protocol/local_api.py``; the contract is ``docs/p2p.md``.

- The socket is created with its final mode (0600, or 0660 and the configured group) before
  anyone can connect (``unix_socket.bind_unix_socket``).
- ``POST /v1/downloads`` is served only to a caller running as the daemon's own user, or root
  (``SO_PEERCRED``): the daemon writes the output itself, so it must never write where the
  caller could not. Anyone else gets ``403`` with ``code: uid_mismatch`` (dfget then downloads
  by itself).
- A download runs in a task owned by its request: the runner fills the ``EventBuffer``, a
  writer streams its events as NDJSON; when the client disconnects, aiohttp cancels the
  handler (``handler_cancellation``) and with it the download. A failed write does the same.
- At most ``calls_per_caller`` downloads run at once per calling uid (``429`` with
  ``code: too_many_downloads`` beyond): one local user cannot tie up the daemon's workers.
- Secrets in a request (headers, tokens, ``env``) are never logged: only the redacted URL.
- A request for a scheme with options (hf://, modelscope://, s3://, ...) must carry them
  (``source``, resolved by the caller): without, it is refused (``400``) rather than resolved
  here, which would read the daemon user's own hub logins (``require_sent_source``).

For tests, ``python -m damselfly.testing.local_api_server`` runs the API alone (no P2P
engine, ``StoreRunner`` reading origins).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from aiohttp import hdrs, web

from damselfly._version import __version__
from damselfly.core.error_groups import group_error
from damselfly.core.errors import EXIT_FAILURE, ConfigError, DamselflyError
from damselfly.core.lifecycle import AsyncResource
from damselfly.core.urls import parse_url
from damselfly.daemon.servers.event_stream import PROGRESS_INTERVAL, EventBuffer
from damselfly.daemon.servers.unix_socket import (
    PeerCredentials,
    bind_unix_socket,
    peer_credentials,
    remove_socket,
)
from damselfly.download.events import DownloadObserver
from damselfly.download.request import DownloadRequest, require_sent_source
from damselfly.protocol import local_api as wire

log = logging.getLogger(__name__)

OWNER_ONLY_MODE = 0o600
GROUP_MODE = 0o660
SHUTDOWN_TIMEOUT = 2.0  # seconds running downloads get when the daemon stops


class DownloadRunner(Protocol):
    """What runs a request (``engine/runner.StoreRunner``)."""

    async def run(self, request: DownloadRequest, observer: DownloadObserver) -> wire.RunResult:
        """Run the whole request; raise a ``DamselflyError`` on failure."""
        ...


class LocalApi(AsyncResource):
    def __init__(
        self,
        socket_path: Path,
        runner: DownloadRunner,
        *,
        mode: int | None = None,
        group: str | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
        calls_per_caller: int = 16,
        routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        self._calls_per_caller = calls_per_caller
        self._calls: dict[int, int] = {}  # running downloads by caller uid
        self._path = socket_path
        self._routes = routes  # more routes (servers/task_api.py), registered at start
        self._runner = runner
        self._mode = mode if mode is not None else GROUP_MODE if group else OWNER_ONLY_MODE
        self._group = group
        self._interval = progress_interval
        self._app_runner: web.AppRunner | None = None
        self._inode: int | None = None
        self._active = 0

    @property
    def path(self) -> Path:
        return self._path

    @property
    def active_downloads(self) -> int:
        return self._active

    async def start(self) -> None:
        sock = bind_unix_socket(self._path, mode=self._mode, gid=_group_id(self._group))
        self._inode = os.stat(self._path).st_ino
        app = web.Application()
        app.router.add_get(wire.HEALTH_PATH, self._health)
        app.router.add_post(wire.DOWNLOADS_PATH, self._download)
        if self._routes is not None:
            self._routes(app)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        self._app_runner = runner
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await self.aclose()
            raise
        log.info("local API listening on %s (mode %o)", self._path, self._mode)

    async def aclose(self) -> None:
        runner, self._app_runner = self._app_runner, None
        if runner is not None:
            await runner.cleanup()
        if self._inode is not None:
            remove_socket(self._path, self._inode)
            self._inode = None

    # -- routes ------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "pid": os.getpid()})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        caller = peer_credentials(request.transport)
        if not _same_user(caller):
            message = "dfdaemon serves downloads only to its own user; download without it"
            return _refusal(403, message, wire.UID_MISMATCH)
        assert caller is not None
        if self._calls.get(caller.uid, 0) >= self._calls_per_caller:
            message = f"{self._calls_per_caller} downloads of this user are running already"
            return _refusal(429, message, wire.TOO_MANY_DOWNLOADS)
        self._calls[caller.uid] = self._calls.get(caller.uid, 0) + 1
        try:
            return await self._serve_download(request, caller)
        finally:
            self._calls[caller.uid] -= 1
            if not self._calls[caller.uid]:
                del self._calls[caller.uid]

    async def _serve_download(
        self, request: web.Request, caller: PeerCredentials
    ) -> web.StreamResponse:
        try:
            job = DownloadRequest.from_json(await request.read())
            require_sent_source(job)
        except DamselflyError as exc:
            return _refusal(400, str(exc), wire.BAD_REQUEST)
        log.info("download for %s: %s", caller, job.redacted_url())
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: wire.NDJSON_CONTENT_TYPE})
        events = EventBuffer(self._interval)
        try:
            await response.prepare(request)
        except ConnectionError:  # dfget gave up (or was killed) before our headers went out
            _client_left(job, events)
            return response
        self._active += 1
        try:
            await self._stream(job, events, response)
        except asyncio.CancelledError:
            _client_left(job, events)
            raise
        except ConnectionError:
            _client_left(job, events)
        finally:
            self._active -= 1
        return response

    async def _stream(
        self, job: DownloadRequest, events: EventBuffer, response: web.StreamResponse
    ) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._run(job, events))
                group.create_task(_write_events(events, response))
        except BaseExceptionGroup as errors:
            raise group_error(errors) from None

    async def _run(self, job: DownloadRequest, events: EventBuffer) -> None:
        events.close(await self._outcome(job, events))

    async def _outcome(self, job: DownloadRequest, events: EventBuffer) -> wire.Event:
        """The run's last event: its result, or its failure as one line (as dfget standalone
        would say it: a task group's errors become one, no class names)."""
        try:
            try:
                return await self._runner.run(job, events)
            except BaseExceptionGroup as errors:
                raise group_error(errors) from None
        except DamselflyError as exc:
            message = _scrubbed(str(exc), job)
            log.warning("download of %s failed: %s", job.redacted_url(), message)
            return wire.Failed(message, exc.exit_code)
        except Exception as exc:
            log.error("download of %s: internal error %s", job.redacted_url(), type(exc).__name__)
            log.debug("internal error", exc_info=True)
            told = _scrubbed(str(exc), job) if str(exc) else "see the dfdaemon log"
            return wire.Failed(f"dfdaemon internal error: {told}", EXIT_FAILURE)


def _client_left(job: DownloadRequest, events: EventBuffer) -> None:
    if events.done:  # the result went out; dfget hung up before the end of the stream
        log.debug("client closed after the result of %s", job.redacted_url())
    else:
        log.info("client went away: download of %s cancelled", job.redacted_url())


async def _write_events(events: EventBuffer, response: web.StreamResponse) -> None:
    while not events.done:
        await events.wait_ready()
        batch = events.take()
        if batch:
            await response.write(b"".join(wire.encode_event(e) for e in batch))
    await response.write_eof()


def _same_user(caller: PeerCredentials | None) -> bool:
    """The daemon's own uid, or root (who may write anywhere the daemon may)."""
    return caller is not None and caller.uid in (os.geteuid(), 0)


def _refusal(status: int, message: str, code: str) -> web.Response:
    return web.json_response(wire.error_body(message, code), status=status)


def _scrubbed(text: str, job: DownloadRequest) -> str:
    """One line, with the request's URL (as given, or as our errors print it) replaced by its
    form without signatures: a signed query must not reach a log."""
    line = " ".join(text.split())
    with contextlib.suppress(DamselflyError):
        line = line.replace(parse_url(job.url).redacted(), job.redacted_url())
    return line.replace(job.url, job.redacted_url())


def _group_id(group: str | None) -> int | None:
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"local API socket group {group!r}: no such group") from None
