"""The origin's files, misbehaviours and response bodies (``origin.py`` serves them).

``Behaviour`` is what a test switches on; ``Blob`` one file (bytes or a path) with its
validators; the rest turns a blob, a range and a behaviour into headers and body chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

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
class Blob:
    size: int
    etag: str | None  # None: the origin sends no ETag
    last_modified: str | None  # None: no Last-Modified
    data: bytes | None = None
    path: Path | None = None


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


class CountingFileResponse(web.FileResponse):
    """``FileResponse`` (sendfile) that reports the body bytes it sent."""

    def __init__(self, path: Path, on_sent: Callable[[int], None]) -> None:
        super().__init__(path, chunk_size=WRITE_CHUNK_LENGTH)
        self._on_sent = on_sent

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if request.method == "GET" and self.status in (200, 206):
            self._on_sent(self.content_length or 0)
        return writer


def fast_path_ok(blob: Blob, behaviour: Behaviour) -> bool:
    plain = not behaviour.ignore_range and behaviour.short_body is None and behaviour.rate is None
    return blob.path is not None and plain


def blob_headers(
    blob: Blob, behaviour: Behaviour, start: int, length: int, ranged: bool
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/octet-stream"})
    if blob.etag is not None:
        headers["ETag"] = blob.etag
    if blob.last_modified is not None:
        headers["Last-Modified"] = blob.last_modified
    if not behaviour.ignore_range:
        headers["Accept-Ranges"] = "bytes"
    if ranged:
        headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{blob.size}"
    headers.update(behaviour.headers)
    return headers


async def body_chunks(
    blob: Blob, start: int, length: int, rate: int | None
) -> AsyncIterator[bytes]:
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


def if_range_holds(request: web.Request, blob: Blob) -> bool:
    """RFC 9110 13.1.5: serve the range only if ``If-Range`` (when sent) names this version."""
    wanted = request.headers.get("If-Range")
    return wanted is None or wanted in (blob.etag, blob.last_modified)


def cut_connection(request: web.Request) -> None:
    """Close the socket mid-body (what a crashed or killed origin looks like)."""
    transport = request.transport
    if transport is not None:
        transport.close()


def retry_after_header(behaviour: Behaviour) -> dict[str, str]:
    return {} if behaviour.retry_after is None else {"Retry-After": behaviour.retry_after}
