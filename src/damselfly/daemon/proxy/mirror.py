"""A hub mirror endpoint: the proxy answering as ``HF_ENDPOINT`` / ``MODELSCOPE_ENDPOINT``.

For users who cannot install a CA: ``HF_ENDPOINT=http://127.0.0.1:65002`` and the SDK speaks
plain HTTP to the daemon, which maps each origin-form request onto the configured upstream hub
(``https://huggingface.co`` + path) and forwards it with the same ``Forwarder`` as the proxy:
file content through the mesh, metadata to the hub. Under no configured rule, the endpoint's
own rule applies (content through the mesh).

The hub's answers name the hub; three rewrites keep the client on the mirror:

- ``Location`` and ``Link`` (tree pagination) URLs on the upstream hub point to the mirror;
- a ``HEAD`` on a file that the hub answers with a redirect to another host (its LFS/Xet CDN)
  becomes a ``200`` carrying the redirect's headers (``X-Linked-Etag``, ``X-Linked-Size``,
  ``X-Repo-Commit``, ``ETag``) with ``Content-Length`` set to the linked size. The SDK then
  downloads from the mirror's ``resolve`` URL, and that ``GET`` goes through the mesh, which
  follows the redirect server-side. (A redirect pointing back at the mirror would not work:
  huggingface_hub follows same-host redirects on ``HEAD`` and would lose those headers.)
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import h11

from damselfly.config.proxy import HubMirror, ProxyRule, ProxySettings
from damselfly.daemon.proxy.exchange import ClientRequest, Forwarder, Reply
from damselfly.daemon.proxy.headers import Headers, decode, end_to_end, get, without
from damselfly.daemon.proxy.listener import answer_error, send_reply, serve_connection
from damselfly.daemon.proxy.metrics import ProxyStatistics
from damselfly.daemon.proxy.routing import CompiledRule
from damselfly.daemon.proxy.upstream import REDIRECTS
from damselfly.daemon.proxy.wire import HttpConnection, has_body


class MirrorEndpoint:
    def __init__(
        self,
        mirror: HubMirror,
        settings: ProxySettings,
        forwarder: Forwarder,
        stats: ProxyStatistics,
    ) -> None:
        self.mirror, self.settings, self.forwarder, self.stats = mirror, settings, forwarder, stats
        self.upstream = mirror.upstream.rstrip("/")
        rule = ProxyRule(regx="^", name=f"mirror-{mirror.hub}")
        self.own_rule = CompiledRule(rule, re.compile(rule.regx))

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await serve_connection(reader, writer, self._handle, self.settings, self.stats)

    async def _handle(self, conn: HttpConnection, request: h11.Request) -> bool:
        target = request.target.decode("latin-1")
        if not target.startswith("/") or request.method == b"CONNECT":
            self.stats.request_finished(self.own_rule.label, "error", 0)
            await answer_error(conn, 400, "a hub mirror answers origin-form requests only")
            return False
        body = await conn.request_body(has_body(request))
        headers = without(end_to_end(decode(request.headers.raw_items())), ["expect"])
        own_base = f"http://{get(headers, 'host') or self.mirror.listen}"
        method = request.method.decode("ascii")
        client_request = ClientRequest(method, self.upstream + target, headers, body)
        reply = await self.forwarder.forward(client_request, self.own_rule)
        self._adjust(reply, method, own_base)
        return await send_reply(conn, reply, self.stats)

    def _adjust(self, reply: Reply, method: str, own_base: str) -> None:
        location = get(reply.headers, "location")
        if (
            method == "HEAD"
            and reply.status in REDIRECTS
            and location
            and self._elsewhere(location)
        ):
            reply.status = 200
            reply.headers = _folded(reply.headers)
        reply.headers = [(n, self._rebase(n, v, own_base)) for n, v in reply.headers]

    def _elsewhere(self, location: str) -> bool:
        parts = urlsplit(location)
        return bool(parts.netloc) and not location.startswith(self.upstream + "/")

    def _rebase(self, name: str, value: str, own_base: str) -> str:
        if name.lower() not in ("location", "link", "content-location"):
            return value
        return value.replace(self.upstream + "/", own_base + "/")


def _folded(headers: Headers) -> Headers:
    """A redirect's headers as a ``200``: no ``Location``; the linked file's size."""
    linked_size = get(headers, "x-linked-size")
    folded = without(headers, ["location", "content-length"])
    if linked_size is not None:
        folded.append(("Content-Length", linked_size))
    return folded
