"""The local API wire between dfget and dfdaemon (a unix socket): paths and NDJSON events.

Pure code, shared by the server (``daemon/servers/local_api.py``) and the client
(``cli/daemon_client.py``); the contract is ``docs/p2p.md``, "Local API":

- ``GET /v1/health`` -> ``{"version": ..., "pid": ...}``.
- ``POST /v1/downloads`` with a ``DownloadRequest`` as JSON -> ``200`` and NDJSON, one event
  per line: ``file_started`` / ``progress`` (batched) / ``file_finished`` for each file, then
  exactly one ``result`` or ``error`` as the last line. Refusals before the stream starts are
  a JSON ``{"error": <message>, "code": <code>}`` with a 4xx status (``403`` + ``uid_mismatch``
  for a caller running as another user).

``decode_event`` raises ``ProtocolError`` on anything malformed. Events are ``NamedTuple``s,
not dataclasses: dfget imports this module, and ``dataclasses`` (with ``inspect``) plus making
the classes was ~10 ms of its start-up (issue 15: small files, the swarm's first request).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from damselfly.core.errors import ProtocolError

HEALTH_PATH = "/v1/health"
DOWNLOADS_PATH = "/v1/downloads"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
UID_MISMATCH = "uid_mismatch"
BAD_REQUEST = "bad_request"
TOO_MANY_DOWNLOADS = "too_many_downloads"  # 429: the caller's cap of running downloads


class FileStarted(NamedTuple):
    name: str
    total: int | None  # None: the origin gave no length
    held: int  # bytes already in the daemon's store


class Progress(NamedTuple):
    name: str
    bytes: int  # more bytes verified and stored since the last event for this file


class FileFinished(NamedTuple):
    name: str


class RunResult(NamedTuple):
    """How one download request ended well (the ``result`` event)."""

    files: int
    bytes: int  # content length of every file delivered
    source_bytes: int  # read from origins by this run
    peer_bytes: int  # received from other daemons
    reused_bytes: int = 0  # already in the store
    stdout: str = ""  # what dfget prints on stdout (e.g. a hub snapshot path)


class Failed(NamedTuple):
    """How one download request ended badly (the ``error`` event)."""

    message: str  # one line, no secrets
    exit_code: int  # 1 failure, 2 usage


Event = FileStarted | Progress | FileFinished | RunResult | Failed

_NAMES: dict[type[Any], str] = {
    FileStarted: "file_started",
    Progress: "progress",
    FileFinished: "file_finished",
    RunResult: "result",
    Failed: "error",
}
_CLASSES = {name: cls for cls, name in _NAMES.items()}
_OPTIONAL = {"total"}
_TEXT = {"name", "message", "stdout"}  # the fields that are strings; the rest are counts


def encode_event(event: Event) -> bytes:
    body = {"event": _NAMES[type(event)], **event._asdict()}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode_event(line: bytes) -> Event:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"local API: malformed event line ({exc})") from exc
    if not isinstance(data, dict):
        raise ProtocolError("local API: an event must be a JSON object")
    cls = _CLASSES.get(data.pop("event", None))
    if cls is None:
        raise ProtocolError("local API: unknown or missing event name")
    defaults: dict[str, Any] = cls._field_defaults
    values = {name: _value(data, name, defaults) for name in cls._fields}
    event: Event = cls(**values)
    return event


def _value(data: dict[str, Any], name: str, defaults: dict[str, Any]) -> Any:
    if name not in data:
        if name in defaults:
            return defaults[name]
        raise ProtocolError(f"local API: event field {name!r} missing")
    value = data[name]
    if value is None and name in _OPTIONAL:
        return None
    if name in _TEXT:
        if isinstance(value, str):
            return value
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProtocolError(f"local API: event field {name!r} has a bad value")


def error_body(message: str, code: str) -> dict[str, str]:
    return {"error": message, "code": code}
