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
``https://modelscope.cn``; see ``resolve_ms_endpoint``), ``ms_token`` (``resolve_ms_token``)
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
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from damselfly.backends.base import (
    Entry,
    ObjectStat,
    RangeNotHonouredError,
    RequestOptions,
    exists_by_stat,
)
from damselfly.backends.http_headers import parse_content_length, parse_content_range
from damselfly.core.digests import Digest
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceStatusError,
    SourceTimeoutError,
    SourceUnreachableError,
    UsageError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.transport.http_session import create_origin_session, tls_for_request

DEFAULT_ENDPOINT = "https://modelscope.cn"
DEFAULT_REVISION = "master"
LISTING_CAP = 3000  # entries the hub returns at most from one repo/files request
DATASET_PAGE_LENGTH = 200
MAX_LISTING_REQUESTS = 20_000
MAX_REDIRECTS = 5
MAX_JSON_LENGTH = 256 * 1024 * 1024
API_ATTEMPTS = 3
CREDENTIAL_HINT = "set --ms-token or MODELSCOPE_API_TOKEN"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_COMMIT_RE = re.compile(r"^[0-9a-f]{7,64}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

Sleep = Callable[[float], Awaitable[None]]
_Raw = list[object]  # listing entries as the hub sent them (the class shadows ``list``)


def resolve_ms_endpoint(explicit: str | None, env: Mapping[str, str]) -> str:
    """``--ms-base-url``, else ``MODELSCOPE_ENDPOINT``, else ``MODELSCOPE_DOMAIN`` (a bare
    domain means ``https://<domain>``), else ``https://modelscope.cn``; no trailing slash."""
    for value in (explicit, env.get("MODELSCOPE_ENDPOINT")):
        if value and value.strip():
            return value.strip().rstrip("/")
    domain = (env.get("MODELSCOPE_DOMAIN") or "").strip().rstrip("/")
    if domain:
        return domain if "://" in domain else f"https://{domain}"
    return DEFAULT_ENDPOINT


def resolve_ms_token(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """``--ms-token``, else ``MODELSCOPE_API_TOKEN``, else no token."""
    for value in (explicit, env.get("MODELSCOPE_API_TOKEN")):
        if value and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True)
class _Target:
    """One request's view of a repo: where, as whom, at which revision."""

    url: HubUrl
    endpoint: str
    revision: str
    timeout: float
    insecure: bool
    token: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return str(self.url.with_path(""))

    def api(self, suffix: str, params: Mapping[str, str] | None = None) -> URL:
        base = f"{self.endpoint}/api/v1/{self.url.repo_type}/{self.url.repo_id}{suffix}"
        query = f"?{urlencode(params)}" if params else ""
        return URL(base + query, encoded=True)

    def repo_missing(self) -> str:
        if self.token is None:
            return f"repository not found (or private: {CREDENTIAL_HINT})"
        return "repository not found (or not accessible with the given token)"


@dataclass(frozen=True)
class _Listed:
    path: str  # repo-relative
    size: int
    sha256: str | None
    revision: str  # what to fetch it at


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
        target = _target(url, options)
        raw = await self._listing(target, target.url.path, recursive=True)
        listed = _parse_listing(target, raw, target.url.path)
        return [_entry(target, item) for item in listed]

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        target = _target(url, options)
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
        target = _target(url, options)
        if not target.url.path:
            raise SourceProtocolError(target.label, "the repository root is not a file")
        if byte_range is not None and byte_range.length <= 0:
            return
        response = await self._open_file(target, byte_range)
        try:
            expected = _expected_length(target, response, byte_range)
            async for chunk in _body(target, response, expected):
                yield chunk
        finally:
            response.release()

    # -- listing ---------------------------------------------------------------------------

    async def _find(self, target: _Target) -> _Listed:
        path = target.url.path
        if not path:
            raise SourceProtocolError(target.label, "the repository root is not a file")
        parent = path.rpartition("/")[0]
        raw = await self._listing(target, parent, recursive=False)
        for item in _parse_listing(target, raw, parent):
            if item.path == path:
                return item
        reason = f"file {path!r} not found at revision {target.revision!r}"
        raise SourceNotFoundError(target.label, 404, reason)

    async def _listing(self, target: _Target, root: str, *, recursive: bool) -> _Raw:
        if target.url.repo_type == "datasets":
            return await self._dataset_pages(target, root, recursive)
        if not recursive:
            return await self._page(target, "/repo/files", _params(target, root, False))
        return await self._walk(target, root)

    async def _walk(self, target: _Target, root: str) -> _Raw:
        """Recursive listing of ``root``; a full (truncated) answer is split by directory."""
        found: _Raw = []
        pending, requests = [root], 0
        while pending:
            directory = pending.pop()
            requests += 2
            if requests > MAX_LISTING_REQUESTS:
                raise SourceProtocolError(target.label, "file listing does not end")
            page = await self._page(target, "/repo/files", _params(target, directory, True))
            if len(page) < self._listing_cap:
                found.extend(page)
                continue
            shallow = await self._page(target, "/repo/files", _params(target, directory, False))
            if len(shallow) >= self._listing_cap:
                reason = f"directory {directory or '/'!r} holds {self._listing_cap} or more"
                raise SourceProtocolError(target.label, reason + " entries; cannot list it all")
            for item in shallow:
                if _is_tree(item):
                    pending.append(_subdirectory(target, item, directory))
                else:
                    found.append(item)
        return found

    async def _dataset_pages(self, target: _Target, root: str, recursive: bool) -> _Raw:
        found: _Raw = []
        for number in range(1, MAX_LISTING_REQUESTS + 1):
            params = _params(target, root, recursive)
            params |= {"PageNumber": str(number), "PageSize": str(self._page_length)}
            page = await self._page(target, "/repo/tree", params)
            found.extend(page)
            if len(page) < self._page_length:
                return found
        raise SourceProtocolError(target.label, "dataset listing does not end")

    async def _page(self, target: _Target, suffix: str, params: dict[str, str]) -> _Raw:
        status, body = await self._get_json(target, target.api(suffix, params))
        if status == 200 and _envelope_ok(body):
            return _files_of(target, body)
        raise await self._failure(target, status, body, path=params.get("Root", ""))

    # -- requests ----------------------------------------------------------------------------

    async def _get_json(self, target: _Target, url: URL) -> tuple[int, object]:
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
                        return response.status, await _json(target, response)
            await self._sleep(0.25 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _open_file(
        self, target: _Target, byte_range: ByteRange | None
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
            body = await _json(target, response)
        raise await self._failure(target, response.status, body, path=target.url.path, file=True)

    async def _send(
        self, target: _Target, url: URL, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """One GET, following redirects by hand: credentials only go to the hub's origin."""
        hub = URL(target.endpoint)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if target.token is not None and _same_origin(url, hub):
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
        self, target: _Target, url: URL, headers: Mapping[str, str]
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
            reason = f"hub {_origin(target.endpoint)} did not answer within {target.timeout:g}s"
            raise SourceTimeoutError(target.label, reason) from exc
        except aiohttp.ClientError as exc:
            reason = f"hub {_origin(target.endpoint)} unreachable: {_safe(target, exc)}"
            raise SourceUnreachableError(target.label, reason) from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = create_origin_session()
        return self._session

    # -- errors --------------------------------------------------------------------------------

    async def _failure(
        self, target: _Target, status: int, body: object, *, path: str, file: bool = False
    ) -> BackendError:
        """The one place a failed hub answer becomes a typed error naming the repo."""
        message = _hub_message(target, body)
        if status in (401, 403):
            return SourceAuthError(target.label, status, target.repo_missing())
        if status == 404 or (status == 200 and not _envelope_ok(body)):
            reason = await self._missing_reason(target, path, file=file)
            if reason is not None:
                return SourceNotFoundError(target.label, 404, reason)
        if status == 200:
            return SourceProtocolError(target.label, f"hub refused the request{message}")
        return SourceStatusError(target.label, status, f"hub answered HTTP {status}{message}")

    async def _missing_reason(self, target: _Target, path: str, *, file: bool) -> str | None:
        """Which part is missing, asked of ``/revisions``: repo, revision or path."""
        status, body = await self._get_json(target, target.api("/revisions"))
        if status != 200 or not _envelope_ok(body):
            return target.repo_missing()
        revision, named = target.revision, target.revision in _revision_names(body)
        if not named and (not path or not _COMMIT_RE.match(revision)):
            return f"revision {revision!r} not found"
        if path:
            kind = "file" if file else "path"
            return f"{kind} {path!r} not found at revision {revision!r}"
        return None


# -- pure helpers ------------------------------------------------------------------------------


def _target(url: SourceUrl, options: RequestOptions) -> _Target:
    if not isinstance(url, HubUrl) or url.scheme != "modelscope":
        raise SourceProtocolError(url.redacted(), "not a modelscope:// URL")
    endpoint = (options.param("ms_endpoint") or DEFAULT_ENDPOINT).rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"ModelScope endpoint {_origin(endpoint)!r}: expected an http(s) URL")
    revision = options.param("ms_revision") or DEFAULT_REVISION
    if any(ord(c) < 0x20 for c in revision):
        raise UsageError(f"ModelScope revision {revision!r}: contains control characters")
    token = options.param("ms_token") or None
    return _Target(url, endpoint, revision, options.timeout, options.insecure, token)


def _params(target: _Target, root: str, recursive: bool) -> dict[str, str]:
    params = {"Revision": target.revision, "Recursive": str(recursive)}
    return params | ({"Root": root} if root else {})


def _envelope_ok(body: object) -> bool:
    if not isinstance(body, dict):
        return False
    code = body.get("Code", 200)
    return str(code) == "200" and body.get("Success", True) is not False


def _files_of(target: _Target, body: object) -> list[object]:
    data = body.get("Data") if isinstance(body, dict) else None
    files = data.get("Files") if isinstance(data, dict) else data
    if files is None:
        return []
    if not isinstance(files, list):
        raise SourceProtocolError(target.label, "malformed file listing (no Data.Files list)")
    return files


def _is_tree(item: object) -> bool:
    return isinstance(item, dict) and item.get("Type") == "tree"


def _subdirectory(target: _Target, item: object, directory: str) -> str:
    path = _checked_path(target, item.get("Path") if isinstance(item, dict) else None)
    if not _is_below(path, directory) or path == directory:
        raise _bad_listing(target, "directory outside the listed folder", path)
    return path


def _parse_listing(target: _Target, raw: list[object], root: str) -> list[_Listed]:
    """Files below ``root`` from an untrusted listing; every bad entry is an error."""
    listed: dict[str, _Listed] = {}
    for item in raw:
        if _is_tree(item):
            continue
        entry = _parse_file(target, item)
        if not _is_below(entry.path, root):
            raise _bad_listing(target, "path outside the requested folder", entry.path)
        if entry.path in listed:
            raise _bad_listing(target, "duplicate path", entry.path)
        listed[entry.path] = entry
    return sorted(listed.values(), key=lambda e: e.path)


def _parse_file(target: _Target, item: object) -> _Listed:
    if not isinstance(item, dict) or item.get("Type", "blob") != "blob":
        raise SourceProtocolError(target.label, f"malformed listing entry {_short(item)}")
    path = _checked_path(target, item.get("Path"))
    size = item.get("Size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad_listing(target, f"bad Size {_short(size)}", path)
    sha256 = item.get("Sha256") or None
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256_RE.match(sha256)):
        raise _bad_listing(target, f"bad Sha256 {_short(sha256)}", path)
    commit = item.get("Revision")
    pinned = commit if isinstance(commit, str) and _COMMIT_RE.match(commit) else target.revision
    return _Listed(path, size, sha256, pinned)


def _checked_path(target: _Target, path: object) -> str:
    if not isinstance(path, str) or not path:
        raise _bad_listing(target, "missing or non-text path", path)
    problem = unsafe_path_reason(path)
    if problem is not None:
        raise _bad_listing(target, problem, path)
    return path


def _is_below(path: str, root: str) -> bool:
    return not root or path == root or path.startswith(root + "/")


def _bad_listing(target: _Target, reason: str, path: object) -> SourceProtocolError:
    return SourceProtocolError(target.label, f"untrusted file listing: {reason}: {path!r}")


def _entry(target: _Target, item: _Listed) -> Entry:
    root = target.url.path
    relative = item.path
    if root:
        relative = root.rpartition("/")[2] if item.path == root else item.path[len(root) + 1 :]
    return Entry(
        url=target.url.with_path(item.path),
        path=relative,
        content_length=item.size,
        content_digest=Digest("sha256", item.sha256) if item.sha256 else None,
        params=(("ms_revision", item.revision),),
    )


def _revision_names(body: object) -> set[str]:
    data = body.get("Data") if isinstance(body, dict) else None
    revision_map = data.get("RevisionMap") if isinstance(data, dict) else None
    names: set[str] = set()
    for kind in ("Branches", "Tags"):
        items = revision_map.get(kind) if isinstance(revision_map, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("Revision"), str):
                names.add(item["Revision"])
    return names


def _expected_length(
    target: _Target, response: aiohttp.ClientResponse, byte_range: ByteRange | None
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


async def _body(
    target: _Target, response: aiohttp.ClientResponse, expected: int | None
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
        reason = f"file transfer broke: {_safe(target, exc)}"
        raise SourceUnreachableError(target.label, reason) from exc
    if expected is not None and received != expected:
        reason = f"body ended after {received} of {expected} bytes"
        raise SourceProtocolError(target.label, reason)


async def _json(target: _Target, response: aiohttp.ClientResponse) -> object:
    """The response's JSON (never via aiohttp's ``json()``, whose errors carry headers)."""
    try:
        raw = await response.content.read(MAX_JSON_LENGTH)
    except (TimeoutError, aiohttp.ClientError) as exc:
        reason = f"hub answer broke off: {_safe(target, exc)}"
        raise SourceUnreachableError(target.label, reason) from exc
    try:
        body: object = json.loads(raw)
    except ValueError:
        if response.status == 200:
            raise SourceProtocolError(target.label, "hub answer is not JSON") from None
        return None
    return body


def _hub_message(target: _Target, body: object) -> str:
    message = body.get("Message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        return ""
    return f" ({_redact(target, ' '.join(message.split()))[:200]})"


def _safe(target: _Target, exc: BaseException) -> str:
    return _redact(target, " ".join(f"{type(exc).__name__}: {exc}".split()))[:300]


def _redact(target: _Target, text: str) -> str:
    return text.replace(target.token, "***") if target.token else text


def _short(value: Any) -> str:
    return repr(value)[:80]


def _same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.explicit_port or a.port) == (
        b.scheme,
        b.host,
        b.explicit_port or b.port,
    )


def _origin(endpoint: str) -> str:
    """``scheme://host[:port]`` of an endpoint, without userinfo or path."""
    parts = urlsplit(endpoint)
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}"
