"""The ``Backend`` interface every origin adapter implements, and the values it speaks.

A backend knows one family of URL schemes (http/https, file, s3 and friends, hf, modelscope)
and offers four operations:

- ``stat(url, options)``: size, whether ranges work, version marker (ETag), a strong digest
  the origin vouches for (if any).
- ``get(url, byte_range, options)``: an async iterator of byte chunks. With a range it yields
  exactly ``byte_range.length`` bytes or raises; a server that ignores ``Range`` raises
  ``RangeNotHonouredError`` instead of handing back the wrong bytes. Callers read it inside
  ``open_stream`` so the connection is released even when they stop early.
- ``exists(url, options)``.
- ``list(url, options)``: the files below a directory-like URL, recursively.

Backends map their library's exceptions into ``damselfly.core.errors`` at this edge. They are
created once per process by the registry and shared, so per-request values (headers, tokens,
revisions) travel in ``RequestOptions`` and never in the backend's own state.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from damselfly.core.digests import Digest
from damselfly.core.errors import SourceNotFoundError, SourceProtocolError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl

DEFAULT_REQUEST_TIMEOUT = 60.0

# Header names whose values are secrets: never logged, never shown, never sent to peers.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


@dataclass(frozen=True)
class RequestOptions:
    """Per-request settings, passed to every backend call.

    ``params`` holds backend-specific values (``hf_token``, ``hf_revision``, ``s3_endpoint``,
    ...); names that ``is_secret_name`` recognises are redacted from ``repr``.
    """

    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_REQUEST_TIMEOUT
    insecure: bool = False
    params: tuple[tuple[str, str], ...] = ()
    # The version every read must still find (set once the first ``stat`` answered): a
    # backend that can tell raises ``SourceChangedError`` rather than mix two versions.
    expected: SourceVersion | None = None

    def param(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return default

    def with_params(self, **values: str | None) -> RequestOptions:
        kept = tuple((k, v) for k, v in self.params if k not in values)
        added = tuple((k, v) for k, v in values.items() if v is not None)
        return dataclasses.replace(self, params=kept + added)

    def expecting(self, version: SourceVersion | None) -> RequestOptions:
        return dataclasses.replace(self, expected=version)

    def __repr__(self) -> str:
        headers = [(k, "***" if k.lower() in SECRET_HEADERS else v) for k, v in self.headers]
        params = [(k, "***" if is_secret_name(k) else v) for k, v in self.params]
        return (
            f"RequestOptions(headers={headers}, timeout={self.timeout}, "
            f"insecure={self.insecure}, params={params}, expected={self.expected})"
        )


def is_secret_name(name: str) -> bool:
    """Whether a param holds a secret: tokens, secrets, passwords, credentials, keys."""
    lowered = name.lower()
    words = ("token", "secret", "password", "credential", "delegation")
    return any(word in lowered for word in words) or lowered.endswith("_key")


def opaque_tag(etag: str) -> str:
    """An ETag without its weakness mark: two tags name one version when these are equal."""
    return etag.removeprefix("W/")


@dataclass(frozen=True)
class SourceVersion:
    """Which version of an object a download started from: its validators and total length.

    A *strong* ETag names exact bytes; a weak one (``W/"..."``) or a ``Last-Modified`` date
    still changes when the object is replaced, so any of them detects a change, but only a
    strong ETag or a date may ride in ``If-Range``. With none of them only a length change
    can be seen: such origins are read in one stream (``docs/reliability.md``)."""

    etag: str | None = None
    last_modified: str | None = None
    content_length: int | None = None

    @property
    def strong_etag(self) -> str | None:
        return self.etag if self.etag and not self.etag.startswith("W/") else None

    @property
    def if_range(self) -> str | None:
        """The value for ``If-Range``: a strong ETag, else the date, else nothing."""
        return self.strong_etag or self.last_modified

    @property
    def has_validator(self) -> bool:
        return bool(self.etag or self.last_modified)

    def identity(self) -> str:
        """The version's part of a task id: the ETag, else the date, else the length (each
        but the ETag marked), else ``""``."""
        if self.etag:
            return self.etag
        if self.last_modified:
            return f"last-modified:{self.last_modified}"
        return "" if self.content_length is None else f"length:{self.content_length}"

    def change_from(
        self, etag: str | None, last_modified: str | None, content_length: int | None
    ) -> str | None:
        """What differs in an answer that describes ``etag``/``last_modified``/length, or
        ``None`` when it may be the same version (a validator the answer omits is no change)."""
        if self.etag and etag and opaque_tag(etag) != opaque_tag(self.etag):
            return f"ETag {self.etag} became {etag}"
        dated = not self.etag and self.last_modified
        if dated and last_modified not in (None, self.last_modified):
            return f"Last-Modified {self.last_modified} became {last_modified}"
        lengths = (self.content_length, content_length)
        if None not in lengths and content_length != self.content_length:
            return f"length {self.content_length} became {content_length}"
        return None


@dataclass(frozen=True)
class ObjectStat:
    """What an origin says about one object before we download it."""

    content_length: int | None  # None when the origin does not say (chunked, streaming)
    supports_ranges: bool
    etag: str | None = None  # version marker; part of task identity
    last_modified: str | None = None
    content_digest: Digest | None = None  # a whole-file digest the origin vouches for
    content_type: str | None = None
    # Backend-specific facts a later call may reuse (e.g. a resolved CDN URL); not identity.
    extras: Mapping[str, str] = field(default_factory=dict)

    @property
    def version(self) -> SourceVersion:
        return SourceVersion(self.etag, self.last_modified, self.content_length)


@dataclass(frozen=True)
class Entry:
    """One file found by ``Backend.list``."""

    url: SourceUrl  # scheme-native URL of this file, usable with the same backend
    path: str  # relative to the listed URL, '/'-separated, validated by the backend
    content_length: int | None
    content_digest: Digest | None = None
    # Request params the file must be fetched with (e.g. the commit a hub revision resolved
    # to), merged into the RequestOptions of the per-file download.
    params: tuple[tuple[str, str], ...] = ()


class RangeNotHonouredError(SourceProtocolError):
    """The origin answered a ranged request with the whole body (or a different range)."""


class Backend(Protocol):
    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat: ...

    def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]: ...

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool: ...

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]: ...

    async def aclose(self) -> None: ...


@contextlib.asynccontextmanager
async def open_stream(
    backend: Backend, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
) -> AsyncIterator[AsyncIterator[bytes]]:
    """``backend.get`` as a context: the body is closed however the reader leaves."""
    stream = backend.get(url, byte_range, options)
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def exists_by_stat(backend: Backend, url: SourceUrl, options: RequestOptions) -> bool:
    """``exists`` for backends whose cheapest existence check is a ``stat``."""
    try:
        await backend.stat(url, options)
    except SourceNotFoundError:
        return False
    return True
