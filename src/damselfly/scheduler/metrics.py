"""``/metrics`` (Prometheus text) and ``/healthz`` for the scheduler, on their own HTTP port.

The metrics are read from ``SchedulerState.statistics()`` at scrape time by a custom collector,
so the sans-IO state keeps plain counters and knows nothing of Prometheus. Names follow
docs/p2p.md ("Metrics and health") and the Prometheus conventions (``_total`` counters, base
units, one registry per process, never the global one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from damselfly.protocol.messages import Decision
from damselfly.scheduler.state import SchedulerState, SchedulerStatistics

PREFIX = "damselfly_scheduler_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SchedulerCollector:
    def __init__(
        self,
        state: SchedulerState,
        refusals: Callable[[], int] = lambda: 0,
        over_capacity: Callable[[], int] = lambda: 0,
    ) -> None:
        self._state = state
        self._refusals = refusals
        self._over_capacity = over_capacity

    def collect(self) -> Iterator[Metric]:
        stats = self._state.statistics()
        yield from _gauges(stats)
        yield from _counters(stats)
        yield CounterMetricFamily(
            PREFIX + "access_refused",
            "Calls refused by the role checks of mTLS (scheduler/access.py).",
            value=self._refusals(),
        )
        yield CounterMetricFamily(
            PREFIX + "capacity_refused",
            "Calls refused by the caps on hosts, tasks, peers and the registration rate.",
            value=self._over_capacity(),
        )
        registrations = CounterMetricFamily(
            PREFIX + "register", "Peer registrations by decision.", labels=["decision"]
        )
        for decision in Decision:
            registrations.add_metric([decision.value], stats.registrations.get(decision, 0))
        yield registrations


def _gauges(stats: SchedulerStatistics) -> Iterator[Metric]:
    for name, documentation, value in (
        ("hosts", "Hosts announced and not expired.", stats.hosts),
        ("seeds", "Seed hosts connected for seed jobs.", stats.seeds_connected),
        ("tasks", "Tasks with at least one peer.", stats.tasks),
        ("peers", "Peers (one host's copy of one task).", stats.peers),
    ):
        yield GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _counters(stats: SchedulerStatistics) -> Iterator[Metric]:
    for name, documentation, value in (
        ("seed_jobs", "Seed jobs created.", stats.seed_jobs_total),
        ("digests_accepted", "Piece digests recorded from origin readers.",
         stats.digests_accepted_total),
        ("digests_ignored", "Piece digests ignored: the reporter was not an origin reader.",
         stats.digests_ignored_total),
        ("digest_conflicts", "Piece digests that differed from the first recorded (not applied).",
         stats.digest_conflicts_total),
        ("hosts_expired", "Hosts dropped for not announcing within host_ttl.",
         stats.hosts_expired_total),
    ):  # fmt: skip
        yield CounterMetricFamily(PREFIX + name, documentation, value=value)


def metrics_registry(
    state: SchedulerState,
    refusals: Callable[[], int] = lambda: 0,
    over_capacity: Callable[[], int] = lambda: 0,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SchedulerCollector(state, refusals, over_capacity))
    return registry


def http_app(
    state: SchedulerState,
    is_serving: Callable[[], bool],
    refusals: Callable[[], int] = lambda: 0,
    over_capacity: Callable[[], int] = lambda: 0,
) -> web.Application:
    """``GET /metrics`` and ``GET /healthz`` (200 while serving, 503 while stopping)."""
    registry = metrics_registry(state, refusals, over_capacity)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        stats = state.statistics()
        body = {"status": "ok" if is_serving() else "stopping", "hosts": stats.hosts,
                "tasks": stats.tasks, "peers": stats.peers}  # fmt: skip
        return web.json_response(body, status=200 if is_serving() else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
