"""``HttpBackend``: the http:// and https:// origin adapter.

Layers, top to bottom (each converts the layer below's failures into its own):

1. ``stat`` / ``get`` / ``exists`` / ``list``: the ``Backend`` operations. ``stat`` sends HEAD
   and falls back to ``GET Range: bytes=0-0`` when HEAD is refused (405/501). ``get`` checks a
   ranged answer (206 with the exact ``Content-Range``) before handing out a single byte, then
   counts bytes so a short or long body is an error, never a silently wrong file. Once the
   first answer is known (``RequestOptions.expected``), ranged requests carry ``If-Range``
   and every answer's ETag / Last-Modified / total length must match it, else
   ``SourceChangedError``: two versions never meet in one file. (One
   exception to "a ranged request needs a 206": a 200 whose length equals a range that
   starts at 0 and covers the whole file carries exactly the bytes asked for, so it is used.)
2. ``_open``: retries with exponential backoff and jitter (``RetryPolicy``) on connection
   errors, timeouts, 429 and 500/502/503/504, honouring ``Retry-After``; only before the body
   starts. Maps the final status: 401/403 -> ``SourceAuthError``, 404/410 ->
   ``SourceNotFoundError``, anything else unusable -> ``SourceStatusError``.
3. ``_send``: one request, following up to ``MAX_REDIRECTS`` redirects by hand so that secret
   headers (``Authorization``, ``Cookie``, ``Proxy-Authorization``, ...) and the URL's userinfo
   (sent as Basic auth) only ever go to the origin the user named (scheme, host and port).
   aiohttp exceptions become ``SourceUnreachableError`` / ``SourceTimeoutError`` here.

A ``401`` with a registry's ``Bearer`` challenge to a request that carries no credentials,
on a distribution API path (``/v2/...``), is answered as a docker client does: once more
with an anonymous token from the challenge's realm (``oci_token.py``: realm checked, tokens
cached until they expire). So any node, a seed included, reads a public image's blobs from
docker.io or ghcr.io with its own anonymous token; a private repository stays a ``401``.

Every error message is ``<redacted url>: <cause>`` on one line; userinfo and header values
never appear in errors or logs. ``RequestOptions.timeout`` bounds connecting and each socket
read (not the whole transfer: a 100 GB file may take long, but must never stall).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
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
from damselfly.backends.http_responses import (
    checked_length,
    connection_reason,
    get_answers,
    http_body,
    one_line,
    read_body,
    stat_from_head,
    stat_of,
    status_error,
)
from damselfly.backends.oci_token import (
    AnonymousTokens,
    Fetch,
    is_registry_path,
    parse_challenge,
    read_answer,
)
from damselfly.core.errors import (
    BackendError,
    SourceProtocolError,
    SourceStatusError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import HttpUrl, SourceUrl
from damselfly.transport.http_session import create_origin_session, tls_for_request

MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: after attempt ``n`` (1-based) wait
    ``min(max_delay, initial_delay * multiplier**(n-1))`` minus a random share of up to
    ``jitter`` of it; a ``Retry-After`` lengthens the wait, never beyond ``max_delay``."""

    max_attempts: int = 5
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        backoff *= 1.0 - self.jitter * random.random()
        if retry_after is not None:
            backoff = max(backoff, retry_after)
        return min(self.max_delay, backoff)


class _Retryable(Exception):
    """A failure worth another attempt; carries the error to raise if attempts run out."""

    def __init__(self, error: BackendError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class HttpBackend:
    """The ``Backend`` for http(s) URLs; shared per process, per-request values in options."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        anonymous_tokens: AnonymousTokens | None = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._tokens = anonymous_tokens or AnonymousTokens()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        http_url = _require_http(url)
        try:
            response = await self._open(http_url, "HEAD", None, options, accept={200})
        except SourceStatusError as exc:
            if exc.status not in (405, 501):
                raise
            return await self._stat_by_probe(http_url, options)
        response.release()
        return stat_from_head(response)

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return await exists_by_stat(self, url, options)

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        raise SourceProtocolError(
            url.redacted(), "listing is not supported for http(s); give a URL per file"
        )

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        http_url = _require_http(url)
        if byte_range is not None and byte_range.length <= 0:
            return
        accept = get_answers(options.expected)
        response = await self._open(http_url, "GET", byte_range, options, accept=accept)
        try:
            expected = checked_length(response, http_url, byte_range, options.expected)
            async for chunk in read_body(response, http_url, expected, options.timeout):
                yield chunk
        finally:
            response.release()

    @contextlib.asynccontextmanager
    async def open_body(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[Body]:
        """``get``'s body read into the caller's buffers (``bodies.py``)."""
        http_url = _require_http(url)
        if byte_range is not None and byte_range.length <= 0:
            yield EmptyBody()
            return
        accept = get_answers(options.expected)
        response = await self._open(http_url, "GET", byte_range, options, accept=accept)
        with contextlib.closing(http_body(response, http_url, options.timeout)) as body:
            expected = checked_length(response, http_url, byte_range, options.expected)
            body.start(expected, lambda: read_body(response, http_url, expected, options.timeout))
            yield body

    async def _stat_by_probe(self, url: HttpUrl, options: RequestOptions) -> ObjectStat:
        probe = ByteRange(0, 1)
        response = await self._open(url, "GET", probe, options, accept={200, 206, 416})
        response.release()  # never read the body: a 200 may be the whole file
        headers = response.headers
        if response.status == 206:
            content_range = hh.parse_content_range(headers.get("Content-Range"))
            length = content_range.complete_length if content_range else None
            return stat_of(response, length, supports_ranges=True)
        if response.status == 416:
            length = hh.parse_unsatisfied_range(headers.get("Content-Range"))
            return stat_of(response, length, supports_ranges=length is not None)
        length = hh.parse_content_length(headers.get("Content-Length"))
        return stat_of(response, length, supports_ranges=False)

    async def _open(
        self,
        url: HttpUrl,
        method: str,
        byte_range: ByteRange | None,
        options: RequestOptions,
        *,
        accept: Collection[int],
    ) -> aiohttp.ClientResponse:
        """Send with retries; return a response whose status is in ``accept``."""
        headers = _request_headers(url, byte_range, options)
        attempt = 1
        while True:
            try:
                return await self._attempt(url, method, headers, options, accept)
            except _Retryable as retry:
                if attempt >= self._retry.max_attempts:
                    raise retry.error from retry.__cause__
                delay = self._retry.delay(attempt, retry.retry_after)
                _log.info("retrying in %.2fs (attempt %d): %s", delay, attempt, retry.error)
                await self._sleep(delay)
                attempt += 1

    async def _attempt(
        self,
        url: HttpUrl,
        method: str,
        headers: CIMultiDict[str],
        options: RequestOptions,
        accept: Collection[int],
    ) -> aiohttp.ClientResponse:
        response = await self._send(url, method, headers, options)
        if response.status == 401:
            response = await self._with_anonymous_token(url, method, headers, options, response)
        if response.status in accept:
            return response
        response.release()
        error = status_error(url, response)
        if response.status in RETRY_STATUSES:
            retry_after = hh.parse_retry_after(response.headers.get("Retry-After"))
            raise _Retryable(error, retry_after)
        raise error

    async def _with_anonymous_token(
        self,
        url: HttpUrl,
        method: str,
        headers: CIMultiDict[str],
        options: RequestOptions,
        refused: aiohttp.ClientResponse,
    ) -> aiohttp.ClientResponse:
        """A registry's Bearer challenge to a request without credentials: the request once
        more with an anonymous token; else the ``401`` as it came."""
        challenge = parse_challenge(refused.headers.get("WWW-Authenticate"))
        if challenge is None or _has_secrets(headers) or not is_registry_path(url.path):
            return refused
        registry = url.render(with_userinfo=False)
        token = await self._tokens.token(challenge, registry, self._token_fetch(options))
        if token is None:
            return refused
        refused.release()
        with_token = CIMultiDict(headers)
        with_token["Authorization"] = f"Bearer {token}"
        return await self._send(url, method, with_token, options)

    def _token_fetch(self, options: RequestOptions) -> Fetch:
        async def fetch(token_url: str) -> tuple[int, bytes]:
            timeout = aiohttp.ClientTimeout(total=options.timeout)
            try:
                async with self._client().get(
                    _yarl_url(token_url),
                    allow_redirects=False,
                    ssl=tls_for_request(insecure=options.insecure),
                    timeout=timeout,
                ) as response:
                    return response.status, await read_answer(response.content.read)
            except (aiohttp.ClientError, TimeoutError):
                return 0, b""

        return fetch

    async def _send(
        self, url: HttpUrl, method: str, headers: CIMultiDict[str], options: RequestOptions
    ) -> aiohttp.ClientResponse:
        """One request, following redirects; secret headers stay with the first origin."""
        first = target = _yarl_url(url.render(with_userinfo=False))
        for _ in range(MAX_REDIRECTS + 1):
            sent = headers if _same_origin(target, first) else _without_secrets(headers)
            response = await self._request(url, method, target, sent, options)
            if response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.release()
            target = _redirect_target(url, target, location, response.status)
        raise SourceProtocolError(url.redacted(), f"more than {MAX_REDIRECTS} redirects")

    async def _request(
        self,
        url: HttpUrl,
        method: str,
        target: URL,
        headers: CIMultiDict[str],
        options: RequestOptions,
    ) -> aiohttp.ClientResponse:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=options.timeout, sock_read=options.timeout
        )
        try:
            return await self._client().request(
                method,
                target,
                headers=headers,
                allow_redirects=False,
                ssl=tls_for_request(insecure=options.insecure),
                timeout=timeout,
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = f"TLS certificate verification failed: {exc.certificate_error}"
            raise SourceUnreachableError(url.redacted(), one_line(reason)) from exc
        except aiohttp.ClientSSLError as exc:
            raise SourceUnreachableError(url.redacted(), one_line(f"TLS error: {exc}")) from exc
        except TimeoutError as exc:
            reason = f"no answer within {options.timeout:g}s"
            raise _Retryable(SourceTimeoutError(url.redacted(), reason)) from exc
        except aiohttp.ClientError as exc:
            reason = connection_reason(exc)
            raise _Retryable(SourceUnreachableError(url.redacted(), reason)) from exc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = create_origin_session()
        return self._session


def _require_http(url: SourceUrl) -> HttpUrl:
    if not isinstance(url, HttpUrl):
        raise SourceProtocolError(url.redacted(), "not an http(s) URL")
    return url


def _request_headers(
    url: HttpUrl, byte_range: ByteRange | None, options: RequestOptions
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in options.headers:
        headers[name] = value  # -H replaces a default of the same name
    # URL userinfo becomes Basic auth, unless -H already gives an Authorization header.
    if url.username is not None and "Authorization" not in headers:
        userinfo = f"{url.username}:{url.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(userinfo).decode("ascii")
    if byte_range is not None:
        headers["Range"] = byte_range.http_header()
        validator = options.expected.if_range if options.expected else None
        if validator:  # a changed origin then answers 200 with its new version, never a mix
            headers["If-Range"] = validator
    return headers


def _has_secrets(headers: CIMultiDict[str]) -> bool:
    return any(name.lower() in SECRET_HEADERS for name in headers)


def _without_secrets(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in SECRET_HEADERS)


def _same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _redirect_target(url: HttpUrl, current: URL, location: str | None, status: int) -> URL:
    if not location:
        raise SourceProtocolError(url.redacted(), f"HTTP {status} redirect without Location")
    try:
        target = current.join(_yarl_url(location))
    except ValueError as exc:
        raise SourceProtocolError(url.redacted(), "redirect to an invalid URL") from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise SourceProtocolError(url.redacted(), f"redirect to a non-http URL ({target.scheme})")
    return target


def _yarl_url(text: str) -> URL:
    """Send an already percent-encoded URL byte for byte (a signed CDN URL must not be
    re-quoted); quote it only when it holds characters that cannot go on the wire as is."""
    clean = text.isascii() and text.isprintable() and " " not in text
    return URL(text, encoded=clean)
