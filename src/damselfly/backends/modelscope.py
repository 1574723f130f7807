"""``ModelScopeBackend``: ``modelscope://[models/|datasets/]<owner>/<repo>[/<path>]``.

It speaks the hub's ``/api/v1`` surface the way the modelscope SDK (1.40, modelscope-hub 0.5)
does::

    list (models)    GET {ep}/api/v1/models/{o}/{r}/repo/files?Revision=&Recursive=True[&Root=]
                     at most 3000 entries per answer (the hub truncates silently): a listing
                     that comes back full is walked directory by directory (Recursive=False)
    list (datasets)  GET {ep}/api/v1/datasets/{o}/{r}/repo/tree?Revision=&Recursive=True
                     &PageNumber=&PageSize=[&Root=], pages until one comes back short
    revisions        GET {ep}/api/v1/{type}/{o}/{r}/revisions   (only to explain a 404)
    file             GET {ep}/api/v1/{type}/{o}/{r}/repo?Revision=&FilePath=   (+ Range)

Answers are an envelope ``{Code, Success, Message, Data}``; ``Code != 200`` or
``Success: false`` is a failure even with HTTP 200. The live hub honours ``Range`` on the file
route but answers ``200`` with a correct ``Content-Range``; that is accepted as a ranged answer,
a 200 without ``Content-Range`` is ``RangeNotHonouredError``.

Per-request values come from ``RequestOptions.params``: ``ms_endpoint`` (default
``https://modelscope.cn``; resolved in ``modelscope_options``), ``ms_token``
and ``ms_revision`` (default ``master``). The token goes out as the SDK sends it, both
``Authorization: Bearer <token>`` and cookie ``m_session_id=<token>``, and only to the hub's own
origin: redirects (to OSS/CDN for large files) are followed by hand and lose both.

Revisions: the API has no branch -> commit lookup (``/revisions`` lists names and dates only),
but every listed file carries ``Revision``, the commit that last changed it. ``list`` pins each
file to that commit (``Entry.params = (("ms_revision", <commit>),)``), so a branch that moves
mid-download cannot mix versions; the file's ``Sha256`` is its digest.

A listing is untrusted input: absolute paths, empty/``.``/``..`` segments, NUL, backslashes,
duplicates and paths outside the requested folder are ``SourceProtocolError`` naming the repo
and the path. Failures map to one-line typed errors naming the repo (``_failure``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
from yarl import URL

from damselfly.backends.base import (
    Entry,
    ObjectStat,
    RequestOptions,
    exists_by_stat,
)
from damselfly.backends.modelscope_listing import (
    COMMIT_RE,
    Listed,
    Target,
    entry_of,
    envelope_ok,
    files_of,
    is_tree,
    listing_params,
    origin_of,
    parse_listing,
    revision_names,
    subdirectory,
    target_of,
)
from damselfly.backends.modelscope_responses import (
    expected_length,
    hub_message,
    read_body,
    read_json,
    safe_text,
    same_origin,
)
from damselfly.core.digests import Digest
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceStatusError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl
from damselfly.transport.http_session import create_origin_session, tls_for_request

LISTING_CAP = 3000  # entries the hub returns at most from one repo/files request
DATASET_PAGE_LENGTH = 200
MAX_LISTING_REQUESTS = 20_000
MAX_REDIRECTS = 5
API_ATTEMPTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


Sleep = Callable[[float], Awaitable[None]]
_Raw = list[object]  # listing entries as the hub sent them (the class shadows ``list``)


class ModelScopeBackend:
    """The ``Backend`` for ``modelscope://`` URLs; shared per process."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        listing_cap: int = LISTING_CAP,
        dataset_page_length: int = DATASET_PAGE_LENGTH,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._listing_cap = listing_cap
        self._page_length = dataset_page_length
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        target = target_of(url, options)
        raw = await self._listing(target, target.url.path, recursive=True)
        listed = parse_listing(target, raw, target.url.path)
        return [entry_of(target, item) for item in listed]

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        target = target_of(url, options)
        item = await self._find(target)
        digest = Digest("sha256", item.sha256) if item.sha256 else None
        return ObjectStat(
            content_length=item.size,
            supports_ranges=True,
            etag=item.sha256 or item.revision,
            content_digest=digest,
            extras={"ms_revision": item.revision},
        )

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return await exists_by_stat(self, url, options)

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        target = target_of(url, options)
        if not target.url.path:
            raise SourceProtocolError(target.label, "the repository root is not a file")
        if byte_range is not None and byte_range.length <= 0:
            return
        response = await self._open_file(target, byte_range)
        try:
            expected = expected_length(target, response, byte_range)
            async for chunk in read_body(target, response, expected):
                yield chunk
        finally:
            response.release()

    # -- listing ---------------------------------------------------------------------------

    async def _find(self, target: Target) -> Listed:
        path = target.url.path
        if not path:
            raise SourceProtocolError(target.label, "the repository root is not a file")
        parent = path.rpartition("/")[0]
        raw = await self._listing(target, parent, recursive=False)
        for item in parse_listing(target, raw, parent):
            if item.path == path:
                return item
        reason = f"file {path!r} not found at revision {target.revision!r}"
        raise SourceNotFoundError(target.label, 404, reason)

    async def _listing(self, target: Target, root: str, *, recursive: bool) -> _Raw:
        if target.url.repo_type == "datasets":
            return await self._dataset_pages(target, root, recursive)
        if not recursive:
            return await self._page(target, "/repo/files", listing_params(target, root, False))
        return await self._walk(target, root)

    async def _walk(self, target: Target, root: str) -> _Raw:
        """Recursive listing of ``root``; a full (truncated) answer is split by directory."""
        found: _Raw = []
        pending, requests = [root], 0
        while pending:
            directory = pending.pop()
            requests += 2
            if requests > MAX_LISTING_REQUESTS:
                raise SourceProtocolError(target.label, "file listing does not end")
            page = await self._page(target, "/repo/files", listing_params(target, directory, True))
            if len(page) < self._listing_cap:
                found.extend(page)
                continue
            shallow = await self._page(
                target, "/repo/files", listing_params(target, directory, False)
            )
            if len(shallow) >= self._listing_cap:
                reason = f"directory {directory or '/'!r} holds {self._listing_cap} or more"
                raise SourceProtocolError(target.label, reason + " entries; cannot list it all")
            for item in shallow:
                if is_tree(item):
                    pending.append(subdirectory(target, item, directory))
                else:
                    found.append(item)
        return found

    async def _dataset_pages(self, target: Target, root: str, recursive: bool) -> _Raw:
        found: _Raw = []
        for number in range(1, MAX_LISTING_REQUESTS + 1):
            params = listing_params(target, root, recursive)
            params |= {"PageNumber": str(number), "PageSize": str(self._page_length)}
            page = await self._page(target, "/repo/tree", params)
            found.extend(page)
            if len(page) < self._page_length:
                return found
        raise SourceProtocolError(target.label, "dataset listing does not end")

    async def _page(self, target: Target, suffix: str, params: dict[str, str]) -> _Raw:
        status, body = await self._get_json(target, target.api(suffix, params))
        if status == 200 and envelope_ok(body):
            return files_of(target, body)
        raise await self._failure(target, status, body, path=params.get("Root", ""))

    # -- requests ----------------------------------------------------------------------------

    async def _get_json(self, target: Target, url: URL) -> tuple[int, object]:
        """GET an API URL with retries on 429/5xx and connection failures; (status, JSON)."""
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                response = await self._send(target, url, {})
            except (SourceUnreachableError, SourceTimeoutError):
                if attempt == API_ATTEMPTS:
                    raise
            else:
                async with response:
                    if response.status not in RETRY_STATUSES or attempt == API_ATTEMPTS:
                        return response.status, await read_json(target, response)
            await self._sleep(0.25 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _open_file(
        self, target: Target, byte_range: ByteRange | None
    ) -> aiohttp.ClientResponse:
        params = {"Revision": target.revision, "FilePath": target.url.path}
        headers = {} if byte_range is None else {"Range": byte_range.http_header()}
        response = await self._send(target, target.api("/repo", params), headers)
        if response.status in (200, 206):
            return response
        async with response:
            if response.status == 416:
                asked = byte_range.http_header() if byte_range else "the request"
                reason = f"{asked} is past the end of {target.url.path!r}"
                raise SourceProtocolError(target.label, reason)
            body = await read_json(target, response)
        raise await self._failure(target, response.status, body, path=target.url.path, file=True)

    async def _send(
        self, target: Target, url: URL, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """One GET, following redirects by hand: credentials only go to the hub's origin."""
        hub = URL(target.endpoint)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if target.token is not None and same_origin(url, hub):
                sent["Authorization"] = f"Bearer {target.token}"
                sent["Cookie"] = f"m_session_id={target.token}"
            response = await self._request(target, url, sent)
            if response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.release()
            if not location:
                raise SourceProtocolError(target.label, "redirect without a Location")
            url = url.join(URL(location, encoded=True))
        raise SourceProtocolError(target.label, f"more than {MAX_REDIRECTS} redirects")

    async def _request(
        self, target: Target, url: URL, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=target.timeout, sock_read=target.timeout
        )
        try:
            return await self._client().get(
                url,
                headers=headers,
                allow_redirects=False,
                ssl=tls_for_request(insecure=target.insecure),
                timeout=timeout,
            )
        except TimeoutError as exc:
            reason = f"hub {origin_of(target.endpoint)} did not answer within {target.timeout:g}s"
            raise SourceTimeoutError(target.label, reason) from exc
        except aiohttp.ClientError as exc:
            reason = f"hub {origin_of(target.endpoint)} unreachable: {safe_text(target, exc)}"
            raise SourceUnreachableError(target.label, reason) from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = create_origin_session()
        return self._session

    # -- errors --------------------------------------------------------------------------------

    async def _failure(
        self, target: Target, status: int, body: object, *, path: str, file: bool = False
    ) -> BackendError:
        """The one place a failed hub answer becomes a typed error naming the repo."""
        message = hub_message(target, body)
        if status in (401, 403):
            return SourceAuthError(target.label, status, target.repo_missing())
        if status == 404 or (status == 200 and not envelope_ok(body)):
            reason = await self._missing_reason(target, path, file=file)
            if reason is not None:
                return SourceNotFoundError(target.label, 404, reason)
        if status == 200:
            return SourceProtocolError(target.label, f"hub refused the request{message}")
        return SourceStatusError(target.label, status, f"hub answered HTTP {status}{message}")

    async def _missing_reason(self, target: Target, path: str, *, file: bool) -> str | None:
        """Which part is missing, asked of ``/revisions``: repo, revision or path."""
        status, body = await self._get_json(target, target.api("/revisions"))
        if status != 200 or not envelope_ok(body):
            return target.repo_missing()
        revision, named = target.revision, target.revision in revision_names(body)
        if not named and (not path or not COMMIT_RE.match(revision)):
            return f"revision {revision!r} not found"
        if path:
            kind = "file" if file else "path"
            return f"{kind} {path!r} not found at revision {revision!r}"
        return None
