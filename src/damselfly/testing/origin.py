"""A real HTTP origin for tests and benchmarks, with switchable misbehaviours.

``OriginServer`` serves files from a directory and/or an in-memory ``{path: bytes}`` map over
real sockets on 127.0.0.1 (port 0 by default), with HEAD and GET, single-range 206 answers,
``ETag``, ``Last-Modified`` and ``Accept-Ranges: bytes``. It counts what it serves, so a test
can assert that the origin sent each file about once::

    async with OriginServer(files={"/model.bin": data}) as origin:
        url = origin.url("/model.bin")
        ...
        assert origin.bytes_served_for("/model.bin") == len(data)

Misbehaviours are a frozen ``Behaviour`` set for one path or for all paths
(``origin.set_behaviour(Behaviour(ignore_range=True), "/model.bin")``): ignore ``Range``,
close the connection after N body bytes, fail the first K requests with 503/429 and
``Retry-After``, require a bearer token, redirect elsewhere, answer a fixed status, refuse
HEAD, wait before answering, throttle the body, add response headers. Every request's method,
path and headers are recorded (``origin.requests``) so tests can check what arrived.

Unmodified files from the directory go out through ``web.FileResponse`` (``sendfile``), which
serves a 1 GiB file over loopback at GB/s. Run a directory server for benchmarks with::

    python -m damselfly.testing.origin --root DIR [--host 127.0.0.1] [--port N]

It prints ``serving DIR at http://HOST:PORT`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal
import ssl
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from types import TracebackType

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

WRITE_CHUNK_LENGTH = 1024 * 1024
UNSATISFIABLE = "unsatisfiable"


@dataclass(frozen=True)
class Behaviour:
    """How the origin (mis)behaves for a path; the default is a well-behaved server."""

    ignore_range: bool = False  # answer 200 with the whole body even when Range is sent
    short_body: int | None = None  # close the connection after this many body bytes
    fail_first: int = 0  # answer the first K requests with fail_status
    fail_status: int = 503
    retry_after: str | None = None  # Retry-After value on failures (seconds or HTTP-date)
    require_token: str | None = None  # demand "Authorization: Bearer <token>" (else 401)
    redirect_to: str | None = None  # answer redirect_status with this Location
    redirect_status: int = 302
    status: int | None = None  # always answer this status, no body
    head_status: int | None = None  # answer HEAD with this status (e.g. 405)
    delay: float = 0.0  # seconds to wait before answering
    rate: int | None = None  # throttle the body to this many bytes per second
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded, as the files are keyed
    headers: tuple[tuple[str, str], ...]
    raw_path: str = ""  # as sent on the request line, with the query

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass(frozen=True)
class _Blob:
    size: int
    etag: str
    last_modified: str
    data: bytes | None = None
    path: Path | None = None


@dataclass
class _Counters:
    requests: list[RecordedRequest] = field(default_factory=list)
    bytes_by_path: Counter[str] = field(default_factory=Counter)
    failures_by_path: Counter[str] = field(default_factory=Counter)


class OriginServer:
    """``async with OriginServer(root=..., files=...) as origin:`` -> ``origin.url(path)``."""

    def __init__(
        self,
        root: str | Path | None = None,
        files: Mapping[str, bytes] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._root = Path(root).resolve() if root is not None else None
        self._host, self._port = host, port
        self._ssl_context = ssl_context
        self._blobs: dict[str, _Blob] = {}
        self._behaviours: dict[str | None, Behaviour] = {}
        self._counters = _Counters()
        self._runner: web.AppRunner | None = None
        for path, data in (files or {}).items():
            self.put(path, data)

    async def __aenter__(self) -> OriginServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # --- addresses and content ---

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    def url(self, path: str) -> str:
        return self.base_url + _normal_path(path)

    def put(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path`` (from memory; wins over the directory); returns the URL."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        modified = formatdate(time.time(), usegmt=True)
        self._blobs[_normal_path(path)] = _Blob(len(data), etag, modified, data=bytes(data))
        return self.url(path)

    def remove(self, path: str) -> None:
        self._blobs.pop(_normal_path(path), None)

    # --- misbehaviour ---

    def set_behaviour(self, behaviour: Behaviour, path: str | None = None) -> None:
        """Apply ``behaviour`` to ``path``, or to every path without its own (``None``)."""
        key = None if path is None else _normal_path(path)
        self._behaviours[key] = behaviour
        self._counters.failures_by_path.pop(key or "", None)

    def clear_behaviours(self) -> None:
        self._behaviours.clear()
        self._counters.failures_by_path.clear()

    # --- statistics ---

    @property
    def requests(self) -> Sequence[RecordedRequest]:
        return tuple(self._counters.requests)

    def request_count(self, path: str | None = None, method: str | None = None) -> int:
        wanted = None if path is None else _normal_path(path)
        return sum(
            1
            for r in self._counters.requests
            if (wanted is None or r.path == wanted) and (method is None or r.method == method)
        )

    @property
    def bytes_served(self) -> int:
        """Body bytes handed to the socket, over all paths."""
        return sum(self._counters.bytes_by_path.values())

    def bytes_served_for(self, path: str) -> int:
        return self._counters.bytes_by_path[_normal_path(path)]

    def reset_stats(self) -> None:
        self._counters = _Counters()

    # --- request handling ---

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = _normal_path(request.path)
        self._counters.requests.append(
            RecordedRequest(request.method, path, tuple(request.headers.items()), request.raw_path)
        )
        behaviour = self._behaviours.get(path) or self._behaviours.get(None) or Behaviour()
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        refusal = self._refusal(request, path, behaviour)
        if refusal is not None:
            return refusal
        blob = self._find(path)
        if blob is None:
            return web.Response(status=404, text="not found\n")
        if _fast_path_ok(blob, behaviour):
            return self._send_file(path, blob, behaviour)
        return await self._send_blob(request, path, blob, behaviour)

    def _refusal(
        self, request: web.Request, path: str, behaviour: Behaviour
    ) -> web.StreamResponse | None:
        """The answer that replaces the file, if this behaviour calls for one."""
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        token = behaviour.require_token
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if behaviour.status is not None:
            return web.Response(status=behaviour.status, headers=_retry_after(behaviour))
        if self._counters.failures_by_path[path] < behaviour.fail_first:
            self._counters.failures_by_path[path] += 1
            return web.Response(status=behaviour.fail_status, headers=_retry_after(behaviour))
        if behaviour.redirect_to is not None:
            location = {"Location": behaviour.redirect_to}
            return web.Response(status=behaviour.redirect_status, headers=location)
        if request.method == "HEAD" and behaviour.head_status is not None:
            return web.Response(status=behaviour.head_status)
        return None

    def _find(self, path: str) -> _Blob | None:
        blob = self._blobs.get(path)
        if blob is not None or self._root is None:
            return blob
        candidate = (self._root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self._root) or not candidate.is_file():
            return None
        stat = candidate.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        modified = formatdate(stat.st_mtime, usegmt=True)
        return _Blob(stat.st_size, etag, modified, path=candidate)

    def _send_file(self, path: str, blob: _Blob, behaviour: Behaviour) -> web.StreamResponse:
        assert blob.path is not None

        def count(sent: int) -> None:
            self._counters.bytes_by_path[path] += sent

        response = _CountingFileResponse(blob.path, count)
        response.headers.update(behaviour.headers)
        return response

    async def _send_blob(
        self, request: web.Request, path: str, blob: _Blob, behaviour: Behaviour
    ) -> web.StreamResponse:
        wanted = None if behaviour.ignore_range else request.headers.get("Range")
        parsed = parse_range_header(wanted, blob.size)
        if isinstance(parsed, str):  # UNSATISFIABLE
            headers = {"Content-Range": f"bytes */{blob.size}"}
            return web.Response(status=416, headers=headers)
        start, length = (0, blob.size) if parsed is None else parsed
        response = web.StreamResponse(status=200 if parsed is None else 206)
        response.headers.update(_blob_headers(blob, behaviour, start, length, parsed is not None))
        response.content_length = length
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        limit = length if behaviour.short_body is None else min(length, behaviour.short_body)
        async for chunk in _chunks(blob, start, limit, behaviour.rate):
            await response.write(chunk)
            self._counters.bytes_by_path[path] += len(chunk)
        if limit < length:
            _cut_connection(request)
            return response
        await response.write_eof()
        return response


def parse_range_header(value: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, length)`` for one satisfiable range, ``UNSATISFIABLE``, or ``None`` (serve
    the whole body: no header, a multi-range or a malformed one, as RFC 9110 allows)."""
    unit, _, spec = (value or "").strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # suffix range: the last N bytes
        suffix = min(int(last), size)
        return (size - suffix, suffix) if suffix else UNSATISFIABLE
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    if last and int(last) < start:
        return None
    end = size - 1 if not last else min(int(last), size - 1)
    return (start, end - start + 1) if start < size else UNSATISFIABLE


class _CountingFileResponse(web.FileResponse):
    """``FileResponse`` (sendfile) that reports the body bytes it sent."""

    def __init__(self, path: Path, on_sent: Callable[[int], None]) -> None:
        super().__init__(path, chunk_size=WRITE_CHUNK_LENGTH)
        self._on_sent = on_sent

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if request.method == "GET" and self.status in (200, 206):
            self._on_sent(self.content_length or 0)
        return writer


def _fast_path_ok(blob: _Blob, behaviour: Behaviour) -> bool:
    plain = not behaviour.ignore_range and behaviour.short_body is None and behaviour.rate is None
    return blob.path is not None and plain


def _blob_headers(
    blob: _Blob, behaviour: Behaviour, start: int, length: int, ranged: bool
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(
        {
            "Content-Type": "application/octet-stream",
            "ETag": blob.etag,
            "Last-Modified": blob.last_modified,
        }
    )
    if not behaviour.ignore_range:
        headers["Accept-Ranges"] = "bytes"
    if ranged:
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{blob.size}"
    headers.update(behaviour.headers)
    return headers


async def _chunks(blob: _Blob, start: int, length: int, rate: int | None) -> AsyncIterator[bytes]:
    step = WRITE_CHUNK_LENGTH if rate is None else max(1, rate // 20)
    handle = None if blob.path is None else await asyncio.to_thread(blob.path.open, "rb")
    try:
        if handle is not None:
            await asyncio.to_thread(handle.seek, start)
        for offset in range(start, start + length, step):
            size = min(step, start + length - offset)
            if handle is None:
                assert blob.data is not None
                yield blob.data[offset : offset + size]
            else:
                yield await asyncio.to_thread(handle.read, size)
            if rate is not None:
                await asyncio.sleep(size / rate)
    finally:
        if handle is not None:
            handle.close()


def _cut_connection(request: web.Request) -> None:
    """Close the socket mid-body (what a crashed or killed origin looks like)."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _retry_after(behaviour: Behaviour) -> dict[str, str]:
    return {} if behaviour.retry_after is None else {"Retry-After": behaviour.retry_after}


def _normal_path(path: str) -> str:
    return "/" + path.lstrip("/")


async def _serve_forever(root: Path, host: str, port: int) -> None:
    async with OriginServer(root=root, host=host, port=port) as origin:
        sys.stdout.write(f"serving {root} at {origin.base_url}\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a directory as a test HTTP origin.")
    parser.add_argument("--root", type=Path, required=True, help="directory to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root}: not a directory")
    asyncio.run(_serve_forever(args.root, args.host, args.port))


if __name__ == "__main__":
    main()
