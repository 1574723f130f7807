"""``damselfly report --prometheus`` against the real Prometheus (Debian's package) scraping
a real cluster (a scheduler, a seed and three peers on loopback): one window of direct
downloads (each peer its own URL, nothing shared), one through the mesh (the three peers the
same URL at once). The report must show the origin-bytes drop the origin itself counted.

Prometheus' ``increase()`` extrapolates to the window's edges, so its figures may exceed the
true counts by up to a scrape interval's share of the window, never fall short of them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from damselfly.cli.report_figures import figures
from damselfly.cli.report_sources import totals_from_prometheus
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.polling import wait_until
from damselfly.testing.prometheus import PrometheusServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None and os.environ.get("CI") != "true",
        reason="prometheus missing: scripts/setup.sh installs Debian's prometheus (needs root)",
    ),
]

MiB = 1024 * 1024
SIZE = 4 * MiB
EXTRAPOLATION = 1.3  # most Prometheus may add (window of a few seconds, 0.5 s scrapes)
MIN_WINDOW = 6.0  # seconds: W / (W - 2 x 0.55 s of extrapolation) <= 1.3 from W = 4.8 s


async def measured_window(
    cluster: LocalCluster, prometheus: PrometheusServer, urls: list[str], out: Path
) -> tuple[tuple[float, float], int]:
    """Run the peers' downloads between two scrapes: the window and the origin's own count."""
    # Prometheus may take seconds to scrape for the first time: a window that starts before
    # then holds samples only from its last part, and increase() stretches them to all of it
    await prometheus.wait_scraped_after(time.time())
    start = time.time()
    await prometheus.wait_scraped_after(start)
    served = cluster.origin.bytes_served
    out.mkdir()
    done = await asyncio.gather(
        *(cluster.dfget(i, url, out / f"{i}.bin") for i, url in enumerate(urls))
    )
    assert [d.code for d in done] == [0] * len(urls), cluster.logs()
    origin_bytes = cluster.origin.bytes_served - served
    # a seed adds a fill's origin bytes to its counter when the fill ends, which may be after
    # the peers' dfget returned: end the window once the scraped counters caught up
    served_now = cluster.origin.bytes_served
    await wait_until(lambda: scraped_source_bytes(prometheus, served_now), within=20)
    # increase() extrapolates to the window's edges by up to ~1.1 scrape intervals each: a
    # window of a 1 s download would double its figures; MIN_WINDOW keeps that under 1.3x
    await asyncio.sleep(max(0.0, start + MIN_WINDOW - time.time()))
    await prometheus.wait_scraped_after(time.time())
    return (start, time.time()), origin_bytes


async def scraped_source_bytes(prometheus: PrometheusServer, at_least: int) -> bool:
    samples = await prometheus.query("sum(damselfly_daemon_source_bytes_total)")
    return bool(samples) and float(samples[0]["value"][1]) >= at_least


def jobs(cluster: LocalCluster) -> dict[str, list[str]]:
    targets: dict[str, list[str]] = {}
    for node in cluster.all_nodes():
        job = node.name.rstrip("-0123456789")
        targets.setdefault(job, []).append(urlsplit(node.metrics_url).netloc)
    return targets


async def test_report_from_prometheus_shows_the_origin_bytes_drop(tmp_path):
    data = os.urandom(SIZE)
    async with (
        LocalCluster(tmp_path / "c", peers=3, seeds=1, origin_files={"/model.bin": data}) as c,
        PrometheusServer(tmp_path / "prometheus", jobs(c)) as prometheus,
    ):
        direct_urls = [c.origin.url(f"/model.bin?copy={i}") for i in range(3)]
        direct, direct_origin = await measured_window(c, prometheus, direct_urls, tmp_path / "d")
        mesh_urls = [c.origin.url("/model.bin")] * 3
        mesh, mesh_origin = await measured_window(c, prometheus, mesh_urls, tmp_path / "m")
        before = figures(await totals_from_prometheus(prometheus.url, direct))
        after = figures(await totals_from_prometheus(prometheus.url, mesh))
        printed = await report_command(prometheus.url, direct, mesh)

    assert (direct_origin, mesh_origin) == (3 * SIZE, SIZE)  # what the origin served
    assert direct_origin <= before.origin_bytes <= direct_origin * EXTRAPOLATION
    assert mesh_origin <= after.origin_bytes <= mesh_origin * EXTRAPOLATION
    # three copies reached the peers, at most one of them from the origin (when a peer, not
    # the seed, was the task's origin reader)
    assert 2 * SIZE <= after.peer_bytes <= 3 * SIZE * EXTRAPOLATION
    drop = 1 - after.origin_bytes / before.origin_bytes
    assert drop == pytest.approx(1 - mesh_origin / direct_origin, abs=0.12)  # 66.7% truly
    assert before.failed_downloads == after.failed_downloads == 0
    assert after.cold_start_p50_seconds is not None
    origin_line = next(line for line in printed.splitlines() if line.startswith("origin bytes"))
    assert origin_line.split()[-1] == f"{-100 * drop:+.1f}%"


async def report_command(url: str, before: tuple[float, float], after: tuple[float, float]) -> str:
    """The real ``damselfly report --prometheus`` command's table."""
    windows = [f"{start:.3f}..{end:.3f}" for start, end in (before, after)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "damselfly.cli.damselfly", "report", "--prometheus", url,
        "--before", windows[0], "--after", windows[1], "--no-png",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()
