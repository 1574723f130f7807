"""dfget's side of the local API: hand the download to dfdaemon and replay its progress.

Blocking code on the standard library only (``local_http.py``): a small file handed to the
daemon costs dfget its interpreter start-up and little more. The request arrives ready to send
(``Handoff``: its JSON and the few fields the client itself needs), built from a
``DownloadRequest`` or, for a scheme without options of its own, from plain fields without
the request model (``cli/dfget_jobs.py``).

``run_through_daemon`` answers ``None`` when dfget should download by itself:

- nothing listens at the socket (missing, refused, unusable path): silently (a debug line);
- the daemon runs as another user (it answers ``403 uid_mismatch``, or the socket's mode
  keeps us out): with one warning line on stderr.

A daemon already running as many downloads of this user as it allows (429
``too_many_downloads``) is asked again, with a growing pause, until a slot frees up (bounded
by ``--timeout``, else ``BUSY_WAIT``).

Once the daemon accepts, its events drive the same progress display as a standalone run, and
its answer is the download's: a ``result`` (returned) or an ``error`` (raised as
``DaemonJobError`` with the daemon's exit code). Interrupting dfget (Ctrl-C: a
``KeyboardInterrupt`` in a blocked read) closes the connection, and the daemon cancels the
download.

A daemon that goes away mid-download (killed, crashed: the connection ends before its answer)
is said so in one warning line, and dfget finishes the job by itself (``None``), resuming from
whatever pieces are in its own store; with ``--disable-back-to-source`` it fails instead, since
finishing alone means reading the origin.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from damselfly.cli import local_http
from damselfly.core.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    DamselflyError,
    DownloadTimeoutError,
    ProtocolError,
)
from damselfly.download.events import CountingObserver
from damselfly.protocol import local_api as wire

if TYPE_CHECKING:
    from pathlib import Path

    from damselfly.download.request import DownloadRequest

OTHER_USER_WARNING = "dfget: warning: dfdaemon runs as another user; downloading without it"
GONE_WARNING = "dfget: warning: dfdaemon went away mid-download ({why}); finishing without it"
CONNECT_TIMEOUT = 15.0  # seconds the daemon gets to answer (it may be busy: 2 cores, 50 callers)
BUSY_WAIT = 600.0  # seconds dfget waits for a free download slot of its user (no --timeout)
BUSY_RETRY_DELAY = 0.25  # seconds before asking again, doubled up to BUSY_RETRY_MAX_DELAY
BUSY_RETRY_MAX_DELAY = 2.0
TIMEOUT_SLACK = 30.0  # seconds the daemon gets past the request's own timeout
LOST = ConnectionError


class Handoff(NamedTuple):
    """A download request as it goes to the daemon: its JSON, and what the client needs (a
    ``NamedTuple``: ``dataclasses`` is ~7 ms of a dfget's start-up)."""

    body: bytes
    url: str  # as given: with userinfo or signatures, never for messages (``what``)
    timeout: float | None  # the request's --timeout
    back_to_source: bool

    @classmethod
    def of(cls, request: DownloadRequest) -> Handoff:
        body = request.to_json().encode()
        return cls(body, request.url, request.timeout, request.back_to_source)

    def what(self) -> str:
        """The URL without userinfo or signatures (read only when a message needs it)."""
        from damselfly.core.redact import scrub_url

        return scrub_url(self.url)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Handoff:
        """A request's fields as plain JSON values (``DownloadRequest``'s own JSON, which the
        daemon validates: a scheme without options sends nothing pydantic would write
        differently)."""
        body = json.dumps(fields, separators=(",", ":")).encode()
        return cls(body, fields["url"], fields["timeout"], fields["back_to_source"])


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


def run_through_daemon(
    socket_path: Path,
    handoff: Handoff,
    display: CountingObserver,
    *,
    explicit: bool = False,
) -> wire.RunResult | None:
    """``None``: download standalone. ``explicit`` (the user named the socket with ``-e``):
    a daemon that is not there is worth one warning line."""
    response = _post_when_free(socket_path, handoff, explicit=explicit)
    if response is None:
        return None
    try:
        if not _accepted(response):
            return None
        limit = None if handoff.timeout is None else handoff.timeout + TIMEOUT_SLACK
        response.set_deadline(limit)
        with display:
            return _replay(response, display, handoff, limit)
    except DaemonGoneError as exc:
        _warn_finishing_alone(handoff, exc)
        return None
    finally:
        response.close()


def _warn_finishing_alone(handoff: Handoff, gone: DaemonGoneError) -> None:
    if not handoff.back_to_source:
        raise DaemonJobError(f"{gone}; --disable-back-to-source forbids finishing without it")
    print(GONE_WARNING.format(why=gone.why), file=sys.stderr)


def _post_when_free(
    socket_path: Path, handoff: Handoff, *, explicit: bool
) -> local_http.LocalResponse | None:
    """``_post``, asked again while the daemon runs as many downloads of this user as it
    allows (429 ``too_many_downloads``): a script that starts 50 dfget at once gets 50
    downloads, not 34 refusals. The wait is bounded by ``--timeout``, else ``BUSY_WAIT``."""
    limit = BUSY_WAIT if handoff.timeout is None else handoff.timeout
    give_up = time.monotonic() + limit
    delay = BUSY_RETRY_DELAY
    while True:
        response = _post(socket_path, handoff, explicit=explicit)
        if response is None or response.status != 429 or time.monotonic() + delay > give_up:
            return response
        response.close()
        _debug("dfdaemon runs as many downloads of this user as it allows; waiting")
        time.sleep(delay * (0.5 + _jitter()))  # spread the waiting callers
        delay = min(2 * delay, BUSY_RETRY_MAX_DELAY)


def _debug(message: str, *args: object) -> None:
    """A debug line, importing ``logging`` only here: off the hand-off's path (a daemon that
    is busy or absent), and dfget configures it at once only at ``--log-level debug``."""
    import logging

    logging.getLogger("damselfly.dfget").debug(message, *args)


def _jitter() -> float:
    import random  # only when the daemon is busy (start-up time)

    return random.random()


def _post(
    socket_path: Path, handoff: Handoff, *, explicit: bool
) -> local_http.LocalResponse | None:
    try:
        return local_http.post(
            socket_path,
            wire.DOWNLOADS_PATH,
            handoff.body,
            "application/json",
            timeout=CONNECT_TIMEOUT,
        )
    except PermissionError:
        _warn_other_user()
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
        if explicit:
            sys.stderr.write(
                f"dfget: warning: no dfdaemon answers at {socket_path} ({exc.strerror}); "
                "downloading without it\n"
            )
        else:
            _debug("no dfdaemon at %s (%s); downloading standalone", socket_path, exc.strerror)
    except OSError as exc:  # TimeoutError, a connection lost in the headers, ...
        raise DaemonJobError(f"dfdaemon at {socket_path}: {_describe(exc)}") from exc
    return None


def _accepted(response: local_http.LocalResponse) -> bool:
    if response.status == 200:
        return True
    body = _json_or_empty(response)
    if response.status == 403 and body.get("code") == wire.UID_MISMATCH:
        _warn_other_user()
        return False
    reason = body.get("error") or f"HTTP {response.status}"
    code = EXIT_USAGE if response.status == 400 else EXIT_FAILURE
    raise DaemonJobError(f"dfdaemon refused the download: {reason}", code)


def _replay(
    response: local_http.LocalResponse,
    display: CountingObserver,
    handoff: Handoff,
    limit: float | None,
) -> wire.RunResult:
    started: set[str] = set()
    try:
        for raw in response.lines():
            line = raw.strip()
            if line:
                result = _apply(wire.decode_event(line), display, started)
                if result is not None:
                    return result
    except LOST as exc:
        raise DaemonGoneError(_describe_lost(exc)) from exc
    except TimeoutError as exc:
        raise DownloadTimeoutError(f"{handoff.what()}: timed out after {limit:g} s") from exc
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


def _json_or_empty(response: local_http.LocalResponse) -> dict[str, Any]:
    try:
        body = json.loads(response.read())
    except (OSError, ProtocolError, ValueError):
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
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or "the connection was lost"
