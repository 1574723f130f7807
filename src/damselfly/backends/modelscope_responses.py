"""ModelScope answers: file bodies held to their promised length and range, JSON envelopes
read without leaking headers, and one-line, token-free messages for errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from damselfly.backends.base import (
    RangeNotHonouredError,
)
from damselfly.backends.http_headers import parse_content_length, parse_content_range
from damselfly.backends.modelscope_listing import Target
from damselfly.core.errors import (
    SourceProtocolError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange

MAX_JSON_LENGTH = 256 * 1024 * 1024


def expected_length(
    target: Target, response: aiohttp.ClientResponse, byte_range: ByteRange | None
) -> int | None:
    """Bytes the body must hold; a ranged request must be answered with exactly that range."""
    header = response.headers.get("Content-Range")
    if byte_range is None:
        if response.status == 206:
            raise SourceProtocolError(target.label, "partial answer to a whole-file request")
        return parse_content_length(response.headers.get("Content-Length"))
    content_range = parse_content_range(header)
    if response.status == 200 and header is None:
        raise RangeNotHonouredError(target.label, "the hub ignored Range and sent the whole file")
    if content_range is None or (content_range.first, content_range.length) != (
        byte_range.start,
        byte_range.length,
    ):
        reason = f"asked for {byte_range.http_header()}, got Content-Range {header!r}"
        raise RangeNotHonouredError(target.label, reason)
    return byte_range.length


async def read_body(
    target: Target, response: aiohttp.ClientResponse, expected: int | None
) -> AsyncIterator[bytes]:
    received = 0
    try:
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if expected is not None and received > expected:
                raise SourceProtocolError(target.label, f"body longer than {expected} bytes")
            yield chunk
    except TimeoutError as exc:
        raise SourceTimeoutError(target.label, "the hub stopped sending the file") from exc
    except aiohttp.ClientError as exc:
        reason = f"file transfer broke: {safe_text(target, exc)}"
        raise SourceUnreachableError(target.label, reason) from exc
    if expected is not None and received != expected:
        reason = f"body ended after {received} of {expected} bytes"
        raise SourceProtocolError(target.label, reason)


async def read_json(target: Target, response: aiohttp.ClientResponse) -> object:
    """The response's JSON (never via aiohttp's ``json()``, whose errors carry headers)."""
    try:
        raw = await response.content.read(MAX_JSON_LENGTH)
    except (TimeoutError, aiohttp.ClientError) as exc:
        reason = f"hub answer broke off: {safe_text(target, exc)}"
        raise SourceUnreachableError(target.label, reason) from exc
    try:
        body: object = json.loads(raw)
    except ValueError:
        if response.status == 200:
            raise SourceProtocolError(target.label, "hub answer is not JSON") from None
        return None
    return body


def hub_message(target: Target, body: object) -> str:
    message = body.get("Message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        return ""
    return f" ({redact(target, ' '.join(message.split()))[:200]})"


def safe_text(target: Target, exc: BaseException) -> str:
    return redact(target, " ".join(f"{type(exc).__name__}: {exc}".split()))[:300]


def redact(target: Target, text: str) -> str:
    return text.replace(target.token, "***") if target.token else text


def same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.explicit_port or a.port) == (
        b.scheme,
        b.host,
        b.explicit_port or b.port,
    )
