"""Pure parsing of the response headers HttpBackend relies on."""

from __future__ import annotations

import base64
import hashlib
from email.utils import formatdate

import pytest
from multidict import CIMultiDict

from damselfly.backends.http_headers import (
    ContentRange,
    accepts_byte_ranges,
    content_digest,
    parse_content_length,
    parse_content_range,
    parse_retry_after,
    parse_unsatisfied_range,
)
from damselfly.core.digests import Digest

SHA256 = hashlib.sha256(b"abc").digest()
SHA512 = hashlib.sha512(b"abc").digest()
B64_256 = base64.b64encode(SHA256).decode()
B64_512 = base64.b64encode(SHA512).decode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", ContentRange(0, 99, 1000)),
        ("bytes 5-5/6", ContentRange(5, 5, 6)),
        ("BYTES 10-19/*", ContentRange(10, 19, None)),
        (" bytes 0-0/1 ", ContentRange(0, 0, 1)),
        ("bytes 10-9/100", None),  # last before first
        ("bytes 0-100/100", None),  # last past the end
        ("bytes */100", None),
        ("items 0-1/2", None),
        ("bytes 0-1", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_content_range(value: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(value) == expected


def test_content_range_length() -> None:
    assert ContentRange(10, 19, None).length == 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [("bytes */0", 0), ("bytes */123", 123), ("bytes 0-1/2", None), (None, None)],
)
def test_parse_unsatisfied_range(value: str | None, expected: int | None) -> None:
    assert parse_unsatisfied_range(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), (" 42 ", 42), ("-1", None), ("1e3", None), ("", None), (None, None)],
)
def test_parse_content_length(value: str | None, expected: int | None) -> None:
    assert parse_content_length(value) == expected


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),  # in the past: retry now
        ("-5", None),
        ("soon", None),
        ("Mon, 99 Foo 2024 00:00:00 GMT", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("bytes", True), ("none", False), ("Bytes", True), ("foo, bytes", True), (None, False)],
)
def test_accepts_byte_ranges(value: str | None, expected: bool) -> None:
    assert accepts_byte_ranges(value) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Repr-Digest": f"sha-256=:{B64_256}:"}, Digest("sha256", SHA256.hex())),
        (
            {"repr-digest": f"sha-512=:{B64_512}:, sha-256=:{B64_256}:"},
            Digest("sha256", SHA256.hex()),
        ),
        ({"Repr-Digest": f"sha-512=:{B64_512}:"}, Digest("sha512", SHA512.hex())),
        ({"Digest": f"SHA-256={B64_256}"}, Digest("sha256", SHA256.hex())),
        ({"Digest": f"md5=AAAA, sha-256={B64_256}"}, Digest("sha256", SHA256.hex())),
        ({"x-amz-checksum-sha256": B64_256}, Digest("sha256", SHA256.hex())),
        ({"x-amz-checksum-sha256": f"{B64_256}-3"}, None),  # composite multipart checksum
        ({"Repr-Digest": f"sha-256={B64_256}"}, None),  # not a structured byte sequence
        ({"Digest": "sha-256=not base64!"}, None),
        ({"Digest": "sha-256=" + base64.b64encode(b"short").decode()}, None),
        ({"Content-Digest": f"sha-256=:{B64_256}:"}, None),  # covers the body, not the file
        ({"Digest": "md5=AAAA"}, None),
        ({}, None),
    ],
)
def test_content_digest(headers: dict[str, str], expected: Digest | None) -> None:
    assert content_digest(CIMultiDict(headers)) == expected


def test_repr_digest_wins_over_legacy_headers() -> None:
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    headers = CIMultiDict({"Repr-Digest": f"sha-256=:{B64_256}:", "Digest": f"SHA-256={other}"})
    assert content_digest(headers) == Digest("sha256", SHA256.hex())
