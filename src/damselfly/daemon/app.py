"""The one place dfdaemon is wired: settings -> store, piece server, scheduler link, announcer,
download engine, seed worker, local API, HTTP(S) proxy, metrics.

``serve(settings, stop=...)`` starts everything, reports the bound addresses through
``on_ready`` once the schedulers know this host (and a seed's job streams are open; a
scheduler that does not answer holds it at most ``READY_WAIT`` per step), runs the background
loops in one ``TaskGroup`` until ``stop`` is set, then leaves the schedulers and closes every
component in reverse order. Every collaborator is handed over when its user is built: the
announcer first, so the engine and the seed worker get its ``reannounce`` (their reporters'
answer to a scheduler that forgot this host) and all three share one set of the tasks this
host reads from their origin. The background loops and the ready line: ``loops.py``.

With mTLS (``settings.tls``, or ``DAMSELFLY_TLS_DIR``) the node's certificate is its identity:
its common name is the host id (the scheduler binds a host id to the certificate that first
announced it), the scheduler link and the piece client present it, the piece port requires a
client certificate of the cluster, and an enrolled node renews it in the background
(``security/node_tls.py``). Without TLS the host id is a UUID kept in the store directory and
the daemon says once that it trusts anyone who reaches its ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from damselfly.backends.registry import BackendRegistry, BackendSettings, default_registry
from damselfly.config.base import split_host_port
from damselfly.config.daemon import DaemonSettings
from damselfly.config.paths import default_socket_path, store_dir
from damselfly.config.security import PLAINTEXT_WARNING
from damselfly.core.errors import ConfigError
from damselfly.daemon.control.member import DaemonControl
from damselfly.daemon.engine.announcer import Announcer
from damselfly.daemon.engine.counters import EngineCounters
from damselfly.daemon.engine.peer_filler import PeerFiller
from damselfly.daemon.engine.runner import StoreRunner
from damselfly.daemon.engine.seed import SeedWorker
from damselfly.daemon.engine.settings import EngineSettings
from damselfly.daemon.imports.hub_fallback import HubFallbackRegistry
from damselfly.daemon.imports.importer import RepoImporter
from damselfly.daemon.imports.manifests import MeshManifests
from damselfly.daemon.loops import Loops, run_until
from damselfly.daemon.servers.import_api import import_routes
from damselfly.daemon.servers.local_api import LocalApi
from damselfly.daemon.servers.metrics import metrics_server
from damselfly.daemon.servers.private_access import PrivateAccess, PrivateTasks
from damselfly.daemon.servers.task_api import task_routes
from damselfly.daemon.servers.upload_guard import UploadLimits
from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.download.events import NullObserver
from damselfly.download.jobs import DownloadContext
from damselfly.download.public_files import PublicFiles
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.protocol.messages import HostInfo, HostType
from damselfly.security.grants import GrantVerifier
from damselfly.security.roles import Role
from damselfly.storage.space import space_reserve
from damselfly.storage.store import Store
from damselfly.transport.http_session import default_ssl_context
from damselfly.transport.piece_client import PieceClient
from damselfly.transport.scheduler.client import SchedulerClient

if TYPE_CHECKING:  # imported where used: the proxy when enabled, node_tls with TLS on
    from damselfly.daemon.proxy.service import ProxyService
    from damselfly.security.node_tls import NodeTls

log = logging.getLogger(__name__)

HOST_ID_FILE = "host_id"


@dataclass(frozen=True)
class RunningDaemon:
    host_id: str
    upload_url: str
    socket_path: Path
    metrics_address: str
    proxy_address: str = ""  # host:port of the forward proxy; empty when it is disabled
    mirror_addresses: tuple[str, ...] = ()  # host:port of each hub mirror endpoint
    registry_addresses: tuple[str, ...] = ()  # host:port of each OCI registry mirror


async def serve(
    settings: DaemonSettings,
    *,
    stop: asyncio.Event,
    env: Mapping[str, str] | None = None,
    on_ready: Callable[[RunningDaemon], None] | None = None,
) -> None:
    env = os.environ if env is None else env
    tls = node_tls(settings)
    with _store(settings) as store:
        await asyncio.to_thread(_warm_up, store)
        host_id = tls.node_id if tls is not None else host_id_of(store.root)
        async with contextlib.AsyncExitStack() as stack:
            private = PrivateTasks(store.root)
            upload = await stack.enter_async_context(_upload_server(settings, store, tls, private))
            control = await stack.enter_async_context(DaemonControl(settings, env, store.root))
            control.watch_upload(upload.set_rate_limit)
            channels = tls.channels() if tls is not None else None
            client = await stack.enter_async_context(
                SchedulerClient(settings.schedulers, channels=channels)
            )
            pieces = await stack.enter_async_context(
                PieceClient(tls=tls.client_context if tls else None, grants=client.grants)
            )
            origin_readers: set[str] = set()  # tasks this host reads from their origin
            announcer = Announcer(
                client,
                store,
                _host_info(settings, host_id, upload),
                interval=settings.announce_interval,
                origin_reader_tasks=lambda: origin_readers,
            )
            engine = PeerFiller(
                client,
                host_id,
                pieces,
                settings=_engine_settings(settings),
                on_piece_stored=upload.piece_added,
                counters=EngineCounters(),
                rehome=announcer.reannounce,
                origin_reader_tasks=origin_readers,
                on_private_task=private.mark,
            )
            seeds = None
            if settings.seed:
                registry = default_registry()
                stack.push_async_callback(registry.aclose)
                seeds = SeedWorker(
                    client,
                    host_id,
                    _seed_context(
                        store, control.throttled(registry), settings.download.source_concurrency
                    ),
                    on_piece_stored=upload.piece_added,
                    counters=engine.counters,
                    rehome=announcer.reannounce,
                    origin_reader_tasks=origin_readers,
                    check=control.seed_check(),
                )
            socket_path = Path(settings.socket) if settings.socket else default_socket_path(env)
            manifests = MeshManifests(store, engine)
            runner = StoreRunner(
                store,
                _with_hub_fallback(control.registry_factory(), manifests),
                filler=engine,
                source_concurrency=settings.download.source_concurrency,
                private_task_key=tls.cluster_key() if tls is not None else None,
                public_files=PublicFiles(),  # a hub token does not make a public file private
            )
            group = settings.socket_group or None
            calls = settings.local_api_calls_per_caller
            guarded = control.guarded(runner)
            importer = RepoImporter(
                store, manifests, origin_readers, announcer.announce_once, control.seed_check()
            )
            routes = _both(task_routes(store), import_routes(importer))
            await stack.enter_async_context(
                LocalApi(socket_path, guarded, group=group, calls_per_caller=calls, routes=routes)
            )
            control.report_stats(engine.counters)
            control.start(upload.port)
            control.start_preheat(guarded)
            proxy = await stack.enter_async_context(_proxy_service(settings, store, runner, engine))
            metrics = await stack.enter_async_context(
                metrics_server(
                    settings.metrics_listen,
                    engine.counters,
                    upload.statistics,
                    healthy=lambda: not stop.is_set(),
                    collectors=[proxy.collector()] if proxy else [],
                )
            )
            running = _running(host_id, upload.base_url, socket_path, metrics, proxy)
            renewal = tls.renewal_loop() if tls is not None else None
            loops = Loops(announcer, seeds, client, renewal)
            await run_until(stop, loops, lambda: on_ready(running) if on_ready else None)


def _warm_up(store: Store) -> None:
    """What the first download would otherwise do on its way, at the moment a cluster starts
    many at once: the store's space reserve and the origin session's TLS context (the CA
    bundle: ~14 ms of CPU, once per process)."""
    space_reserve(store.root).ensure()
    default_ssl_context()


def _running(
    host_id: str, upload_url: str, socket_path: Path, metrics: str, proxy: ProxyService | None
) -> RunningDaemon:
    if proxy is None:
        return RunningDaemon(host_id, upload_url, socket_path, metrics)
    addresses = (proxy.address, proxy.mirror_addresses, proxy.registry_addresses)
    return RunningDaemon(host_id, upload_url, socket_path, metrics, *addresses)


def _with_hub_fallback(
    factory: Callable[[BackendSettings], BackendRegistry], manifests: MeshManifests
) -> Callable[[BackendSettings], BackendRegistry]:
    """hf:// listings and stats from imported manifests when the hub is unreachable."""
    return lambda backend_settings: HubFallbackRegistry(factory(backend_settings), manifests)


def _both(*routes: Callable[[web.Application], None]) -> Callable[[web.Application], None]:
    def register(app: web.Application) -> None:
        for add in routes:
            add(app)

    return register


def node_tls(settings: DaemonSettings) -> NodeTls | None:
    """The node's TLS (a seed needs a seed certificate), or None with the plain-text warning."""
    if not settings.tls.enabled:
        log.warning("%s (piece port %s)", PLAINTEXT_WARNING, settings.upload.listen)
        return None
    from damselfly.security.node_tls import NodeTls

    expect = {Role.SEED} if settings.seed else {Role.SEED, Role.PEER}
    tls = NodeTls.from_settings(settings.tls, expect=expect)
    log.info("mTLS on: host id %s, role %s", tls.node_id, tls.role)
    return tls


def _engine_settings(settings: DaemonSettings) -> EngineSettings:
    d = settings.download
    return EngineSettings(
        concurrent_pieces=d.concurrent_pieces,
        piece_timeout=d.piece_timeout,
        stall_timeout=d.stall_timeout,
        back_to_source=d.back_to_source,
        # with mTLS a certificate holder may lie: check peers' bytes against the origin
        spot_checks=2 if settings.tls.enabled else 0,
    )


def _seed_context(
    store: Store, registry: BackendRegistry, source_concurrency: int
) -> DownloadContext:
    policy = FetchPolicy(concurrency=source_concurrency)
    return DownloadContext(store=store, registry=registry, observer=NullObserver(), policy=policy)


def _host_info(
    settings: DaemonSettings, host_id: str, upload: UploadServer
) -> Callable[[], HostInfo]:
    listen_host, _ = split_host_port(settings.upload.listen)
    ip = settings.upload.advertise_ip or (
        "127.0.0.1" if listen_host in ("0.0.0.0", "::", "") else listen_host  # noqa: S104
    )

    def current() -> HostInfo:
        return HostInfo(
            host_id=host_id,
            ip=ip,
            upload_port=upload.port,
            type=HostType.SEED if settings.seed else HostType.NORMAL,
            hostname=socket.gethostname()[:255],
            idc=settings.idc,
            location=settings.location,
            upload_capacity=settings.upload.rate_limit,
            upload_slots=settings.upload.slots,
            upload_slots_in_use=upload.statistics().active_uploads,
        )

    return current


def host_id_of(root: Path) -> str:
    """This host's id: created once, kept in the store directory."""
    path = root / HOST_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text(encoding="ascii").strip()
        if existing:
            return existing
    host_id = str(uuid.uuid4())
    path.write_text(host_id + "\n", encoding="ascii")
    return host_id


def upload_limits(settings: DaemonSettings) -> UploadLimits:
    u = settings.upload
    return UploadLimits(
        header_timeout=u.header_timeout,
        idle_timeout=u.idle_timeout,
        max_connections=u.max_connections,
        max_connections_per_peer=u.max_connections_per_peer,
        requests_per_second_per_peer=u.requests_per_second_per_peer,
    )


@contextlib.contextmanager
def _store(settings: DaemonSettings) -> Iterator[Store]:
    root = store_dir(settings.storage_dir, os.environ)
    store = Store(
        root,
        quota_bytes=settings.storage_quota or None,
        max_age_seconds=settings.storage_max_age or None,
    )
    try:
        yield store
    finally:
        store.close()


@contextlib.asynccontextmanager
async def _proxy_service(
    settings: DaemonSettings, store: Store, runner: StoreRunner, engine: PeerFiller
) -> AsyncIterator[ProxyService | None]:
    """The forward proxy and hub mirror endpoints (docs/proxy.md), their content through
    ``engine`` into ``store``; the origin when the engine cannot serve a request."""
    proxy = settings.proxy
    if not proxy.enabled and not proxy.mirrors and not proxy.registry_mirrors:
        yield None
        return
    from damselfly.daemon.proxy.engine_fetcher import EngineFetcher
    from damselfly.daemon.proxy.service import ProxyService
    from damselfly.daemon.proxy.upstream import DirectFetcher

    service = ProxyService(settings.proxy, data_dir=store.root)
    mesh = EngineFetcher(
        store,
        engine,
        DirectFetcher(service.upstream),
        source_concurrency=settings.download.source_concurrency,
        registry_factory=runner.registry_factory,
        private_task_key=runner.private_task_key,
        public_files=runner.public_files,
    )
    service.use_mesh(mesh)
    async with mesh:
        try:
            await service.start()
        except OSError as exc:
            raise ConfigError(f"proxy.listen {settings.proxy.listen}: {exc.strerror}") from exc
        try:
            yield service
        finally:
            await service.aclose()


@contextlib.asynccontextmanager
async def _upload_server(
    settings: DaemonSettings, store: Store, tls: NodeTls | None, private: PrivateTasks
) -> AsyncIterator[UploadServer]:
    host, port = split_host_port(settings.upload.listen)
    context = tls.server_context() if tls is not None else None
    verifier = GrantVerifier(lambda: tls.source.material().ca_pem) if tls is not None else None
    server = UploadServer(
        store,
        host=host,
        port=port,
        upload_slots=settings.upload.slots,
        rate_limit_bytes_per_second=settings.upload.rate_limit or None,
        limits=upload_limits(settings),
        tls=(lambda: context) if context is not None else None,
        private=PrivateAccess(private, verifier),
    )
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(f"upload.listen {settings.upload.listen}: {exc.strerror}") from exc
    try:
        yield server
    finally:
        await server.aclose()
