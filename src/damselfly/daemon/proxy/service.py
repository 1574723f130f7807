"""``ProxyService``: the forward proxy, the hub mirror endpoints and the OCI registry mirrors,
built from settings.

This is the proxy's one entry point for the daemon: give it the settings, the daemon's data
directory (for the proxy CA) and a ``MeshFetcher`` (the engine-backed one; without it,
content is read from origins by ``DirectFetcher``), ``await start()``, and register
``collector()`` in the daemon's metrics registry. ``aclose()`` stops everything it started.
"""

from __future__ import annotations

from pathlib import Path

from damselfly.config.base import split_host_port
from damselfly.config.proxy import ProxySettings, RegistryMirror
from damselfly.daemon.proxy.ca import ProxyCA
from damselfly.daemon.proxy.exchange import Forwarder
from damselfly.daemon.proxy.listener import Handler, Listener
from damselfly.daemon.proxy.mesh import MeshFetcher
from damselfly.daemon.proxy.metrics import ProxyCollector, ProxyStatistics
from damselfly.daemon.proxy.mirror import MirrorEndpoint
from damselfly.daemon.proxy.registry import RegistryEndpoint
from damselfly.daemon.proxy.routing import RuleSet
from damselfly.daemon.proxy.server import ProxyServer
from damselfly.daemon.proxy.upstream import DirectFetcher, Upstream


class ProxyService:
    def __init__(
        self, settings: ProxySettings, *, data_dir: Path, mesh: MeshFetcher | None = None
    ) -> None:
        self.settings = settings
        self.statistics = ProxyStatistics()
        self.upstream = Upstream(
            ca_bundle=settings.upstream_ca_bundle,
            timeout=settings.upstream_timeout,
            max_connections=settings.max_connections,
        )
        self.forwarder = Forwarder(
            RuleSet(settings.proxies), mesh or DirectFetcher(self.upstream), self.upstream
        )
        self.ca = ProxyCA.for_proxy(settings, data_dir) if settings.enabled else None
        self.proxy: Listener | None = None
        self.mirrors: list[Listener] = []
        self.registries: list[Listener] = []

    async def start(self) -> None:
        await self.upstream.start()
        try:
            if self.settings.enabled:
                mirrors = self.settings.registry_mirrors
                own_registry = RegistryEndpoint(
                    mirrors[0] if mirrors else RegistryMirror(),
                    self.settings,
                    self.forwarder,
                    self.statistics,
                )
                server = ProxyServer(
                    self.settings, self.forwarder, self.ca, self.statistics, own_registry
                )
                self.proxy = await self._listen(self.settings.listen, server.handle_connection)
            for mirror in self.settings.mirrors:
                endpoint = MirrorEndpoint(mirror, self.settings, self.forwarder, self.statistics)
                self.mirrors.append(await self._listen(mirror.listen, endpoint.handle_connection))
            for registry in self.settings.registry_mirrors:
                served = RegistryEndpoint(registry, self.settings, self.forwarder, self.statistics)
                self.registries.append(
                    await self._listen(registry.listen, served.handle_connection)
                )
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        listeners = [self.proxy] if self.proxy else []
        listeners += [*self.mirrors, *self.registries]
        self.proxy, self.mirrors, self.registries = None, [], []
        for listener in listeners:
            await listener.aclose()
        await self.upstream.aclose()

    async def __aenter__(self) -> ProxyService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def address(self) -> str:
        """``host:port`` the forward proxy listens on; empty when it does not run."""
        return f"{self.proxy.host}:{self.proxy.port}" if self.proxy is not None else ""

    @property
    def mirror_addresses(self) -> tuple[str, ...]:
        return tuple(f"{m.host}:{m.port}" for m in self.mirrors)

    @property
    def registry_addresses(self) -> tuple[str, ...]:
        return tuple(f"{r.host}:{r.port}" for r in self.registries)

    def use_mesh(self, mesh: MeshFetcher) -> None:
        """Serve content through ``mesh`` from now on; ``DirectFetcher(self.upstream)`` is
        the origin fallback an engine-backed fetcher can wrap."""
        self.forwarder.mesh = mesh

    def collector(self) -> ProxyCollector:
        return ProxyCollector(self.statistics)

    async def _listen(self, address: str, handler: Handler) -> Listener:
        host, port = split_host_port(address)
        listener = Listener(host, port, handler, self.statistics, self.settings.max_connections)
        await listener.start()
        return listener
