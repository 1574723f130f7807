"""The metrics the dashboard and the alert rules read exist in what the real processes serve.

A scheduler, a seed and a peer (real processes, ``LocalCluster``), the manager (a real
``damselfly manager`` process on SQLite) and the injector (in process, over HTTPS) are
scraped after a download; each exposition must pass ``promtool check metrics``, and every
metric name in deploy/grafana/damselfly.json and deploy/prometheus/rules.yml must be among
the live names, a recording rule of rules.yml, or one of the few that Prometheus or other
exporters provide (``EXTERNAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from damselfly.config.injector import InjectorSettings
from damselfly.injector.server import serve as serve_injector
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.promql import dashboard_exprs, metric_names, rule_exprs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "damselfly.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
EXTERNAL = {
    "up": "Prometheus, per scrape target",
    "node_filesystem_avail_bytes": "node-exporter",
    "node_filesystem_size_bytes": "node-exporter",
    "kubelet_volume_stats_available_bytes": "kubelet",
    "kubelet_volume_stats_capacity_bytes": "kubelet",
}
PROMTOOL = shutil.which("promtool")


def sample_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def used_names() -> set[str]:
    exprs, recorded = rule_exprs(RULES)
    names = set().union(*(metric_names(e) for e in exprs + dashboard_exprs(DASHBOARD)))
    return names - recorded


def promtool_check(text: str) -> str:
    if PROMTOOL is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing in CI")
        return ""
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


@contextlib.asynccontextmanager
async def injector(tmp_path: Path) -> AsyncIterator[str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "tls.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    settings = InjectorSettings(
        listen="127.0.0.1:0", tls_cert=str(tmp_path / "tls.crt"), tls_key=str(tmp_path / "tls.key")
    )
    stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_injector(settings, stop=stop, on_ready=ready.set_result))
    try:
        async with asyncio.timeout(10):
            await ready
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
            session.get(f"https://{ready.result()}/metrics") as response,
        ):
            yield await response.text()
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def manager(tmp_path: Path) -> AsyncIterator[str]:
    """A real ``damselfly manager`` process on SQLite; answers its base URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "damselfly.cli.damselfly", "manager",
        "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "manager"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("manager listening: http="), line
        yield f"http://{line.split('=', 1)[1].strip()}"
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.text()


async def test_dashboard_and_rules_read_only_metrics_the_processes_serve(tmp_path):
    live: dict[str, str] = {}
    data = os.urandom(2 * 1024 * 1024)
    async with LocalCluster(
        tmp_path / "c", peers=1, seeds=1, origin_files={"/model.bin": data}
    ) as cluster:
        for attempt in ("cold", "cached"):  # the second is served from the peer's store
            out = tmp_path / f"{attempt}.bin"
            done = await cluster.dfget(0, cluster.origin.url("/model.bin"), out)
            assert done.code == 0, cluster.logs()
        for node in cluster.all_nodes():
            live[node.name] = await scrape(node.metrics_url)
    async with manager(tmp_path) as url:
        await scrape(f"{url}/healthz")  # one request for the requests counter
        live["manager"] = await scrape(f"{url}/metrics")
    async with injector(tmp_path) as text:
        live["injector"] = text

    problems = {name: promtool_check(text) for name, text in live.items()}
    assert {name: p for name, p in problems.items() if p} == {}
    served = set().union(*(sample_names(text) for text in live.values()))
    missing = used_names() - served - set(EXTERNAL)
    assert missing == set(), f"used by the dashboard or rules but not served: {sorted(missing)}"
    assert sample_names(live["peer-0"]) >= {"damselfly_daemon_peer_bytes_total"}
    assert sample_names(live["manager"]) >= {
        "damselfly_manager_members",
        "damselfly_manager_requests_total",
    }
    # The dashboard's cold start: the download the node did not hold is timed once, to its
    # first piece and to done; the cache hit after it is in neither histogram.
    peer = samples(live["peer-0"])
    assert peer["damselfly_daemon_task_duration_seconds_count"] == 1
    assert peer["damselfly_daemon_task_first_piece_seconds_count"] == 1
    assert peer["damselfly_daemon_cache_hits_total"] == 1
    first, done = (
        peer[f"damselfly_daemon_task_{h}_seconds_sum"] for h in ("first_piece", "duration")
    )
    assert 0 < first <= done


def samples(text: str) -> dict[str, float]:
    """Unlabelled samples by name (the daemon's are all unlabelled but the buckets)."""
    return {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.labels
    }


def test_the_names_checked_are_the_ones_that_matter():
    used = used_names()
    assert {
        "damselfly_daemon_source_bytes_total",
        "damselfly_daemon_peer_bytes_total",
        "damselfly_daemon_cache_hits_total",
        "damselfly_daemon_task_failures_total",
        "damselfly_daemon_task_duration_seconds_bucket",
        "damselfly_daemon_task_first_piece_seconds_bucket",
        "damselfly_scheduler_seeds",
        "damselfly_injector_reviews_total",
        "damselfly_manager_members",
        "damselfly_manager_requests_total",
        "up",
    } <= used
    assert not {n for n in used if ":" in n}, "recording rules are resolved, not checked"
