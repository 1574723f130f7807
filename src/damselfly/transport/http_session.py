"""The shared aiohttp client session damselfly uses to talk to origins.

One session per process (per event loop), owned by whoever created it (normally
``HttpBackend``), with:

- a large keep-alive connection pool (``POOL_LIMIT`` connections, ``POOL_LIMIT_PER_HOST`` per
  origin), because a download fetches many pieces of one file from one host in parallel;
- ``auto_decompress=False``: we want the origin's bytes exactly, and ask for
  ``Accept-Encoding: identity`` so digests and ranges apply to the file itself;
- a big read buffer (``READ_BUFFER_LENGTH``), so a single stream can run at GB/s over loopback
  without the reader pausing the socket every 256 KiB;
- TLS verification on, with an ``ssl.SSLContext`` from ``ssl.create_default_context()``. That
  honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` (OpenSSL's own variables) and does not use
  certifi, so a private CA installed on the machine is trusted the way curl trusts it.
  ``tls_for_request(insecure=True)`` turns verification off for one request (``--insecure``).
- no cookie jar (cookies are credentials; a shared backend must not carry one user's cookies
  into another user's request), and no netrc;
- the forward proxy the environment names for origin traffic (``HTTPS_PROXY``, ``HTTP_PROXY``,
  ``ALL_PROXY``, ``NO_PROXY``, ``DAMSELFLY_ORIGIN_PROXY``: ``origin_proxy.py``), chosen per
  request (each redirect hop too) and never this node's own dfdaemon proxy. Peer sessions
  (``verbatim_session`` with the default request class) never use a proxy.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from yarl import URL

from damselfly.transport.origin_proxy import OriginProxies

POOL_LIMIT = 64
POOL_LIMIT_PER_HOST = 16
KEEPALIVE_TIMEOUT = 30.0
READ_BUFFER_LENGTH = 4 * 1024 * 1024
USER_AGENT = "damselfly/0.1"


_TRUST_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")
_CONTEXTS: dict[tuple[str | None, ...], ssl.SSLContext] = {}


def default_ssl_context() -> ssl.SSLContext:
    """A verifying TLS context that trusts the system store (and ``SSL_CERT_FILE``).

    Made once per process for each value of the trust variables and shared: loading the
    system's CA bundle takes ~14 ms here, and a daemon opens an origin session per download,
    so a cached 1 KiB file spent 40 % of its time on it (issue 15, small files). A context
    holds no per-connection state; nothing changes one after it is made."""
    key = tuple(os.environ.get(name) for name in _TRUST_VARIABLES)
    context = _CONTEXTS.get(key)
    if context is None:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _CONTEXTS[key] = context
    return context


def tls_for_request(*, insecure: bool) -> Literal[True, False]:
    """The ``ssl=`` argument for one request: the session's context, or no verification."""
    return not insecure


def create_origin_session(
    *,
    ssl_context: ssl.SSLContext | None = None,
    pool_limit: int = POOL_LIMIT,
    pool_limit_per_host: int = POOL_LIMIT_PER_HOST,
    read_buffer_length: int = READ_BUFFER_LENGTH,
    env: Mapping[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A new session for origin traffic; call inside a running event loop, close with
    ``await session.close()``. Proxies come from ``env`` (default: the process environment,
    read now)."""
    proxies = OriginProxies.from_env(os.environ if env is None else env)
    connector = aiohttp.TCPConnector(
        limit=pool_limit,
        limit_per_host=pool_limit_per_host,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        ssl=ssl_context or default_ssl_context(),
        ttl_dns_cache=60,
    )
    return verbatim_session(
        connector,
        read_buffer_length=read_buffer_length,
        user_agent=USER_AGENT,
        max_field_size=16 * 1024,
        request_class=proxying_request_class(proxies),
    )


def proxying_request_class(proxies: OriginProxies) -> type[aiohttp.ClientRequest]:
    """aiohttp's request class, with ``proxies``' choice for every request that names none."""
    if not (proxies.https or proxies.http):
        return aiohttp.ClientRequest

    class OriginRequest(aiohttp.ClientRequest):
        def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
            proxy = proxies.proxy_for(url) if kwargs.get("proxy") is None else None
            if proxy is not None:
                if proxy.user is not None and kwargs.get("proxy_auth") is None:
                    login, password = proxy.user, proxy.password or ""
                    kwargs["proxy_auth"] = aiohttp.BasicAuth(login, password)
                kwargs["proxy"] = proxy.with_user(None)
            super().__init__(method, url, **kwargs)

    return OriginRequest


def verbatim_session(
    connector: aiohttp.BaseConnector,
    *,
    read_buffer_length: int,
    user_agent: str,
    max_field_size: int = 8190,
    request_class: type[aiohttp.ClientRequest] = aiohttp.ClientRequest,
) -> aiohttp.ClientSession:
    """A session that hands bodies over as sent (no decompression) and takes nothing from its
    surroundings (no cookies, no proxy or netrc from the environment, no total timeout: the
    callers time each read). Origin and peer sessions differ only in their connector."""
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        read_bufsize=read_buffer_length,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
        max_field_size=max_field_size,
        request_class=request_class,
    )


async def next_chunk(response: aiohttp.ClientResponse) -> bytes:
    """The next bytes of the body as asyncio received them (no joining copy); ``b""`` at its
    end. HTTP chunk boundaries carry no data and are skipped. Read timeouts propagate."""
    while True:
        data, end_of_http_chunk = await response.content.readchunk()
        # aiohttp's shared empty body (HEAD, 204, 304) answers (b"", True) for ever.
        if data or not end_of_http_chunk or response.content.at_eof():
            return data
