"""``HfBackend``: ``hf://[models/|datasets/|spaces/]<owner>/<repo>[/<path>]`` from a Hugging
Face hub (huggingface.co or a mirror).

Per-request values travel in ``RequestOptions.params`` (the backend is shared per process):
``hf_endpoint`` (default https://huggingface.co; a path prefix is kept), ``hf_token``,
``hf_revision`` (branch, tag or commit; default ``main``). The caller resolves flags and
environment (see ``hf_api.resolve_hf_token``).

How a download talks to the hub:

1. The revision is resolved once to a commit (``GET /api/{type}/{repo}/revision/{rev}``),
   remembered for ``revision_ttl`` seconds per (endpoint, repo, revision, token); a full commit
   id is used as is. ``list`` pins every entry to that commit (``Entry.params``).
2. A file is resolved once: ``HEAD /resolve/{commit}/{path}`` without following redirects
   off the hub. 200: the hub serves it (``ETag`` = git blob id). 3xx to another host: the CDN
   serves it (``X-Linked-Etag`` = sha256, ``X-Linked-Size``); that signed URL is reused for
   every range until it expires (its ``Expires`` / ``X-Amz-*`` query, else ``cdn_url_ttl``).
   Concurrent pieces share one resolution (``TtlMemo``). A 401/403/410 from the CDN means the
   URL went stale: the file is resolved again, once.
3. ``get`` yields exactly the bytes asked for or raises: a 200 to a ranged request is
   ``RangeNotHonouredError``, a short or long body ``SourceProtocolError``.

The token goes only to the hub's own origin (scheme, host, port), never to the CDN, and never
into messages, reprs or cache keys (a fingerprint stands in). Cache keys include that
fingerprint, so a URL learnt with one user's token is never served to another user's request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from damselfly.backends import http_headers as hh
from damselfly.backends.base import (
    SECRET_HEADERS,
    Entry,
    ObjectStat,
    RequestOptions,
    exists_by_stat,
)
from damselfly.backends.bodies import Body, EmptyBody
from damselfly.backends.hf_api import (
    DEFAULT_REVISION,
    HubRoutes,
    is_commit,
    is_git_oid,
    is_sha256,
    normalize_endpoint,
    normalize_etag,
    origin,
    parse_size,
    signed_url_expiry,
    token_fingerprint,
)
from damselfly.backends.hf_errors import (
    HubCall,
    cdn_error,
    hub_error,
    protocol_error,
    timed_out,
    unreachable,
)
from damselfly.backends.hf_listing import TreeListing
from damselfly.backends.hf_memo import Clock, TtlMemo
from damselfly.backends.hf_responses import (
    MAX_JSON_LENGTH,
    ResolvedFile,
    check_commit,
    content_body,
    expected_length,
    next_page,
    object_stat,
    parse_json,
    redirect_target,
    why,
)
from damselfly.core.errors import SourceProtocolError, UsageError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.transport.http_session import create_origin_session, tls_for_request

REVISION_TTL = 60.0
HUB_FILE_TTL = 600.0  # reuse of a hub-served file's metadata
CDN_URL_TTL = 600.0  # a CDN URL whose expiry its query does not say
CDN_EXPIRY_MARGIN = 30.0
MAX_REDIRECTS = 5
READ_CHUNK_LENGTH = 4 * 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
STALE_CDN_STATUSES = frozenset({401, 403, 410})


@dataclass(frozen=True)
class _Call:
    """One backend call: the URL and what its options say about the hub."""

    url: HubUrl
    endpoint: str
    revision: str
    token: str | None = field(repr=False)
    options: RequestOptions = field(repr=False)

    @property
    def routes(self) -> HubRoutes:
        return HubRoutes.for_url(self.endpoint, self.url)

    @property
    def scope(self) -> tuple[str, str, str, str]:
        return (self.endpoint, self.url.repo_type, self.url.repo_id, token_fingerprint(self.token))

    def about(self, what: str = "file") -> HubCall:
        return HubCall(self.url, self.endpoint, self.revision, what)


class HfBackend:
    """The ``Backend`` for hf:// URLs."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Clock = time.time,
        revision_ttl: float = REVISION_TTL,
        cdn_url_ttl: float = CDN_URL_TTL,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._revision_ttl = revision_ttl
        self._cdn_url_ttl = cdn_url_ttl
        self._commits: TtlMemo[tuple[object, ...], str] = TtlMemo(clock)
        self._files: TtlMemo[tuple[object, ...], ResolvedFile] = TtlMemo(clock)

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- Backend operations --------------------------------------------------------------

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        call = _call(url, options)
        resolved = await self._resolved(call, await self._commit(call))
        return object_stat(resolved)

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return await exists_by_stat(self, url, options)

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        call = _call(url, options)
        commit = await self._commit(call)
        listing = TreeListing(call.url, commit)
        target: str | None = call.routes.tree(commit, call.url.path)
        seen: set[str] = set()
        while target is not None:
            if target in seen:
                raise protocol_error(call.about("folder"), "tree pagination loops")
            seen.add(target)
            page, target = await self._hub_json(call, target, "folder")
            listing.add_page(page)
        return listing.entries()

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        call = _call(url, options)
        if byte_range is not None and byte_range.length <= 0:
            return
        response, resolved = await self._open_content(call, await self._commit(call), byte_range)
        try:
            expected = expected_length(call.about(), response, byte_range, resolved.content_length)
            async for chunk in self._body(call, response, resolved, expected):
                yield chunk
        finally:
            response.release()

    @contextlib.asynccontextmanager
    async def open_body(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[Body]:
        """``get``'s body read into the caller's buffers (``bodies.py``)."""
        call = _call(url, options)
        if byte_range is not None and byte_range.length <= 0:
            yield EmptyBody()
            return
        response, resolved = await self._open_content(call, await self._commit(call), byte_range)
        about = call.about()
        with contextlib.closing(
            content_body(about, response, resolved.location, options.timeout)
        ) as body:
            expected = expected_length(about, response, byte_range, resolved.content_length)
            body.start(expected, lambda: self._body(call, response, resolved, expected))
            yield body

    async def resolve_revision(self, url: SourceUrl, options: RequestOptions) -> str:
        """The commit ``hf_revision`` names now (cached for ``revision_ttl`` seconds)."""
        return await self._commit(_call(url, options))

    async def resolve_file(self, url: SourceUrl, options: RequestOptions) -> ResolvedFile:
        """Where the file's bytes are (one ``/resolve`` request, then remembered)."""
        call = _call(url, options)
        return await self._resolved(call, await self._commit(call))

    # -- revision and file resolution ----------------------------------------------------

    async def _commit(self, call: _Call) -> str:
        if is_commit(call.revision):
            return call.revision.lower()
        key = (*call.scope, call.revision)
        return await self._commits.load(key, lambda: self._fetch_commit(call))

    async def _fetch_commit(self, call: _Call) -> tuple[str, float]:
        target = call.routes.revision_info(call.revision)
        info, _ = await self._hub_json(call, target, "repository")
        sha = info.get("sha") if isinstance(info, dict) else None
        if not is_git_oid(sha):
            raise protocol_error(call.about("repository"), "revision info has no commit sha")
        return str(sha), self._clock() + self._revision_ttl

    async def _resolved(self, call: _Call, commit: str) -> ResolvedFile:
        key = (*call.scope, commit, call.url.path)
        return await self._files.load(key, lambda: self._head_resolve(call, commit))

    async def _head_resolve(self, call: _Call, commit: str) -> tuple[ResolvedFile, float]:
        about = call.about()
        target = call.routes.resolve(commit, call.url.path)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._send(call, "HEAD", target)
            response.release()
            headers = response.headers
            if response.status == 200:
                return self._served_by_hub(about, commit, target, headers)
            if response.status not in REDIRECT_STATUSES:
                raise hub_error(about, response.status, headers)
            check_commit(about, commit, headers)
            location = redirect_target(about, target, headers)
            if origin(location) != origin(call.endpoint):
                return self._served_by_cdn(about, commit, location, headers)
            target = location
        raise protocol_error(about, f"more than {MAX_REDIRECTS} redirects")

    def _served_by_hub(
        self, about: HubCall, commit: str, target: str, headers: CIMultiDictProxy[str]
    ) -> tuple[ResolvedFile, float]:
        check_commit(about, commit, headers)
        etag = normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
        size = parse_size(headers.get("X-Linked-Size"))
        if size is None:
            size = parse_size(headers.get("Content-Length"))
        ranges = hh.accepts_byte_ranges(headers.get("Accept-Ranges"))
        sha256 = etag if is_sha256(etag) else None
        resolved = ResolvedFile(target, True, commit, size, ranges, etag, sha256)
        return resolved, self._clock() + HUB_FILE_TTL

    def _served_by_cdn(
        self, about: HubCall, commit: str, location: str, headers: CIMultiDictProxy[str]
    ) -> tuple[ResolvedFile, float]:
        etag = normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
        size = parse_size(headers.get("X-Linked-Size"))
        sha256 = etag if is_sha256(etag) else None
        resolved = ResolvedFile(location, False, commit, size, True, etag, sha256)
        expiry = signed_url_expiry(location)
        if expiry is None:
            return resolved, self._clock() + self._cdn_url_ttl
        return resolved, expiry - CDN_EXPIRY_MARGIN

    # -- content -------------------------------------------------------------------------

    async def _open_content(
        self, call: _Call, commit: str, byte_range: ByteRange | None
    ) -> tuple[aiohttp.ClientResponse, ResolvedFile]:
        resolved = await self._resolved(call, commit)
        response = await self._send(call, "GET", resolved.location, byte_range)
        if response.status in STALE_CDN_STATUSES and not resolved.on_hub:
            response.release()  # the signed URL expired or was revoked: ask the hub again
            self._files.forget((*call.scope, commit, call.url.path), resolved)
            resolved = await self._resolved(call, commit)
            response = await self._send(call, "GET", resolved.location, byte_range)
        if response.status in (200, 206):
            return response, resolved
        response.release()
        if resolved.on_hub:
            raise hub_error(call.about(), response.status, response.headers)
        raise cdn_error(call.about(), resolved.location, response.status)

    async def _body(
        self,
        call: _Call,
        response: aiohttp.ClientResponse,
        resolved: ResolvedFile,
        expected: int | None,
    ) -> AsyncIterator[bytes]:
        about, received = call.about(), 0
        while chunk := await self._read(call, response, resolved.location, READ_CHUNK_LENGTH):
            received += len(chunk)
            if expected is not None and received > expected:
                raise protocol_error(about, f"expected {expected} bytes, got more")
            yield chunk
        if expected is not None and received < expected:
            raise protocol_error(about, f"expected {expected} bytes, got {received}")

    # -- HTTP ----------------------------------------------------------------------------

    async def _hub_json(self, call: _Call, target: str, what: str) -> tuple[object, str | None]:
        """GET a hub API URL (same-origin redirects followed) -> (JSON, next page URL)."""
        about = call.about(what)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._send(call, "GET", target)
            try:
                if response.status in REDIRECT_STATUSES:
                    target = redirect_target(about, target, response.headers)
                    if origin(target) != origin(call.endpoint):
                        raise protocol_error(about, "hub redirected an API call to another host")
                    continue
                if response.status != 200:
                    raise hub_error(about, response.status, response.headers)
                body = await self._read_all(call, response, target)
                return parse_json(about, body), next_page(about, response)
            finally:
                response.release()
        raise protocol_error(about, f"more than {MAX_REDIRECTS} redirects")

    async def _send(
        self, call: _Call, method: str, target: str, byte_range: ByteRange | None = None
    ) -> aiohttp.ClientResponse:
        on_hub = origin(target) == origin(call.endpoint)
        timeout = call.options.timeout
        try:
            return await self._client().request(
                method,
                URL(target, encoded=True),
                headers=_headers(call, on_hub=on_hub, byte_range=byte_range),
                allow_redirects=False,
                ssl=tls_for_request(insecure=call.options.insecure),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
            )
        except TimeoutError as exc:
            raise timed_out(call.about(), target, timeout, hub=on_hub) from exc
        except aiohttp.ClientError as exc:
            raise unreachable(call.about(), target, why(exc), hub=on_hub) from exc

    async def _read_all(self, call: _Call, response: aiohttp.ClientResponse, target: str) -> bytes:
        """The whole body, up to ``MAX_JSON_LENGTH`` (+1 byte, so too long is detectable)."""
        body = bytearray()
        while len(body) <= MAX_JSON_LENGTH:
            chunk = await self._read(call, response, target, MAX_JSON_LENGTH + 1 - len(body))
            if not chunk:
                break
            body += chunk
        return bytes(body)

    async def _read(
        self, call: _Call, response: aiohttp.ClientResponse, target: str, limit: int
    ) -> bytes:
        on_hub = origin(target) == origin(call.endpoint)
        try:
            return await response.content.read(limit)
        except TimeoutError as exc:
            raise timed_out(call.about(), target, call.options.timeout, hub=on_hub) from exc
        except aiohttp.ClientPayloadError as exc:
            raise protocol_error(call.about(), "response body cut short") from exc
        except aiohttp.ClientError as exc:
            raise unreachable(call.about(), target, why(exc), hub=on_hub) from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = create_origin_session()
        return self._session


def _call(url: SourceUrl, options: RequestOptions) -> _Call:
    if not isinstance(url, HubUrl) or url.scheme != "hf":
        raise SourceProtocolError(url.redacted(), "not an hf:// URL")
    endpoint = normalize_endpoint(options.param("hf_endpoint"))
    revision = options.param("hf_revision") or DEFAULT_REVISION
    if any(ord(c) < 0x21 or c == "\x7f" for c in revision):
        raise UsageError(f"hf revision {revision!r}: spaces and control characters not allowed")
    return _Call(url, endpoint, revision, options.param("hf_token") or None, options)


def _headers(call: _Call, *, on_hub: bool, byte_range: ByteRange | None) -> CIMultiDict[str]:
    """User headers (secret ones only to the hub), the token to the hub only, the range."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in call.options.headers:
        if on_hub or name.lower() not in SECRET_HEADERS:
            headers[name] = value
    if on_hub and call.token:
        headers["Authorization"] = f"Bearer {call.token}"
    if byte_range is not None:
        headers["Range"] = byte_range.http_header()
    return headers
