"""``PrometheusServer``: the real Prometheus (Debian's ``prometheus``) scraping loopback targets.

::

    async with PrometheusServer(tmp_path, {"dfdaemon": ["127.0.0.1:4002"]}) as prometheus:
        await prometheus.wait_scraped_after(time.time())
        vector = await prometheus.query("sum(up)")

It scrapes every ``SCRAPE_INTERVAL`` seconds, keeps its TSDB under ``workdir`` and listens on a
free loopback port. ``wait_scraped_after(t)`` returns once every target has a sample newer
than ``t``: the way to put a window's edge before or after some activity without sleeping
for a guessed time. No pytest here.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import yaml

from damselfly.demo.processes import stop_process
from damselfly.testing.polling import wait_until

SCRAPE_INTERVAL = 0.5  # seconds
READY_TIMEOUT = 30.0  # seconds


class PrometheusServer:
    def __init__(self, workdir: Path, targets: Mapping[str, Sequence[str]]) -> None:
        self.workdir = workdir
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self.url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus: not installed (Debian package prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config()))
        address = f"127.0.0.1:{_free_port()}"
        self.url = f"http://{address}"
        log = (self.workdir / "prometheus.log").open("ab")
        with log:
            self._process = await asyncio.create_subprocess_exec(
                binary, f"--config.file={config}", f"--web.listen-address={address}",
                f"--storage.tsdb.path={self.workdir / 'data'}", "--log.level=warn",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            await wait_until(self._ready, within=READY_TIMEOUT, interval=0.1)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._process is not None:
            await stop_process(self._process, signal.SIGTERM, 10.0)
            self._process = None

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query now; the result vector."""
        assert self._session is not None
        async with self._session.get(f"{self.url}/api/v1/query", params={"query": expr}) as r:
            body = await r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_scraped_after(self, moment: float, within: float = 20.0) -> None:
        """Until every target answered a scrape that started after ``moment`` (Unix time)."""
        expected = sum(len(addresses) for addresses in self.targets.values())

        async def all_newer() -> bool:
            # timestamp() of a selector is its sample's scrape time; of ``up == 1`` (an
            # operation) it would be the query's own time, always newer
            samples = await self.query(f"(timestamp(up) > {moment:.3f}) and (up == 1)")
            return len(samples) == expected

        await wait_until(all_newer, within=within, interval=0.1)

    async def _ready(self) -> bool:
        assert self._session is not None
        assert self._process is not None
        if self._process.returncode is not None:
            raise RuntimeError(f"prometheus exited {self._process.returncode}: {self.log()}")
        try:
            async with self._session.get(f"{self.url}/-/ready") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    def _config(self) -> dict[str, Any]:
        interval = f"{round(SCRAPE_INTERVAL * 1000)}ms"
        return {
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in self.targets.items()
            ],
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
