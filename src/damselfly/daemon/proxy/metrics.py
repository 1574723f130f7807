"""The proxy's Prometheus metrics: requests and bytes per rule and outcome.

Like the daemon's other metrics, the hot path only bumps plain counters
(``ProxyStatistics``); ``ProxyCollector`` turns them into samples at scrape time. Register it
in the daemon's registry: ``registry.register(ProxyCollector(statistics))``.

Outcomes: ``mesh`` (content served through the ``MeshFetcher``), ``direct`` (sent to the
origin: metadata, ``direct`` rules, requests no rule matches), ``tunnel`` (blind ``CONNECT``
tunnels; bytes both ways), ``error`` (the proxy answered an error itself). The rule label is
the rule's ``name`` (or its regx), ``none`` when no rule matched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "damselfly_proxy_"
OUTCOMES = ("mesh", "direct", "tunnel", "error")
NO_RULE = "none"


@dataclass
class ProxyStatistics:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes: Counter[tuple[str, str]] = field(default_factory=Counter)
    open_connections: int = 0
    rejected_connections: int = 0

    def request_finished(self, rule: str, outcome: str, length: int) -> None:
        """One request (or tunnel) is over; ``length``: body bytes sent to the client
        (for a tunnel: both directions)."""
        key = (rule or NO_RULE, outcome)
        self.requests[key] += 1
        self.bytes[key] += length


class ProxyCollector(Collector):
    def __init__(self, statistics: ProxyStatistics) -> None:
        self.statistics = statistics

    def collect(self) -> Iterator[Metric]:
        stats = self.statistics
        labels = ["rule", "outcome"]
        requests = CounterMetricFamily(
            PREFIX + "requests", "Requests (and CONNECT tunnels) served.", labels=labels
        )
        sent = CounterMetricFamily(
            PREFIX + "bytes", "Body bytes sent to clients (tunnels: both ways).", labels=labels
        )
        for (rule, outcome), count in sorted(stats.requests.items()):
            requests.add_metric([rule, outcome], count)
            sent.add_metric([rule, outcome], stats.bytes[(rule, outcome)])
        yield requests
        yield sent
        yield GaugeMetricFamily(
            PREFIX + "open_connections", "Client connections open.", value=stats.open_connections
        )
        yield CounterMetricFamily(
            PREFIX + "rejected_connections",
            "Client connections refused because max_connections were open.",
            value=stats.rejected_connections,
        )
