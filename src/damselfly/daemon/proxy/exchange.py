"""One request forwarded: rule lookup, mesh or origin, and the reply to stream back.

``Forwarder.forward`` is the whole policy of the proxy in a few lines: find the rule, send
file content of non-``direct`` rules to the ``MeshFetcher``, everything else to the origin as
it came. The forward proxy, its TLS interception and the hub mirror endpoints all call it
with an absolute URL; they differ only in how they learn that URL and in how they adjust the
reply (``mirror.py``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from damselfly.core.errors import DamselflyError
from damselfly.daemon.proxy.headers import (
    CREDENTIALS,
    Headers,
    end_to_end,
    get,
    split_credentials,
    without,
)
from damselfly.daemon.proxy.links import LinkedFile, LinkMemo, PublicLinks, same_link
from damselfly.daemon.proxy.mesh import (
    MeshFetcher,
    MeshRequest,
    MeshResponse,
    MeshUnavailableError,
    close_body,
    parse_range,
)
from damselfly.daemon.proxy.routing import CompiledRule, RuleSet, is_content, upgrade_scheme
from damselfly.daemon.proxy.upstream import Upstream
from damselfly.daemon.proxy.xet import (
    api_request_headers,
    is_hub_api,
    without_xet_headers,
    without_xet_json,
)

log = logging.getLogger(__name__)

_CONDITIONALS = (
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
)


@dataclass
class ClientRequest:
    method: str
    url: str  # absolute
    headers: Headers  # end-to-end headers as the client sent them, credentials included
    body: AsyncIterator[bytes] | None = None  # None: the request has no body


@dataclass
class Reply:
    status: int
    headers: Headers
    body: AsyncIterator[bytes]
    rule: str
    outcome: str  # "mesh" | "direct" | "error"
    on_close: Callable[[], Coroutine[Any, Any, None]] | None = None

    async def aclose(self) -> None:
        await close_body(self.body, self.on_close)


def error_reply(status: int, message: str, rule: str = "") -> Reply:
    body = (message + "\n").encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return Reply(status, headers, _once(body), rule, "error")


class Forwarder:
    def __init__(self, rules: RuleSet, mesh: MeshFetcher, upstream: Upstream) -> None:
        self.rules, self.mesh, self.upstream = rules, mesh, upstream
        self.links = LinkMemo()
        self.public_links = PublicLinks()

    async def forward(self, request: ClientRequest, fallback: CompiledRule | None = None) -> Reply:
        """``fallback``: the rule to apply when none matches (a mirror endpoint's own)."""
        rule = self.rules.match(request.url) or fallback
        url = upgrade_scheme(request.url, rule)
        label = rule.label if rule is not None else ""
        log.debug("proxy %s %s (rule %s)", request.method, _without_query(url), label or "-")
        try:
            if self._through_mesh(rule, request, url):
                return await self._from_mesh(request, url, label)
            hub = rule is not None and not rule.rule.direct
            return await self._from_origin(request, url, label, without_xet=hub)
        except DamselflyError as exc:
            log.warning("proxy %s %s failed: %s", request.method, _without_query(url), exc)
            return error_reply(502, f"proxy: {exc.message}", label)
        except Exception:
            log.exception("proxy %s %s failed", request.method, _without_query(url))
            return error_reply(502, "proxy: internal error", label)

    def _through_mesh(self, rule: CompiledRule | None, request: ClientRequest, url: str) -> bool:
        if rule is None or rule.rule.direct or request.body is not None:
            return False
        return is_content(request.method, url) and parse_range(_range(request)) != "multi"

    async def _from_mesh(self, request: ClientRequest, url: str, label: str) -> Reply:
        headers, authorization = split_credentials(without(request.headers, ["range", "host"]))
        byte_range = parse_range(_range(request))
        assert not isinstance(byte_range, str)
        linked = self.links.lookup(url)
        if linked is not None and linked.authorized and authorization is None:
            linked = await self._public_link(linked, headers)
        mesh_request = MeshRequest(url, tuple(headers), byte_range, authorization, label, linked)
        response = await self.mesh.fetch(mesh_request)
        outcome = "mesh" if response.source == "mesh" else "direct"
        return _reply(response, label, outcome)

    async def _public_link(self, linked: LinkedFile, headers: Headers) -> LinkedFile:
        """``linked`` as if an anonymous client had been redirected, when the hub gives anyone
        the redirect it gave the token holder: the file is public, its task shared (the rule
        of ``docs/security.md``; ``registry.py`` keeps the same one for OCI blobs)."""
        public = self.public_links.lookup(linked)
        if public is None:
            public = await self._redirects_anyone(linked, headers)
            self.public_links.remember(linked, public)
        return dataclasses.replace(linked, authorized=False) if public else linked

    async def _redirects_anyone(self, linked: LinkedFile, headers: Headers) -> bool:
        """A ``HEAD`` on the file's ``resolve`` URL without the client's credentials."""
        plain = without(headers, _CONDITIONALS)  # a 304 would say nothing about the file
        try:
            reply = await self.upstream.send("HEAD", linked.resolve_url, plain)
        except MeshUnavailableError:
            return False
        await reply.aclose()
        return same_link(linked, reply.status, reply.headers)

    async def _from_origin(
        self, request: ClientRequest, url: str, label: str, *, without_xet: bool
    ) -> Reply:
        """The origin's answer; ``without_xet``: Xet advertisements removed (``xet.py``)."""
        api = without_xet and request.method == "GET" and is_hub_api(url)
        headers = api_request_headers(request.headers) if api else request.headers
        reply = await self.upstream.send(request.method, url, headers, request.body)
        authorized = any(name.lower() in CREDENTIALS for name, _ in request.headers)
        self.links.observe(url, reply.status, reply.headers, authorized=authorized)
        kept, body = end_to_end(reply.headers), reply.chunks()
        if without_xet:
            kept = without_xet_headers(kept)
        if api:
            try:
                kept, body = await without_xet_json(kept, body)
            except BaseException:
                await reply.aclose()
                raise
        return Reply(reply.status, kept, body, label, "direct", reply.aclose)


def _reply(response: MeshResponse, label: str, outcome: str) -> Reply:
    headers = without_xet_headers(end_to_end(response.headers))  # mesh rules are hub rules
    return Reply(response.status, headers, response.body, label, outcome, response.on_close)


def _range(request: ClientRequest) -> str | None:
    return get(request.headers, "range")


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
