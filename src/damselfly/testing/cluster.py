"""``LocalCluster``: the demo's ``ProcessCluster`` plus an in-process origin for the tests.

::

    async with LocalCluster(workdir, peers=3, origin_files={"/f.bin": data}) as cluster:
        done = await cluster.dfget(0, cluster.origin.url("/f.bin"), workdir / "out")
        assert done.code == 0, cluster.logs()

The origin is an ``OriginServer`` (it counts the body bytes it serves), started before the
nodes and stopped after them. No pytest here: benchmarks use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from damselfly.demo.cluster import ClusterError, Completed, Node, ProcessCluster, Role
from damselfly.demo.processes import parse_metrics
from damselfly.testing.origin import OriginServer
from damselfly.testing.polling import wait_until

__all__ = [
    "ClusterError",
    "Completed",
    "LocalCluster",
    "Node",
    "Role",
    "parse_metrics",
    "run_dfctl",
    "wait_until",
]


class LocalCluster(ProcessCluster):
    def __init__(
        self,
        workdir: str | Path,
        *,
        origin_files: Mapping[str, bytes] | None = None,
        origin_root: str | Path | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(workdir, **settings)
        self.origin = OriginServer(root=origin_root, files=origin_files)

    async def start(self) -> None:
        await self.origin.start()
        await super().start()

    async def aclose(self) -> None:
        """Stop the processes (``ProcessCluster.aclose``), then the origin. Never raises."""
        await super().aclose()
        with contextlib.suppress(Exception):
            await self.origin.aclose()


DFCTL_TIMEOUT = 120.0  # seconds


async def run_dfctl(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """The real ``dfctl *args`` as a process: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "damselfly.cli.dfctl", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(DFCTL_TIMEOUT):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
