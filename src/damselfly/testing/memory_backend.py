"""``MemoryBackend``: a fake ``Backend`` over an in-memory map, for other components' tests.

Objects are keyed by the URL string (``url.redacted()`` of the parsed URL, so credentials
never matter), and can be reached with any scheme: register the backend for the schemes a
test uses (``BackendRegistry({"https": lambda: memory})``). Ranges are honoured exactly.

Failure injection, all per URL and deterministic:

- ``fail(url, error, times=1)``: the next ``times`` calls that touch ``url`` (stat, get,
  exists) raise ``error`` (a ``BackendError``) before doing anything;
- ``put(..., ignore_ranges=True)``: a ranged ``get`` raises ``RangeNotHonouredError``, as
  ``HttpBackend`` does for a server that ignores ``Range``;
- ``put(..., truncate_at=N)``: ``get`` stops after the object's first ``N`` bytes and raises
  ``SourceProtocolError`` (a connection closed early).

Every object has a strong ETag (a hash of its bytes, unless ``etag`` is given; none with
``no_validator=True``), and a ``get`` whose ``options.expected`` names another ETag or length
raises ``SourceChangedError``, as ``HttpBackend`` does for a replaced file.

It records every call (``calls``) and counts body bytes handed out (``bytes_served``), so a
test can assert that the origin was read about once.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from damselfly.backends.base import Entry, ObjectStat, RangeNotHonouredError, RequestOptions
from damselfly.core.digests import Digest
from damselfly.core.errors import (
    BackendError,
    SourceChangedError,
    SourceNotFoundError,
    SourceProtocolError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl, parse_url

DEFAULT_CHUNK_LENGTH = 1024 * 1024


@dataclass(frozen=True)
class MemoryObject:
    data: bytes
    etag: str | None = None
    content_digest: Digest | None = None
    ignore_ranges: bool = False
    truncate_at: int | None = None


@dataclass(frozen=True)
class RecordedCall:
    operation: str  # "stat" | "get" | "exists" | "list"
    url: str
    byte_range: ByteRange | None = None
    options: RequestOptions | None = None


@dataclass
class _Failure:
    error: BackendError
    remaining: int


@dataclass
class MemoryBackend:
    """A ``Backend`` whose origin is a dict; see the module docstring."""

    chunk_length: int = DEFAULT_CHUNK_LENGTH
    objects: dict[str, MemoryObject] = field(default_factory=dict)
    calls: list[RecordedCall] = field(default_factory=list)
    bytes_served: Counter[str] = field(default_factory=Counter)
    closed: bool = False
    _failures: dict[str, list[_Failure]] = field(default_factory=dict)

    @classmethod
    def with_objects(cls, objects: Mapping[str, bytes]) -> MemoryBackend:
        backend = cls()
        for url, data in objects.items():
            backend.put(url, data)
        return backend

    def put(
        self,
        url: str | SourceUrl,
        data: bytes,
        *,
        etag: str | None = None,
        content_digest: Digest | None = None,
        ignore_ranges: bool = False,
        truncate_at: int | None = None,
        no_validator: bool = False,
    ) -> SourceUrl:
        parsed = parse_url(url) if isinstance(url, str) else url
        if etag is None and not no_validator:
            etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        self.objects[parsed.redacted()] = MemoryObject(
            bytes(data), etag, content_digest, ignore_ranges, truncate_at
        )
        return parsed

    def remove(self, url: str | SourceUrl) -> None:
        self.objects.pop(_key(url), None)

    def fail(self, url: str | SourceUrl, error: BackendError, times: int = 1) -> None:
        """Make the next ``times`` calls on ``url`` raise ``error``."""
        self._failures.setdefault(_key(url), []).append(_Failure(error, times))

    def call_count(self, operation: str | None = None, url: str | SourceUrl | None = None) -> int:
        key = None if url is None else _key(url)
        return sum(
            1
            for call in self.calls
            if (operation is None or call.operation == operation)
            and (key is None or call.url == key)
        )

    # --- the Backend protocol ---

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        obj = self._lookup("stat", url, options)
        return ObjectStat(
            content_length=len(obj.data),
            supports_ranges=not obj.ignore_ranges,
            etag=obj.etag,
            content_digest=obj.content_digest,
            content_type="application/octet-stream",
        )

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        try:
            self._lookup("exists", url, options)
        except SourceNotFoundError:
            return False
        return True

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        obj = self._lookup("get", url, options, byte_range)
        key = url.redacted()
        expected = options.expected
        change = expected.change_from(obj.etag, None, len(obj.data)) if expected else None
        if change is not None:
            raise SourceChangedError(key, change)
        start, end = _bounds(obj, key, byte_range)
        stop = end if obj.truncate_at is None else min(end, max(start, obj.truncate_at))
        for offset in range(start, stop, self.chunk_length):
            chunk = obj.data[offset : min(stop, offset + self.chunk_length)]
            self.bytes_served[key] += len(chunk)
            yield chunk
        if stop < end:
            reason = f"expected {end - start} bytes, got {stop - start} (connection closed early)"
            raise SourceProtocolError(key, reason)

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        prefix = url.redacted().rstrip("/") + "/"
        self.calls.append(RecordedCall("list", url.redacted(), None, options))
        self._raise_injected(url.redacted())
        entries = [
            Entry(parse_url(key), key[len(prefix) :], len(obj.data), obj.content_digest)
            for key, obj in self.objects.items()
            if key.startswith(prefix)
        ]
        return sorted(entries, key=lambda entry: entry.path)

    async def aclose(self) -> None:
        self.closed = True

    # --- helpers ---

    def _lookup(
        self,
        operation: str,
        url: SourceUrl,
        options: RequestOptions,
        byte_range: ByteRange | None = None,
    ) -> MemoryObject:
        key = url.redacted()
        self.calls.append(RecordedCall(operation, key, byte_range, options))
        self._raise_injected(key)
        obj = self.objects.get(key)
        if obj is None:
            raise SourceNotFoundError(key, 404, "no such object")
        return obj

    def _raise_injected(self, key: str) -> None:
        failures = self._failures.get(key)
        if not failures:
            return
        failure = failures[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            failures.pop(0)
        raise failure.error


def _key(url: str | SourceUrl) -> str:
    return (parse_url(url) if isinstance(url, str) else url).redacted()


def _bounds(obj: MemoryObject, key: str, byte_range: ByteRange | None) -> tuple[int, int]:
    size = len(obj.data)
    if byte_range is None:
        return 0, size
    whole = byte_range.start == 0 and byte_range.length == size
    if obj.ignore_ranges and not whole:
        raise RangeNotHonouredError(key, f"asked for {byte_range}, origin ignored Range")
    if byte_range.start < 0 or byte_range.length < 0 or byte_range.end > size:
        raise SourceProtocolError(
            key, f"range {byte_range.start}+{byte_range.length} is outside 0..{size}"
        )
    return byte_range.start, byte_range.end
