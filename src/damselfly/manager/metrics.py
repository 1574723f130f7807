"""``/metrics``: requests by route and status, and gauges read from the database at scrape.

The gauges (members by role and health, blocklist rules, preheat jobs by state) are counted
when Prometheus scrapes, so they are never stale and cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select

from damselfly.config.manager import ManagerSettings
from damselfly.manager.db.database import Database
from damselfly.manager.db.models import BlockRule, Member, PreheatJob, utcnow
from damselfly.manager.dynconfig import alive_since

ROLES = ("scheduler", "seed", "peer")
STATES = ("pending", "running", "succeeded", "failed")


class ManagerMetrics:
    def __init__(self, database: Database, settings: ManagerSettings) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "damselfly_manager_requests", "API requests answered, by route and status",
            ["route", "status"], registry=self.registry,
        )  # fmt: skip
        self.registry.register(_DatabaseCollector(database, settings))


class _DatabaseCollector(Collector):
    def __init__(self, database: Database, settings: ManagerSettings) -> None:
        self.database = database
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        with self.database.session() as session:
            now = utcnow()
            yield self._members(session, alive_since(self.settings, now))
            yield _rules(session, now)
            yield _jobs(session)

    @staticmethod
    def _members(session: Any, since: datetime) -> Metric:
        family = GaugeMetricFamily(
            "damselfly_manager_members", "Registered members by role and health",
            labels=["role", "alive"],
        )  # fmt: skip
        counts = _grouped(session, select(Member.role, Member.last_seen >= since, func.count()))
        for role in ROLES:
            for alive in (True, False):
                family.add_metric([role, str(alive).lower()], counts.get((role, alive), 0))
        return family


def _rules(session: Any, now: datetime) -> Metric:
    active = or_(BlockRule.until.is_(None), BlockRule.until > now)
    count = session.scalar(select(func.count()).select_from(BlockRule).where(active))
    return GaugeMetricFamily(
        "damselfly_manager_blocklist_rules", "Active blocklist rules", value=count or 0
    )


def _jobs(session: Any) -> Metric:
    family = GaugeMetricFamily(
        "damselfly_manager_preheat_jobs", "Preheat jobs by state", labels=["state"]
    )
    by_state = _grouped(session, select(PreheatJob.state, func.count()))
    for state in STATES:
        family.add_metric([state], by_state.get((state,), 0))
    return family


def _grouped(session: Any, query: Any) -> dict[tuple[Any, ...], int]:
    columns = query.selected_columns[:-1]
    return {tuple(row[:-1]): row[-1] for row in session.execute(query.group_by(*columns))}
