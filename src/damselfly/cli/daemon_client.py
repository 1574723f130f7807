"""dfget's side of the local API: hand the download to dfdaemon and replay its progress.

``run_through_daemon`` answers ``None`` when dfget should download by itself:

- nothing listens at the socket (missing, refused, unusable path): silently (a debug line);
- the daemon runs as another user (it answers ``403 uid_mismatch``, or the socket's mode
  keeps us out): with one warning line on stderr.

A daemon already running as many downloads of this user as it allows (429
``too_many_downloads``) is asked again, with a growing pause, until a slot frees up (bounded
by ``--timeout``, else ``BUSY_WAIT``).

Once the daemon accepts, its events drive the same progress display as a standalone run, and
its answer is the download's: a ``result`` (returned) or an ``error`` (raised as
``DaemonJobError`` with the daemon's exit code). Interrupting dfget (Ctrl-C) closes the
connection, and the daemon cancels the download.

A daemon that goes away mid-download (killed, crashed: the connection ends before its answer)
is said so in one warning line, and dfget finishes the job by itself (``None``), resuming from
whatever pieces are in its own store; with ``--disable-back-to-source`` it fails instead, since
finishing alone means reading the origin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

from damselfly.cli import local_http
from damselfly.core.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    DamselflyError,
    ProtocolError,
)
from damselfly.download.deadline import deadline
from damselfly.download.events import CountingObserver
from damselfly.download.request import DownloadRequest
from damselfly.protocol import local_api as wire

log = logging.getLogger("damselfly.dfget")

OTHER_USER_WARNING = "dfget: warning: dfdaemon runs as another user; downloading without it"
GONE_WARNING = "dfget: warning: dfdaemon went away mid-download ({why}); finishing without it"
CONNECT_TIMEOUT = 15.0  # seconds the daemon gets to answer (it may be busy: 2 cores, 50 callers)
BUSY_WAIT = 600.0  # seconds dfget waits for a free download slot of its user (no --timeout)
BUSY_RETRY_DELAY = 0.25  # seconds before asking again, doubled up to BUSY_RETRY_MAX_DELAY
BUSY_RETRY_MAX_DELAY = 2.0
TIMEOUT_SLACK = 30.0  # seconds the daemon gets past the request's own timeout
LOST = (ConnectionError, asyncio.IncompleteReadError)


class DaemonJobError(DamselflyError):
    """The daemon ran the download and it failed (or the daemon broke the protocol)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DaemonGoneError(DaemonJobError):
    """The connection ended before the daemon's answer: it died or was stopped."""

    def __init__(self, why: str) -> None:
        super().__init__(f"dfdaemon went away mid-download ({why})")
        self.why = why


async def run_through_daemon(
    socket_path: Path,
    request: DownloadRequest,
    display: CountingObserver,
    *,
    explicit: bool = False,
) -> wire.RunResult | None:
    """``None``: download standalone. ``explicit`` (the user named the socket with ``-e``):
    a daemon that is not there is worth one warning line."""
    response = await _post_when_free(socket_path, request, explicit=explicit)
    if response is None:
        return None
    try:
        if not await _accepted(response):
            return None
        limit = None if request.timeout is None else request.timeout + TIMEOUT_SLACK
        with display:
            async with deadline(limit, request.redacted_url()):
                return await _replay(response, display)
    except DaemonGoneError as exc:
        _warn_finishing_alone(request, exc)
        return None
    finally:
        response.close()


def _warn_finishing_alone(request: DownloadRequest, gone: DaemonGoneError) -> None:
    if not request.back_to_source:
        raise DaemonJobError(f"{gone}; --disable-back-to-source forbids finishing without it")
    print(GONE_WARNING.format(why=gone.why), file=sys.stderr)


async def _post_when_free(
    socket_path: Path, request: DownloadRequest, *, explicit: bool
) -> local_http.LocalResponse | None:
    """``_post``, asked again while the daemon runs as many downloads of this user as it
    allows (429 ``too_many_downloads``): a script that starts 50 dfget at once gets 50
    downloads, not 34 refusals. The wait is bounded by ``--timeout``, else ``BUSY_WAIT``."""
    limit = BUSY_WAIT if request.timeout is None else request.timeout
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    delay = BUSY_RETRY_DELAY
    while True:
        response = await _post(socket_path, request, explicit=explicit)
        if response is None or response.status != 429 or loop.time() + delay > give_up:
            return response
        response.close()
        log.debug("dfdaemon runs as many downloads of this user as it allows; waiting")
        await asyncio.sleep(delay * (0.5 + random.random()))  # spread the waiting callers
        delay = min(2 * delay, BUSY_RETRY_MAX_DELAY)


async def _post(
    socket_path: Path, request: DownloadRequest, *, explicit: bool
) -> local_http.LocalResponse | None:
    body = request.to_json().encode()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await local_http.post(socket_path, wire.DOWNLOADS_PATH, body, "application/json")
    except PermissionError:
        _warn_other_user()
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
        if explicit:
            sys.stderr.write(
                f"dfget: warning: no dfdaemon answers at {socket_path} ({exc.strerror}); "
                "downloading without it\n"
            )
        else:
            log.debug("no dfdaemon at %s (%s); downloading standalone", socket_path, exc.strerror)
    except (TimeoutError, *LOST, OSError) as exc:
        raise DaemonJobError(f"dfdaemon at {socket_path}: {_describe(exc)}") from exc
    return None


async def _accepted(response: local_http.LocalResponse) -> bool:
    if response.status == 200:
        return True
    body = await _json_or_empty(response)
    if response.status == 403 and body.get("code") == wire.UID_MISMATCH:
        _warn_other_user()
        return False
    reason = body.get("error") or f"HTTP {response.status}"
    code = EXIT_USAGE if response.status == 400 else EXIT_FAILURE
    raise DaemonJobError(f"dfdaemon refused the download: {reason}", code)


async def _replay(response: local_http.LocalResponse, display: CountingObserver) -> wire.RunResult:
    started: set[str] = set()
    try:
        async for raw in response.lines():
            line = raw.strip()
            if line:
                result = _apply(wire.decode_event(line), display, started)
                if result is not None:
                    return result
    except LOST as exc:
        raise DaemonGoneError(_describe_lost(exc)) from exc
    raise DaemonGoneError("it closed the connection before the download finished")


def _apply(
    event: wire.Event, display: CountingObserver, started: set[str]
) -> wire.RunResult | None:
    if isinstance(event, wire.RunResult):
        return event
    if isinstance(event, wire.Failed):
        raise DaemonJobError(event.message, event.exit_code)
    if isinstance(event, wire.FileStarted):
        started.add(event.name)
        display.file_started(event.name, event.total, event.held)
    elif event.name not in started:
        raise ProtocolError(f"local API: event for {event.name!r} before it started")
    elif isinstance(event, wire.Progress):
        display.bytes_received(event.name, event.bytes)
    else:
        started.discard(event.name)
        display.file_finished(event.name)
    return None


async def _json_or_empty(response: local_http.LocalResponse) -> dict[str, Any]:
    try:
        body = json.loads(await response.read())
    except (*LOST, ProtocolError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _warn_other_user() -> None:
    print(OTHER_USER_WARNING, file=sys.stderr)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or "the connection failed"


def _describe_lost(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection ended in the middle of a message"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or "the connection was lost"
