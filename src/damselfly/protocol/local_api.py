"""The local API wire between dfget and dfdaemon (a unix socket): paths and NDJSON events.

Pure code, shared by the server (``daemon/servers/local_api.py``) and the client
(``cli/daemon_client.py``); the contract is ``docs/p2p.md``, "Local API":

- ``GET /v1/health`` -> ``{"version": ..., "pid": ...}``.
- ``POST /v1/downloads`` with a ``DownloadRequest`` as JSON -> ``200`` and NDJSON, one event
  per line: ``file_started`` / ``progress`` (batched) / ``file_finished`` for each file, then
  exactly one ``result`` or ``error`` as the last line. Refusals before the stream starts are
  a JSON ``{"error": <message>, "code": <code>}`` with a 4xx status (``403`` + ``uid_mismatch``
  for a caller running as another user).

``decode_event`` raises ``ProtocolError`` on anything malformed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from damselfly.core.errors import ProtocolError

HEALTH_PATH = "/v1/health"
DOWNLOADS_PATH = "/v1/downloads"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
UID_MISMATCH = "uid_mismatch"
BAD_REQUEST = "bad_request"
TOO_MANY_DOWNLOADS = "too_many_downloads"  # 429: the caller's cap of running downloads


@dataclass(frozen=True)
class FileStarted:
    name: str
    total: int | None  # None: the origin gave no length
    held: int  # bytes already in the daemon's store


@dataclass(frozen=True)
class Progress:
    name: str
    bytes: int  # more bytes verified and stored since the last event for this file


@dataclass(frozen=True)
class FileFinished:
    name: str


@dataclass(frozen=True)
class RunResult:
    """How one download request ended well (the ``result`` event)."""

    files: int
    bytes: int  # content length of every file delivered
    source_bytes: int  # read from origins by this run
    peer_bytes: int  # received from other daemons
    reused_bytes: int = 0  # already in the store
    stdout: str = ""  # what dfget prints on stdout (e.g. a hub snapshot path)


@dataclass(frozen=True)
class Failed:
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


def encode_event(event: Event) -> bytes:
    body = {"event": _NAMES[type(event)], **dataclasses.asdict(event)}
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
    values = {f.name: _value(data, f) for f in dataclasses.fields(cls)}
    event: Event = cls(**values)
    return event


def _value(data: dict[str, Any], f: dataclasses.Field[Any]) -> Any:
    if f.name not in data:
        if f.default is not dataclasses.MISSING:
            return f.default
        raise ProtocolError(f"local API: event field {f.name!r} missing")
    value = data[f.name]
    if value is None and f.name in _OPTIONAL:
        return None
    if f.type == "str":
        if isinstance(value, str):
            return value
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProtocolError(f"local API: event field {f.name!r} has a bad value")


def error_body(message: str, code: str) -> dict[str, str]:
    return {"error": message, "code": code}
