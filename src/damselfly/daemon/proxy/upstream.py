"""Requests to origins: one verifying aiohttp session, and ``DirectFetcher`` over it.

The session forwards what the client sent and returns what the origin answered, bytes and
headers untouched: no default ``User-Agent``/``Accept-Encoding``, no decompression, no cookie
jar, no environment proxy (the proxy must never loop into itself), no URL re-quoting (a
revision like ``refs%2Fpr%2F1`` stays encoded). Origin certificates are always verified, against
the configured bundle or the system trust.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from pydantic import SecretStr
from yarl import URL

from damselfly.daemon.proxy.headers import Headers, decode, without
from damselfly.daemon.proxy.mesh import MeshRequest, MeshResponse, MeshUnavailableError
from damselfly.transport.http_session import default_ssl_context

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def origin_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verification against ``ca_bundle``, or the system trust when None."""
    if ca_bundle is None:
        return default_ssl_context()
    context = ssl.create_default_context(cafile=str(ca_bundle))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass
class UpstreamReply:
    status: int
    headers: Headers
    response: aiohttp.ClientResponse

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            # readany, not transport's next_chunk: a body-less response (HEAD, 304) shares
            # aiohttp's EMPTY_PAYLOAD, whose readchunk() reports an endless run of empty chunks
            while chunk := await self.response.content.readany():
                yield chunk
        finally:
            self.response.release()

    async def aclose(self) -> None:
        self.response.release()


class Upstream:
    """The proxy's client side; ``start()`` inside the event loop, ``aclose()`` at the end."""

    def __init__(
        self, *, ca_bundle: Path | None = None, timeout: float = 30.0, max_connections: int = 1024
    ) -> None:
        # One client connection has at most one request upstream at a time, so the client cap
        # bounds the pool; no per-host limit, or long downloads from one CDN host would queue
        # every other request to it behind them.
        self._max_connections = max_connections
        self._ssl = origin_ssl_context(ca_bundle)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            timeout=self._timeout,
            max_field_size=64 * 1024,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: AsyncIterable[bytes] | None = None,
    ) -> UpstreamReply:
        """One request, redirects not followed; raises ``MeshUnavailableError`` when the origin
        cannot be reached (connect, TLS, timeout)."""
        assert self._session is not None, "Upstream.start() was not called"
        try:
            response = await self._session.request(
                method,
                URL(url, encoded=True),
                headers=without(headers, ["host"]),
                data=body,
                allow_redirects=False,
                skip_auto_headers=_AUTO_HEADERS,
            )
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise MeshUnavailableError(_origin(url), f"{type(exc).__name__}: {exc}") from exc
        return UpstreamReply(response.status, decode(response.raw_headers), response)


class DirectFetcher:
    """A ``MeshFetcher`` that reads the origin itself: for ``direct`` rules, and the fallback.

    Follows redirects (the hub's 302 to its CDN) and drops ``Authorization`` when the origin
    changes, as the SDKs do: a signed CDN URL must not receive the hub token.
    """

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def fetch(self, request: MeshRequest) -> MeshResponse:
        url, authorization = request.url, request.authorization
        for _ in range(MAX_REDIRECTS + 1):
            reply = await self.upstream.send("GET", url, _origin_headers(request, authorization))
            location = _location(reply)
            if location is None:
                return MeshResponse(
                    reply.status, reply.headers, reply.chunks(), reply.aclose, source="origin"
                )
            reply.response.release()
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                authorization = None
            url = target
        raise MeshUnavailableError(_origin(request.url), f"more than {MAX_REDIRECTS} redirects")


def _origin_headers(request: MeshRequest, authorization: SecretStr | None) -> Headers:
    headers = without(request.headers, ["range", "authorization"])
    if request.byte_range is not None:
        first, last = request.byte_range
        spec = f"{'' if first is None else first}-{'' if last is None else last}"
        headers.append(("Range", f"bytes={spec}"))
    if authorization is not None:
        headers.append(("Authorization", authorization.get_secret_value()))
    return headers


def _location(reply: UpstreamReply) -> str | None:
    if reply.status not in REDIRECTS:
        return None
    return next((v for n, v in reply.headers if n.lower() == "location"), None)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
