"""HTTP answers checked at the edge: status codes and connection failures as typed errors,
``ObjectStat`` from headers, bodies held to the length and range that were promised."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp

from damselfly.backends import http_headers as hh
from damselfly.backends.base import (
    ObjectStat,
    RangeNotHonouredError,
    SourceVersion,
)
from damselfly.backends.bodies import ChunkBody
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceChangedError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceStatusError,
    SourceTimeoutError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HttpUrl
from damselfly.transport.http_session import next_chunk
from damselfly.transport.origin_body import AdoptedBody, adoptable
from damselfly.transport.piece_wire import WireClosed, WireStalled


def status_error(url: HttpUrl, response: aiohttp.ClientResponse) -> BackendError:
    status = response.status
    reason = one_line(f"HTTP {status} {response.reason or ''}".strip())
    if status in (401, 403):
        return SourceAuthError(url.redacted(), status, reason)
    if status in (404, 410):
        return SourceNotFoundError(url.redacted(), status, reason)
    return SourceStatusError(url.redacted(), status, reason)


def connection_reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return one_line(f"cannot resolve host: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return one_line(f"cannot connect: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection before answering"
    return one_line(f"connection failed: {exc.__class__.__name__}: {exc}")


def one_line(text: str) -> str:
    return " ".join(text.split())


def stat_from_head(response: aiohttp.ClientResponse) -> ObjectStat:
    headers = response.headers
    length = hh.parse_content_length(headers.get("Content-Length"))
    return stat_of(response, length, hh.accepts_byte_ranges(headers.get("Accept-Ranges")))


def stat_of(
    response: aiohttp.ClientResponse, length: int | None, supports_ranges: bool
) -> ObjectStat:
    headers = response.headers
    return ObjectStat(
        content_length=length,
        supports_ranges=supports_ranges,
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        content_digest=hh.content_digest(headers),
        content_type=headers.get("Content-Type"),
    )


def check_version(
    response: aiohttp.ClientResponse, url: HttpUrl, version: SourceVersion | None
) -> None:
    """Refuse an answer from another version than the download started from, before any of
    its bytes is read: another ETag (or date, without one), or another total length."""
    if version is None:
        return
    if response.status == 412:
        raise SourceChangedError(url.redacted(), "HTTP 412 Precondition Failed")
    headers = response.headers
    if response.status == 206:
        content_range = hh.parse_content_range(headers.get("Content-Range"))
        total = content_range.complete_length if content_range else None
    else:
        total = hh.parse_content_length(headers.get("Content-Length"))
    change = version.change_from(headers.get("ETag"), headers.get("Last-Modified"), total)
    if change is not None:
        raise SourceChangedError(url.redacted(), change)


def get_answers(version: SourceVersion | None) -> set[int]:
    """A GET's statuses to read on: 412 too when a version is held (a change, refused)."""
    return {200, 206} if version is None else {200, 206, 412}


def checked_length(
    response: aiohttp.ClientResponse,
    url: HttpUrl,
    byte_range: ByteRange | None,
    version: SourceVersion | None,
) -> int | None:
    """``check_version``, then ``expected_length``: the body bytes to read."""
    check_version(response, url, version)
    return expected_length(response, url, byte_range)


def expected_length(
    response: aiohttp.ClientResponse, url: HttpUrl, byte_range: ByteRange | None
) -> int | None:
    """How many body bytes must arrive; a wrong range raises before any byte is read."""
    declared = hh.parse_content_length(response.headers.get("Content-Length"))
    if byte_range is None:
        if response.status != 200:
            raise SourceProtocolError(url.redacted(), f"HTTP {response.status} to a plain GET")
        return declared
    check_range(response, url, byte_range, declared)
    return byte_range.length


def check_range(
    response: aiohttp.ClientResponse, url: HttpUrl, byte_range: ByteRange, declared: int | None
) -> None:
    wanted = f"bytes {byte_range.start}-{byte_range.end - 1}"
    if response.status == 200:
        if byte_range.start == 0 and declared == byte_range.length:
            return  # asked for the whole file, got the whole file
        raise RangeNotHonouredError(
            url.redacted(), f"asked for {wanted}, server ignored Range (HTTP 200)"
        )
    got = response.headers.get("Content-Range")
    parsed = hh.parse_content_range(got)
    if parsed is None or (parsed.first, parsed.length) != (byte_range.start, byte_range.length):
        raise RangeNotHonouredError(url.redacted(), f"asked for {wanted}, got Content-Range {got}")
    if declared is not None and declared != byte_range.length:
        raise RangeNotHonouredError(
            url.redacted(), f"asked for {wanted}, got Content-Length {declared}"
        )


async def read_body(
    response: aiohttp.ClientResponse, url: HttpUrl, expected: int | None, read_timeout: float
) -> AsyncIterator[bytes]:
    received = 0
    while True:
        chunk = await read_chunk(response, url, expected, received, read_timeout)
        if not chunk:
            break
        received += len(chunk)
        if expected is not None and received > expected:
            raise SourceProtocolError(
                url.redacted(), f"expected {expected} bytes, got more ({received})"
            )
        yield chunk
    if expected is not None and received < expected:
        raise SourceProtocolError(url.redacted(), f"expected {expected} bytes, got {received}")


async def read_chunk(
    response: aiohttp.ClientResponse,
    url: HttpUrl,
    expected: int | None,
    received: int,
    read_timeout: float,
) -> bytes:
    try:
        return await next_chunk(response)
    except TimeoutError as exc:
        reason = f"no data for {read_timeout:g}s after {received} bytes"
        raise SourceTimeoutError(url.redacted(), reason) from exc
    except aiohttp.ClientError as exc:
        wanted = "an unknown number of" if expected is None else str(expected)
        reason = f"expected {wanted} bytes, got {received} (connection closed early)"
        raise SourceProtocolError(url.redacted(), reason) from exc


class ResponseBody:
    """A checked answer's body read into the caller's buffers (``bodies.Body``): from its
    connection (``transport/origin_body.py``) when its length is declared, else through the
    backend's ``chunks``. ``cut_short(expected, received)`` and ``stalled(received)`` make
    the backend's errors. ``start`` with the length to read; ``close`` always (before
    ``start`` it releases the answer)."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        read_timeout: float,
        *,
        cut_short: Callable[[int | None, int], BackendError],
        stalled: Callable[[int], BackendError],
    ) -> None:
        self._response = response
        self._timeout = read_timeout
        self._cut_short = cut_short
        self._stalled = stalled
        self._expected: int | None = None
        self._received = 0
        self._adopted: AdoptedBody | None = None
        self._chunks: ChunkBody | None = None

    def start(self, expected: int | None, chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self._expected = expected
        if expected is None or not adoptable(self._response, expected):
            self._chunks = ChunkBody(chunks())
            return
        try:
            self._adopted = AdoptedBody(self._response, expected)
        except (aiohttp.ClientError, WireClosed) as exc:
            raise self._cut_short(expected, 0) from exc

    @property
    def adopted(self) -> bool:
        """Is the body read from the connection itself (not through aiohttp's chunks)?"""
        return self._adopted is not None

    async def read_into(self, target: memoryview) -> int:
        if self._chunks is not None:
            return await self._chunks.read_into(target)
        if self._adopted is None:
            raise RuntimeError("ResponseBody.start was not called")
        try:
            count = await self._adopted.read_into(target, self._timeout)
        except WireClosed as closed:
            raise self._cut_short(self._expected, self._received + closed.received) from None
        except WireStalled as stalled:
            raise self._stalled(self._received + stalled.received) from None
        self._received += count
        return count

    def close(self) -> None:
        if self._adopted is not None:
            self._adopted.close()
        else:
            self._response.release()


def http_body(response: aiohttp.ClientResponse, url: HttpUrl, read_timeout: float) -> ResponseBody:
    """``ResponseBody`` with ``read_body``'s errors."""

    def cut_short(expected: int | None, received: int) -> BackendError:
        reason = f"expected {expected} bytes, got {received} (connection closed early)"
        return SourceProtocolError(url.redacted(), reason)

    def stalled(received: int) -> BackendError:
        reason = f"no data for {read_timeout:g}s after {received} bytes"
        return SourceTimeoutError(url.redacted(), reason)

    return ResponseBody(response, read_timeout, cut_short=cut_short, stalled=stalled)
