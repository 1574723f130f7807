"""Checks on what the hub and its CDN answered, for ``HfBackend`` (no I/O).

- ``redirect_target``: a usable absolute http(s) ``Location``.
- ``check_commit``: ``X-Repo-Commit``, when present, is the commit we asked for (a pinned
  download must never get bytes from another commit).
- ``next_page``: the tree's ``Link: <...>; rel="next"``, only to the hub's own origin (a
  listing is untrusted: a link elsewhere would carry the token away).
- ``expected_length``: how many body bytes must arrive; a ranged request answered with the
  wrong range, or with 200 and the whole file, raises ``RangeNotHonouredError`` before a
  single byte is handed out.
- ``object_stat``: a ``ResolvedFile`` as the ``ObjectStat`` callers see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDictProxy

from damselfly.backends import http_headers as hh
from damselfly.backends.base import ObjectStat, RangeNotHonouredError
from damselfly.backends.hf_api import is_git_oid, origin, parse_size
from damselfly.backends.hf_errors import HubCall, protocol_error, timed_out
from damselfly.backends.http_responses import ResponseBody
from damselfly.core.digests import GIT_BLOB_SHA1, Digest
from damselfly.core.errors import BackendError
from damselfly.core.pieces import ByteRange

MAX_JSON_LENGTH = 64 * 1024 * 1024


@dataclass(frozen=True)
class ResolvedFile:
    """Where one file's bytes are, and what the hub said about them."""

    location: str = field(repr=False)  # a signed CDN URL is a capability: not in reprs
    on_hub: bool  # served by the hub itself (send the token) or by a CDN (never)
    commit: str
    content_length: int | None
    supports_ranges: bool
    etag: str | None  # git blob id (hub-served) or sha256 (LFS)
    sha256: str | None


def redirect_target(about: HubCall, current: str, headers: CIMultiDictProxy[str]) -> str:
    location = headers.get("Location", "")
    if not location or not location.isascii() or not location.isprintable():
        raise protocol_error(about, "redirect without a usable Location")
    target = urljoin(current, location)
    if not target.startswith(("http://", "https://")):
        raise protocol_error(about, "redirect to a non-http URL")
    return target


def check_commit(about: HubCall, commit: str, headers: CIMultiDictProxy[str]) -> None:
    served = headers.get("X-Repo-Commit")
    if served and served.lower() != commit:
        raise protocol_error(about, f"hub served commit {served} when {commit} was asked for")


def next_page(about: HubCall, response: aiohttp.ClientResponse) -> str | None:
    link = response.links.get("next")
    if link is None:
        return None
    target = str(link.get("url", ""))
    if origin(target) != origin(about.endpoint):
        raise protocol_error(about, "tree pagination link points to another host")
    return target


def parse_json(about: HubCall, body: bytes) -> object:
    if len(body) > MAX_JSON_LENGTH:
        raise protocol_error(about, "hub answer too large")
    try:
        parsed: object = json.loads(body)
    except ValueError as exc:
        raise protocol_error(about, "hub answered invalid JSON") from exc
    return parsed


def expected_length(
    about: HubCall,
    response: aiohttp.ClientResponse,
    byte_range: ByteRange | None,
    known_length: int | None,
) -> int | None:
    """How many body bytes must arrive; a wrong range raises before any byte is read."""
    declared = parse_size(response.headers.get("Content-Length"))
    if byte_range is None:
        if response.status != 200:
            raise protocol_error(about, f"HTTP {response.status} to a plain GET")
        return declared if declared is not None else known_length
    wanted = f"bytes {byte_range.start}-{byte_range.end - 1}"
    if response.status == 200:
        whole = declared if declared is not None else known_length
        if byte_range.start == 0 and whole == byte_range.length:
            return byte_range.length  # asked for the whole file, got the whole file
        reason = f"asked for {wanted}, the server ignored Range (HTTP 200)"
        raise protocol_error(about, reason, RangeNotHonouredError)
    got = hh.parse_content_range(response.headers.get("Content-Range"))
    if got is None or (got.first, got.length) != (byte_range.start, byte_range.length):
        reason = f"asked for {wanted}, got Content-Range {response.headers.get('Content-Range')}"
        raise protocol_error(about, reason, RangeNotHonouredError)
    return byte_range.length


def object_stat(resolved: ResolvedFile) -> ObjectStat:
    extras = {"hf_commit": resolved.commit, "hf_served_by": "hub" if resolved.on_hub else "cdn"}
    digest = Digest("sha256", resolved.sha256) if resolved.sha256 else None
    if resolved.on_hub and resolved.sha256 is None and is_git_oid(resolved.etag):
        extras["hf_blob_oid"] = str(resolved.etag)
        digest = Digest(GIT_BLOB_SHA1, str(resolved.etag))
    return ObjectStat(
        content_length=resolved.content_length,
        supports_ranges=resolved.supports_ranges,
        etag=resolved.etag,
        content_digest=digest,
        extras=extras,
    )


def why(exc: aiohttp.ClientError) -> str:
    """A short cause that never contains a URL (CDN URLs are signed) or a header."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error.__class__.__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return exc.__class__.__name__


def content_body(
    call: HubCall, response: aiohttp.ClientResponse, target: str, timeout: float
) -> ResponseBody:
    """A file's body from the hub or its CDN (``target``) with ``HfBackend._read``'s errors."""
    on_hub = origin(target) == origin(call.endpoint)

    def cut_short(expected: int | None, received: int) -> BackendError:
        return protocol_error(call, "response body cut short")

    def stalled(received: int) -> BackendError:
        return timed_out(call, target, timeout, hub=on_hub)

    return ResponseBody(response, timeout, cut_short=cut_short, stalled=stalled)
