"""The CDN half of the loopback Hugging Face hub, and the byte serving both halves share.

The real hub answers ``/resolve`` for an LFS file with a 302 to a signed, expiring URL on
another host (``cdn-lfs.hf.co``, ``cas-bridge.xethub.hf.co``). ``LocalCdn`` is that host: its
own aiohttp app on its own port, serving ``/repos/<aa>/<bb>/<repo hash>/<sha256>`` with

- a signature check (HMAC over path and expiry, CloudFront-style ``Expires``, ``Signature``,
  ``Key-Pair-Id`` query parameters; ``rotate_key()`` invalidates every URL handed out so far),
  answering 403 for a bad or expired signature;
- a 400 for any request that carries ``Authorization`` (a signed URL plus a hub token is a
  token leak; the real CDNs refuse "more than one auth mechanism" as well);
- single byte ranges (206 + ``Content-Range``; 416 when unsatisfiable).

``HubStats`` counts what both halves served, so tests assert on requests per route, per file,
bytes, and Authorization headers seen by the CDN.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from damselfly.demo.hub_repos import RepoFile

Clock = Callable[[], float]


@dataclass(frozen=True)
class RequestRecord:
    server: str  # "hub" | "cdn"
    method: str
    path: str  # without the query string
    header_names: tuple[str, ...]  # lower-case, sorted; values never kept
    range: str | None
    authorized: bool  # carried an Authorization header


@dataclass
class HubStats:
    requests: Counter[str] = field(default_factory=Counter)  # route -> count
    resolve_hits: Counter[str] = field(default_factory=Counter)  # file path -> /resolve count
    cdn_hits: Counter[str] = field(default_factory=Counter)  # file path -> CDN count
    bytes_served: Counter[str] = field(default_factory=Counter)  # "hub" | "cdn" -> bytes
    cdn_authorization_rejected: int = 0
    log: list[RequestRecord] = field(default_factory=list)

    def record(self, server: str, route: str, request: web.Request) -> None:
        self.requests[route] += 1
        names = tuple(sorted({name.lower() for name in request.headers}))
        authorized = "Authorization" in request.headers
        path = request.raw_path.split("?", 1)[0]
        entry = RequestRecord(
            server, request.method, path, names, request.headers.get("Range"), authorized
        )
        self.log.append(entry)


class UnsatisfiableRange(Exception):
    pass


def byte_window(request: web.Request, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a single-range request asks for, ``None`` for the whole file."""
    if "Range" not in request.headers:
        return None
    try:
        wanted = request.http_range
    except ValueError as exc:
        raise UnsatisfiableRange from exc
    start, stop = wanted.start, wanted.stop
    if start is None and stop is None:
        return None
    if start is not None and start < 0:  # suffix range: the last -start bytes
        start, stop = max(0, size + start), size
    start = start or 0
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        raise UnsatisfiableRange
    return start, stop


async def serve_file(
    request: web.Request,
    file: RepoFile,
    headers: dict[str, str],
    stats: HubStats,
    server: str,
    *,
    honour_ranges: bool = True,
) -> web.StreamResponse:
    """Answer GET/HEAD for ``file`` with ranges; counts the bytes sent."""
    try:
        window = byte_window(request, file.size) if honour_ranges else None
    except UnsatisfiableRange:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{file.size}"})
    start, stop = window or (0, file.size)
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if request.method == "GET" and server == "cdn" and isinstance(file.source, Path):
        stats.bytes_served[server] += stop - start
        return web.FileResponse(file.source, headers=headers)  # sendfile; aiohttp does ranges
    status = 200
    if window is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{file.size}"
    if request.method == "HEAD":
        headers["Content-Length"] = str(stop - start)
        return web.Response(status=status, headers=headers)
    stats.bytes_served[server] += stop - start
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = stop - start
    await response.prepare(request)
    for offset in range(start, stop, 1024 * 1024):
        await response.write(file.read(offset, min(1024 * 1024, stop - offset)))
    await response.write_eof()
    return response


class LocalCdn:
    """Signed-URL blob server; ``url_for`` is called by the hub when it answers a 302."""

    __test__ = False  # not a pytest test class

    def __init__(self, stats: HubStats, *, url_ttl: float = 3600.0, clock: Clock = time.time):
        self.stats = stats
        self.url_ttl = url_ttl
        self._clock = clock
        self._key = secrets.token_bytes(16)
        self._blobs: dict[str, RepoFile] = {}  # url path -> file
        self.base_url = ""  # set once the server listens

    def rotate_key(self) -> None:
        """Invalidate every signed URL handed out so far (the next request gets a 403)."""
        self._key = secrets.token_bytes(16)

    def url_for(self, repo_key: str, file: RepoFile) -> str:
        assert file.sha256 is not None
        repo_hash = hashlib.sha256(repo_key.encode()).hexdigest()
        path = f"/repos/{repo_hash[:2]}/{repo_hash[2:4]}/{repo_hash}/{file.sha256}"
        self._blobs[path] = file
        expires = int(self._clock() + self.url_ttl)
        query = {"Expires": str(expires), "Signature": self._sign(path, expires)}
        query["Key-Pair-Id"] = "TESTKEYPAIR"
        return f"{self.base_url}{path}?{urlencode(query)}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), "sha256").hexdigest()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.record("cdn", f"{request.method} cdn", request)
        if "Authorization" in request.headers:
            self.stats.cdn_authorization_rejected += 1
            return _xml_error(400, "InvalidArgument", "Only one auth mechanism allowed")
        if request.method not in ("GET", "HEAD"):
            return _xml_error(405, "MethodNotAllowed", "Method not allowed")
        file = self._blobs.get(request.path)
        if file is None:
            return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
        problem = self._check_signature(request)
        if problem:
            return _xml_error(403, "AccessDenied", problem)
        self.stats.cdn_hits[file.path] += 1
        headers = {"ETag": f'"{file.sha256}"'}
        return await serve_file(request, file, headers, self.stats, "cdn")

    def _check_signature(self, request: web.Request) -> str:
        expires_text = request.query.get("Expires", "")
        signature = request.query.get("Signature", "")
        if not expires_text.isdigit() or not signature:
            return "Missing signature"
        if not hmac.compare_digest(signature, self._sign(request.path, int(expires_text))):
            return "Invalid signature"
        if int(expires_text) < self._clock():
            return "Request has expired"
        return ""


def _xml_error(status: int, code: str, message: str) -> web.Response:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return web.Response(status=status, text=body, content_type="application/xml")
