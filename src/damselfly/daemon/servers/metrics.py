"""The daemon's Prometheus metrics and health endpoint.

Counters live with the components that move bytes (``EngineCounters`` in the download engine,
``UploadStatistics`` in the upload server); this module only turns them into samples at scrape
time, so the hot path never touches ``prometheus_client``. Names follow the Prometheus
conventions (``_total`` counters, base units): see docs/p2p.md, "Metrics and health".
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from damselfly.daemon.engine.counters import EngineCounters, Histogram
from damselfly.daemon.servers.upload_statistics import UploadStatistics
from damselfly.transport.http_listener import listening

PREFIX = "damselfly_daemon_"


class _DaemonCollector(Collector):
    def __init__(self, engine: EngineCounters, upload: Callable[[], UploadStatistics]) -> None:
        self._engine = engine
        self._upload = upload

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        e, u = self._engine, self._upload()
        yield _counter("source_bytes", "Bytes read from origins to download.", e.source_bytes)
        yield _counter(
            "spot_check_bytes", "Bytes read from origins to spot-check bytes from peers.",
            e.spot_check_bytes,
        )  # fmt: skip
        yield _counter("peer_bytes", "Bytes received from other peers.", e.peer_bytes)
        yield _counter("upload_bytes", "Piece bytes sent to other peers.", u.bytes_uploaded)
        yield _counter("cache_hits", "Downloads served entirely from the store.", e.cache_hits)
        yield _counter("task_failures", "Downloads that failed.", e.task_failures)
        yield _counter("upload_rejected", "Piece requests refused: slots full.", u.rejected_busy)
        yield _counter("upload_pieces", "Pieces sent whole to other peers.", u.pieces_served)
        yield _counter(
            "upload_pieces_rechecked", "Pieces hashed again as they were sent.", u.pieces_rechecked
        )
        yield _counter(
            "upload_pieces_dropped", "Pieces that failed that check, dropped.", u.pieces_dropped
        )
        yield _gauge("active_tasks", "Downloads in progress.", e.active_tasks)
        yield _gauge("parents_in_use", "Parents of running downloads.", e.parents_in_use)
        yield _gauge("active_uploads", "Piece responses in progress.", u.active_uploads)
        yield from _guard_samples(u)
        yield _histogram("task_duration_seconds", "Duration of finished downloads.", e.duration)
        yield _histogram(
            "task_first_piece_seconds",
            "Time from a download's start to its first verified piece stored.",
            e.first_piece,
        )


def _guard_samples(u: UploadStatistics) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """The piece port's defences (``upload_guard.py``)."""
    g = u.guard
    yield _gauge("upload_connections", "Piece port connections open.", g.connections_open)
    yield _counter(
        "upload_connections_refused", "Connections aborted: over a cap.", g.connections_refused
    )
    yield _counter(
        "upload_header_timeouts", "Connections closed: no request headers in time.",
        g.header_timeouts,
    )  # fmt: skip
    yield _counter("upload_handshakes_failed", "TLS handshakes that failed.", g.handshakes_failed)
    yield _counter(
        "upload_rate_refused", "Requests refused: the peer's request rate.",
        g.requests_refused_rate,
    )  # fmt: skip
    yield _counter(
        "upload_access_refused", "Requests refused (403): role or grant missing.",
        g.access_refused,
    )  # fmt: skip


def _histogram(name: str, text: str, histogram: Histogram) -> HistogramMetricFamily:
    bounds = [str(b) for b in histogram.bounds] + ["+Inf"]
    cumulative, buckets = 0, []
    for bound, count in zip(bounds, histogram.counts, strict=True):
        cumulative += count
        buckets.append((bound, float(cumulative)))
    family = HistogramMetricFamily(PREFIX + name, text)
    family.add_metric([], buckets, histogram.sum)
    return family


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, text, value=value)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, text, value=value)


def http_app(
    engine: EngineCounters,
    upload: Callable[[], UploadStatistics],
    healthy: Callable[[], bool],
    collectors: Sequence[Collector] = (),
) -> web.Application:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_DaemonCollector(engine, upload))
    for collector in collectors:  # other parts' own metrics (the proxy's)
        registry.register(collector)

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def healthz(request: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


@contextlib.asynccontextmanager
async def metrics_server(
    listen: str,
    engine: EngineCounters,
    upload: Callable[[], UploadStatistics],
    healthy: Callable[[], bool],
    collectors: Sequence[Collector] = (),
) -> AsyncIterator[str]:
    """Serve ``/metrics`` and ``/healthz`` on ``listen`` (``host:port``) for the duration of
    the block; yields the bound ``host:port``."""
    app = http_app(engine, upload, healthy, collectors)
    async with listening(app, listen, setting="metrics_listen") as address:
        yield address
