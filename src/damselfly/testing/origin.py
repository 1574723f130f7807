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
HEAD, wait before answering, throttle the body, add response headers. ``replace_after`` swaps
a file for another version once N body bytes of it went out (each answer is served whole from
the version it started with, as a real origin does), with or without new validators. Every
request's method,
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from aiohttp import web

from damselfly.core.lifecycle import AsyncResource
from damselfly.testing.origin_bodies import (
    UNSATISFIABLE,
    Behaviour,
    Blob,
    CountingFileResponse,
    blob_headers,
    body_chunks,
    cut_connection,
    fast_path_ok,
    if_range_holds,
    parse_range_header,
    retry_after_header,
)

__all__ = ["UNSATISFIABLE", "Behaviour", "OriginServer", "RecordedRequest", "parse_range_header"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded, as the files are keyed
    headers: tuple[tuple[str, str], ...]
    raw_path: str = ""  # as sent on the request line, with the query

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass
class _Counters:
    requests: list[RecordedRequest] = field(default_factory=list)
    bytes_by_path: Counter[str] = field(default_factory=Counter)
    failures_by_path: Counter[str] = field(default_factory=Counter)


class OriginServer(AsyncResource):
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
        self._blobs: dict[str, Blob] = {}
        # path -> [(after bytes, new blob)], in the order they take effect
        self._replacements: dict[str, list[tuple[int, Blob]]] = {}
        self._bytes_at_head: Counter[str] = Counter()  # bytes_by_path at the path's last HEAD
        self._armed: set[str] = set()  # paths HEADed since their last swap
        self._behaviours: dict[str | None, Behaviour] = {}
        self._counters = _Counters()
        self._runner: web.AppRunner | None = None
        for path, data in (files or {}).items():
            self.put(path, data)

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

    def put(
        self, path: str, data: bytes, *, etag: bool = True, dated: bool = True, when: float = 0
    ) -> str:
        """Serve ``data`` at ``path`` (from memory; wins over the directory); returns the URL.
        ``etag=False`` sends no ETag, ``dated=False`` no Last-Modified (``when``, epoch
        seconds, else now)."""
        self._blobs[_normal_path(path)] = _blob(data, etag, dated, when or time.time())
        return self.url(path)

    def replace_after(
        self,
        path: str,
        after_length: int,
        data: bytes,
        *,
        etag: bool = True,
        dated: bool = True,
    ) -> None:
        """Serve ``data`` at ``path`` from the first request that starts once ``after_length``
        body bytes of ``path`` went out since the first HEAD of it after the previous swap
        (a client starting: each swap waits for a HEAD after the previous one, so a queued
        second swap hits the client's restart). ``etag``/``dated`` as in ``put``; the new date
        is an hour after now."""
        queued = self._replacements.setdefault(_normal_path(path), [])
        when = time.time() + 3600 * (len(queued) + 1)
        queued.append((after_length, _blob(data, etag, dated, when)))

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
        if request.method == "HEAD" and path not in self._armed:
            # the first HEAD after a swap arms the next one; later HEADs (other clients
            # starting) do not move its threshold, or a late HEAD could postpone it past the end
            self._bytes_at_head[path] = self._counters.bytes_by_path[path]
            self._armed.add(path)
        blob = self._find(path)
        if blob is None:
            return web.Response(status=404, text="not found\n")
        if fast_path_ok(blob, behaviour):
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
            return web.Response(status=behaviour.status, headers=retry_after_header(behaviour))
        if self._counters.failures_by_path[path] < behaviour.fail_first:
            self._counters.failures_by_path[path] += 1
            return web.Response(status=behaviour.fail_status, headers=retry_after_header(behaviour))
        if behaviour.redirect_to is not None:
            location = {"Location": behaviour.redirect_to}
            return web.Response(status=behaviour.redirect_status, headers=location)
        if request.method == "HEAD" and behaviour.head_status is not None:
            return web.Response(status=behaviour.head_status)
        return None

    def _find(self, path: str) -> Blob | None:
        queued = self._replacements.get(path)
        sent = self._counters.bytes_by_path[path] - self._bytes_at_head[path]
        if queued and path in self._armed and sent >= queued[0][0]:
            self._blobs[path] = queued.pop(0)[1]
            self._armed.discard(path)
        blob = self._blobs.get(path)
        if blob is not None or self._root is None:
            return blob
        candidate = (self._root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self._root) or not candidate.is_file():
            return None
        stat = candidate.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        modified = formatdate(stat.st_mtime, usegmt=True)
        return Blob(stat.st_size, etag, modified, path=candidate)

    def _send_file(self, path: str, blob: Blob, behaviour: Behaviour) -> web.StreamResponse:
        assert blob.path is not None

        def count(sent: int) -> None:
            self._counters.bytes_by_path[path] += sent

        response = CountingFileResponse(blob.path, count)
        response.headers.update(behaviour.headers)
        return response

    async def _send_blob(
        self, request: web.Request, path: str, blob: Blob, behaviour: Behaviour
    ) -> web.StreamResponse:
        honour = not behaviour.ignore_range and if_range_holds(request, blob)
        wanted = request.headers.get("Range") if honour else None
        parsed = parse_range_header(wanted, blob.size)
        if isinstance(parsed, str):  # UNSATISFIABLE
            headers = {"Content-Range": f"bytes */{blob.size}"}
            return web.Response(status=416, headers=headers)
        start, length = (0, blob.size) if parsed is None else parsed
        response = web.StreamResponse(status=200 if parsed is None else 206)
        response.headers.update(blob_headers(blob, behaviour, start, length, parsed is not None))
        response.content_length = length
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        limit = length if behaviour.short_body is None else min(length, behaviour.short_body)
        async for chunk in body_chunks(blob, start, limit, behaviour.rate):
            await response.write(chunk)
            self._counters.bytes_by_path[path] += len(chunk)
        if limit < length:
            cut_connection(request)
            return response
        await response.write_eof()
        return response


def _blob(data: bytes, etag: bool, dated: bool, when: float) -> Blob:
    tag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"' if etag else None
    modified = formatdate(when, usegmt=True) if dated else None
    return Blob(len(data), tag, modified, data=bytes(data))


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
