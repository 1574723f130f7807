"""Read a Prometheus ``/metrics`` page from a host in the cluster (through the bridge).

Samples with the same name are summed over their labels. Proxies are never used: the
address is a namespace on our bridge.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from bench.common.workspace import BenchError

SCRAPE_TIMEOUT = 10.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(address: str) -> dict[str, float]:
    """``{sample name: value}`` from ``http://address/metrics``."""
    url = f"http://{address}/metrics"
    try:
        with _OPENER.open(url, timeout=SCRAPE_TIMEOUT) as response:
            text = response.read().decode()
    except OSError as exc:
        raise BenchError(f"cannot read {url}: {exc}") from exc
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def wait_metrics(
    address: str, condition: Callable[[dict[str, float]], bool], timeout: float, what: str
) -> dict[str, float]:
    """Scrape until ``condition`` holds; raises ``BenchError`` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        values = scrape(address)
        if condition(values):
            return values
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not reached in {timeout:.0f} s ({address})")
        time.sleep(0.1)
