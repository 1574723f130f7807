"""Fakes for the proxy's tests: a TLS test hub, and a ``MeshFetcher`` that records.

``TlsHfTestHub`` is ``HfTestHub`` (hub and CDN) served over TLS with a certificate from a
test CA (trustme), so real clients reach ``https://127.0.0.1:<port>`` through the proxy.

``RecordingMeshFetcher`` stands in for the daemon's engine-backed fetcher: it serves through
an inner fetcher (normally ``DirectFetcher``) and keeps what a real mesh would persist about
each request (URL, headers, range: ``records``), plus counts of requests and bytes, so a test
can assert what went through the mesh and that no credential was handed over to be kept.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from damselfly.daemon.proxy.links import LinkedFile
from damselfly.daemon.proxy.mesh import MeshFetcher, MeshRequest, MeshResponse
from damselfly.testing.hf_hub import HfTestHub

# The variables the SDKs and their HTTP stacks read a CA bundle from.
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")


def loopback_server_context(ca: Any) -> ssl.SSLContext:
    """A server context for ``127.0.0.1`` with a certificate from ``ca`` (a ``trustme.CA``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def url_rule(name: str, base_url: str, *, intercept: bool = False) -> dict[str, Any]:
    """A proxy rule (settings shape) for everything under ``base_url``; ``intercept``: its
    host's ``CONNECT``s are intercepted."""
    rule: dict[str, Any] = {"regx": "^" + base_url.replace(".", r"\.") + "/", "name": name}
    if intercept:
        rule["certs"] = {"hosts": [urlsplit(base_url).hostname]}
    return rule


def proxy_settings_json(
    upstream_ca_bundle: str, rules: Sequence[dict[str, Any]], mirrors: Sequence[dict[str, Any]]
) -> str:
    """``DAMSELFLY_DAEMON_PROXY`` for a cluster whose daemons reach a TLS test hub."""
    settings = {"proxies": list(rules), "upstream_ca_bundle": upstream_ca_bundle}
    return json.dumps(settings | {"mirrors": list(mirrors)})


class TlsHfTestHub(HfTestHub):
    def __init__(self, *args: Any, ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ssl_context = ssl_context

    async def _serve(self, app: web.Application, port: int) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self._host, port, ssl_context=self._ssl_context).start()
        return f"https://{self._host}:{runner.addresses[0][1]}"


@dataclass(frozen=True)
class MeshRecord:
    """What the fake mesh was given to keep (never the authorization)."""

    url: str
    headers: tuple[tuple[str, str], ...]
    byte_range: tuple[int | None, int | None] | None
    linked: LinkedFile | None = None


@dataclass
class RecordingMeshFetcher:
    inner: MeshFetcher
    records: list[MeshRecord] = field(default_factory=list)
    authorized_requests: int = 0
    bytes_served: int = 0

    async def fetch(self, request: MeshRequest) -> MeshResponse:
        record = MeshRecord(request.url, request.headers, request.byte_range, request.linked)
        self.records.append(record)
        self.authorized_requests += request.authorization is not None
        response = await self.inner.fetch(request)
        return MeshResponse(
            response.status,
            response.headers,
            self._count(response.body),
            response.on_close,
            source="mesh",
        )

    def paths(self) -> list[str]:
        return [record.url.split("?", 1)[0].split("/", 3)[-1] for record in self.records]

    async def _count(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in body:
            self.bytes_served += len(chunk)
            yield chunk
