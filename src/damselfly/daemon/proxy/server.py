"""The forward proxy: absolute-form requests, and ``CONNECT`` tunnelled or intercepted.

``CONNECT host:port`` to a host listed under some rule's ``certs`` is answered ``200``, then
the connection is upgraded to TLS with a certificate for that host from the node's proxy CA
(``ca.py``); the requests inside are read like any other, with URL ``https://host[:port]`` +
their path, and forwarded by the same ``Forwarder``. Any other ``CONNECT`` becomes a blind
byte tunnel (``tunnel.py``): the client completes TLS with the origin and sees its certificate.

An origin-form request for the distribution API (``GET /v2/...``, as containerd sends it to a
mirror from ``hosts.toml``) is answered by the registry mirror (``registry.py``), as
Dragonfly's dfdaemon does on its proxy port: ``damselfly containerd-config``'s default mirror,
``http://127.0.0.1:65001``, is this listener.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import h11

from damselfly.config.proxy import ProxySettings
from damselfly.daemon.proxy.ca import ProxyCA
from damselfly.daemon.proxy.exchange import ClientRequest, Forwarder
from damselfly.daemon.proxy.headers import decode, end_to_end, without
from damselfly.daemon.proxy.listener import (
    RequestHandler,
    answer_error,
    send_reply,
    serve_requests,
)
from damselfly.daemon.proxy.metrics import ProxyStatistics
from damselfly.daemon.proxy.registry import RegistryEndpoint
from damselfly.daemon.proxy.tunnel import open_tunnel, pipe
from damselfly.daemon.proxy.wire import ClientGone, HttpConnection, has_body

log = logging.getLogger(__name__)


def split_authority(target: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) of a CONNECT target; None when malformed."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c in host for c in "/@ ?#"):
        return None
    return host, int(port)


class ProxyServer:
    def __init__(
        self,
        settings: ProxySettings,
        forwarder: Forwarder,
        ca: ProxyCA | None,
        stats: ProxyStatistics,
        registry: RegistryEndpoint | None = None,
    ) -> None:
        self.settings, self.forwarder, self.ca, self.stats = settings, forwarder, ca, stats
        self.registry = registry  # answers origin-form /v2/ requests

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = HttpConnection(reader, writer, max_header_length=self.settings.max_header_length)
        await self._serve(conn, self._handle_plain)

    async def _serve(self, conn: HttpConnection, handler: RequestHandler) -> None:
        await serve_requests(
            conn,
            handler,
            idle_timeout=self.settings.idle_timeout,
            header_timeout=self.settings.header_timeout,
            stats=self.stats,
        )

    async def _handle_plain(self, conn: HttpConnection, request: h11.Request) -> bool:
        target = request.target.decode("latin-1")
        if request.method == b"CONNECT":
            await self._connect(conn, target)
            return False
        path = target.split("?", 1)[0]
        if self.registry is not None and (path == "/v2" or path.startswith("/v2/")):
            return await self.registry.handle(conn, request)
        if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).netloc:
            return await self._refuse(conn, 400, "a proxy request needs an absolute http(s) URL")
        return await self._forward(conn, request, target)

    async def _forward(self, conn: HttpConnection, request: h11.Request, url: str) -> bool:
        body = await conn.request_body(has_body(request))
        headers = without(end_to_end(decode(request.headers.raw_items())), ["expect"])
        method = request.method.decode("ascii")
        reply = await self.forwarder.forward(ClientRequest(method, url, headers, body))
        return await send_reply(conn, reply, self.stats)

    async def _refuse(self, conn: HttpConnection, status: int, message: str) -> bool:
        self.stats.request_finished("", "error", 0)
        await answer_error(conn, status, message)
        return False

    async def _connect(self, conn: HttpConnection, target: str) -> None:
        authority = split_authority(target)
        if authority is None:
            await self._refuse(conn, 400, f"bad CONNECT target {target!r}")
            return
        host, port = authority
        try:
            await conn.drain_body()
            if self.ca is not None and self.forwarder.rules.intercepts(host):
                await self._intercept(conn, host, port)
            else:
                await self._tunnel(conn, host, port)
        except ClientGone:
            log.debug("proxy: client left during CONNECT to %s:%d", host, port)

    async def _tunnel(self, conn: HttpConnection, host: str, port: int) -> None:
        try:
            upstream = await open_tunnel(host, port, self.settings.upstream_timeout)
        except OSError as exc:
            await self._refuse(conn, 502, f"cannot reach {host}:{port}: {exc.strerror or exc}")
            return
        try:
            await conn.send_head(200, [], reason="Connection Established")
        except ClientGone:
            upstream[1].close()
            raise
        early = conn.switched_bytes()
        rule = self.forwarder.rules.match(_origin(host, port) + "/")
        sent = await pipe(conn.reader, conn.writer, upstream, early)
        self.stats.request_finished(rule.label if rule else "", "tunnel", sent)

    async def _intercept(self, conn: HttpConnection, host: str, port: int) -> None:
        assert self.ca is not None
        await conn.send_head(200, [], reason="Connection Established")
        if conn.switched_bytes():
            log.debug("proxy: client spoke before CONNECT was answered; closing")
            return
        try:
            await conn.writer.start_tls(
                self.ca.server_context(host), ssl_handshake_timeout=self.settings.header_timeout
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            log.info("proxy: TLS with the client for %s failed: %s", host, exc)
            self.stats.request_finished("", "error", 0)
            return
        inner = HttpConnection(conn.reader, conn.writer, max_header_length=conn.max_header_length)
        origin = _origin(host, port)

        async def handle_inner(inner: HttpConnection, request: h11.Request) -> bool:
            target = request.target.decode("latin-1")
            if request.method == b"CONNECT" or not target.startswith("/"):
                return await self._refuse(inner, 400, "expected an origin-form request")
            return await self._forward(inner, request, origin + target)

        await self._serve(inner, handle_inner)


def _origin(host: str, port: int) -> str:
    """``https://host[:port]`` as a client would write the URL of a CONNECT target."""
    bracketed = f"[{host}]" if ":" in host else host
    return f"https://{bracketed}" + ("" if port == 443 else f":{port}")
