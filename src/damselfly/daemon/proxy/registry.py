"""An OCI registry mirror: the distribution API's pull path, blobs through the mesh.

containerd (``hosts.toml`` naming ``http://127.0.0.1:65004`` as a mirror) and other OCI clients
(``skopeo``, ``crane``) send ``/v2/...`` requests here, containerd with ``?ns=<registry>``
naming the registry the image comes from. Each request goes to that registry (``namespaces``,
else ``https://<ns>``; without ``ns``, the configured ``upstream``):

- ``/v2/``, manifests, tag lists, ``HEAD`` on blobs: passed through unchanged, both ways. A
  registry's ``401`` with its ``WWW-Authenticate: Bearer realm=...`` challenge reaches the
  client as sent, the client fetches its token from the realm itself and sends it back here
  as ``Authorization``, which is forwarded to the registry only.
- ``GET /v2/<name>/blobs/sha256:<hex>``: first a ``HEAD`` with the client's credentials (the
  access check, and the blob's size); then the mesh, with the task named by the digest (the
  same task whatever registry, repository or tag names the layer, so a layer is fetched once
  per cluster) and the bytes verified against it. A ``HEAD`` the registry does not answer
  with ``200`` and a length (401, 404, a redirect) sends the ``GET`` through unchanged.

Public or private: what the registry serves without the client's credentials is public. A
blob ``GET`` carrying ``Authorization`` (every docker.io pull carries a token, anonymous or
not) is checked once more without it: a ``HEAD`` with no credentials, and on a ``401`` with a
``Bearer`` challenge, with an anonymous token the node fetches from the realm itself
(``backends/oci_token.py``: realm checked, cached per realm, service and scope until expiry).
If that succeeds, the blob is a public task: the client's token is dropped, the task is named
by the digest, shared and seedable, and every node reading the registry (a seed included)
does so with its own anonymous token (the http backend answers the challenge the same way).
Otherwise it stays private: read with the client's token, shared only under a grant. The
client's token never leaves this node.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import h11
from pydantic import SecretStr

from damselfly.backends.oci_token import AnonymousTokens, parse_challenge, read_answer
from damselfly.config.proxy import ProxySettings, RegistryMirror
from damselfly.daemon.proxy.exchange import Forwarder, Reply
from damselfly.daemon.proxy.headers import Headers, decode, end_to_end, get, without
from damselfly.daemon.proxy.links import LinkedFile
from damselfly.daemon.proxy.listener import answer_error, send_reply, serve_connection
from damselfly.daemon.proxy.mesh import MeshRequest, MeshUnavailableError, parse_range
from damselfly.daemon.proxy.metrics import ProxyStatistics
from damselfly.daemon.proxy.wire import HttpConnection, has_body

_BLOB = re.compile(r"^/v2/(?:[a-z0-9._/-]+)/blobs/sha256:(?P<hex>[0-9a-f]{64})$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_READ_METHODS = frozenset({"GET", "HEAD"})


class RegistryEndpoint:
    def __init__(
        self,
        mirror: RegistryMirror,
        settings: ProxySettings,
        forwarder: Forwarder,
        stats: ProxyStatistics,
    ) -> None:
        self.mirror, self.settings, self.forwarder, self.stats = mirror, settings, forwarder, stats
        self.label = "registry"
        self.anonymous_tokens = AnonymousTokens()

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await serve_connection(reader, writer, self.handle, self.settings, self.stats)

    async def handle(self, conn: HttpConnection, request: h11.Request) -> bool:
        """One origin-form request (also handed over by the forward proxy for ``/v2/``)."""
        method = request.method.decode("ascii")
        target = urlsplit(request.target.decode("latin-1"))
        upstream = self.upstream_for(target.query)
        if method not in _READ_METHODS or has_body(request) or upstream is None:
            self.stats.request_finished(self.label, "error", 0)
            await answer_error(conn, 405 if upstream else 400, "a pull-only registry mirror")
            return False
        if not (target.path == "/v2" or target.path.startswith("/v2/")):
            self.stats.request_finished(self.label, "error", 0)
            await answer_error(conn, 404, "not a distribution API path")
            return True
        headers = without(end_to_end(decode(request.headers.raw_items())), ["host", "expect"])
        url = upstream + target.path + _query_without_ns(target.query)
        blob = _BLOB.match(target.path)
        if method == "GET" and blob is not None:
            reply = await self._blob(url, headers, blob["hex"])
        else:
            reply = await self._pass(method, url, headers)
        return await send_reply(conn, reply, self.stats)

    def upstream_for(self, query: str) -> str | None:
        """The registry a request goes to; None for an ``ns`` that is not a host name."""
        ns = dict(parse_qsl(query)).get("ns")
        if ns is None:
            return self.mirror.upstream.rstrip("/")
        if ns in self.mirror.namespaces:
            return self.mirror.namespaces[ns].rstrip("/")
        return f"https://{ns}" if _HOST.match(ns) else None

    async def _pass(self, method: str, url: str, headers: Headers) -> Reply:
        reply = await self.forwarder.upstream.send(method, url, headers)
        return Reply(
            reply.status,
            end_to_end(reply.headers),
            reply.chunks(),
            self.label,
            "direct",
            reply.aclose,
        )

    async def _blob(self, url: str, headers: Headers, hex_digest: str) -> Reply:
        head = await self.forwarder.upstream.send("HEAD", url, without(headers, ["range"]))
        await head.aclose()
        length = get(head.headers, "content-length")
        if head.status != 200 or length is None or not length.isdigit():
            return await self._pass("GET", url, headers)
        byte_range = parse_range(get(headers, "range"))
        if isinstance(byte_range, str):  # a multi-range request: the registry answers it
            return await self._pass("GET", url, headers)
        authorization = get(headers, "authorization")
        kept = without(headers, ["authorization", "cookie", "range"])
        if authorization and await self._anonymously_readable(url, kept):
            authorization = None  # public: the task is shared; the client's token stays here
        linked = LinkedFile(url, hex_digest, int(length), None)
        secret = SecretStr(authorization) if authorization else None
        request = MeshRequest(url, tuple(kept), byte_range, secret, self.label, linked)
        response = await self.forwarder.mesh.fetch(request)
        response_headers = end_to_end(response.headers)
        if response.status in (200, 206):
            response_headers.append(("Docker-Content-Digest", f"sha256:{hex_digest}"))
        outcome = "mesh" if response.source == "mesh" else "direct"
        return Reply(
            response.status, response_headers, response.body, self.label, outcome, response.on_close
        )

    async def _anonymously_readable(self, url: str, headers: Headers) -> bool:
        """Does the registry serve ``url`` without the client's credentials (none at all, or
        an anonymous token from its realm)?"""
        head = await self.forwarder.upstream.send("HEAD", url, headers)
        await head.aclose()
        if head.status == 200:
            return True
        challenge = parse_challenge(get(head.headers, "www-authenticate"))
        if head.status != 401 or challenge is None:
            return False
        token = await self.anonymous_tokens.token(challenge, url, self._fetch_token)
        if token is None:
            return False
        with_token = [*headers, ("Authorization", f"Bearer {token}")]
        head = await self.forwarder.upstream.send("HEAD", url, with_token)
        await head.aclose()
        return head.status == 200

    async def _fetch_token(self, token_url: str) -> tuple[int, bytes]:
        """A realm's answer to a request without credentials; no redirect followed."""
        try:
            reply = await self.forwarder.upstream.send("GET", token_url, [])
        except MeshUnavailableError:
            return 0, b""
        try:
            return reply.status, await read_answer(reply.response.content.read)
        finally:
            await reply.aclose()


def _query_without_ns(query: str) -> str:
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "ns"]
    return f"?{urlencode(kept)}" if kept else ""
