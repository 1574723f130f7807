"""Pure parsing of the HTTP response headers ``HttpBackend`` relies on (no I/O).

- ``Content-Range`` (RFC 9110 §14.4): ``bytes <first>-<last>/<complete-length or *>`` on a 206,
  ``bytes */<complete-length>`` on a 416.
- ``Retry-After`` (RFC 9110 §10.2.3): delay seconds, or an HTTP-date.
- Whole-file digests an origin vouches for, strongest standard first:
  ``Repr-Digest`` (RFC 9530, ``sha-256=:<base64>:``), ``Digest`` (RFC 3230,
  ``SHA-256=<base64>``), ``x-amz-checksum-sha256`` (S3, base64; composite multipart checksums
  ``<base64>-<parts>`` are not digests of the file and are ignored). ``Content-Digest`` is not
  used: it covers the message body, which for a 206 is only a slice.

Malformed values parse to ``None``: a junk header must never fail a download, it only means we
learn less from the origin.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from damselfly.core.digests import Digest

_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$", re.IGNORECASE)
_UNSATISFIED_RANGE_RE = re.compile(r"^bytes\s+\*/(\d+)$", re.IGNORECASE)
_DIGEST_ALGORITHMS = {"sha-256": ("sha256", 32), "sha-512": ("sha512", 64)}


@dataclass(frozen=True)
class ContentRange:
    first: int  # first byte, inclusive
    last: int  # last byte, inclusive
    complete_length: int | None  # None for "*"

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes 0-99/1000`` -> ``ContentRange(0, 99, 1000)``; anything else -> ``None``."""
    match = _CONTENT_RANGE_RE.match((value or "").strip())
    if match is None:
        return None
    first, last, total = match.groups()
    complete = None if total == "*" else int(total)
    result = ContentRange(int(first), int(last), complete)
    if result.last < result.first or (complete is not None and result.last >= complete):
        return None
    return result


def parse_unsatisfied_range(value: str | None) -> int | None:
    """The complete length from a 416's ``bytes */<length>``, else ``None``."""
    match = _UNSATISFIED_RANGE_RE.match((value or "").strip())
    return int(match.group(1)) if match else None


def parse_content_length(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isdigit() else None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait, from delay-seconds or an HTTP-date (``now`` is a UNIX time)."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def accepts_byte_ranges(value: str | None) -> bool:
    return "bytes" in [token.strip().lower() for token in (value or "").split(",")]


def content_digest(headers: Mapping[str, str]) -> Digest | None:
    """The whole-file digest the response headers vouch for, if any (case-insensitive map)."""
    for name, parse in (
        ("Repr-Digest", _parse_structured_digest),
        ("Digest", _parse_legacy_digest),
        ("x-amz-checksum-sha256", _parse_amz_checksum),
    ):
        value = headers.get(name)
        digest = parse(value) if value else None
        if digest is not None:
            return digest
    return None


def _parse_structured_digest(value: str) -> Digest | None:
    # RFC 9530: sha-256=:<base64>:, sha-512=:<base64>:
    found = _dictionary(value)
    for name, raw in found.items():
        if raw.startswith(":") and raw.endswith(":") and len(raw) >= 2:
            found[name] = raw[1:-1]
        else:
            found[name] = ""
    return _strongest(found)


def _parse_legacy_digest(value: str) -> Digest | None:
    # RFC 3230: SHA-256=<base64>, MD5=<base64>
    return _strongest(_dictionary(value))


def _parse_amz_checksum(value: str) -> Digest | None:
    text = value.strip()
    if re.search(r"-\d+$", text):  # composite multipart checksum: not the file's digest
        return None
    return _decode("sha-256", text)


def _dictionary(value: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for member in value.split(","):
        name, sep, raw = member.strip().partition("=")
        if sep:
            result[name.strip().lower()] = raw.strip()
    return result


def _strongest(members: Mapping[str, str]) -> Digest | None:
    for name in ("sha-256", "sha-512"):
        raw = members.get(name)
        digest = _decode(name, raw) if raw else None
        if digest is not None:
            return digest
    return None


def _decode(name: str, text: str) -> Digest | None:
    algorithm, length = _DIGEST_ALGORITHMS[name]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return Digest(algorithm, raw.hex()) if len(raw) == length else None
