"""Recovery in the mesh (issue 12, item 5), with real processes: a seed killed mid-task is
replaced by the peer holding the most pieces, so the origin serves the rest once; a parent
serving bad pieces costs only those pieces."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from fault_helpers import MiB

from damselfly.testing.cluster import LocalCluster
from damselfly.testing.origin import Behaviour
from damselfly.testing.polling import wait_until

ARGS = ("--piece-length", "1MiB", "--no-progress")
FAST = {"DAMSELFLY_DAEMON_ANNOUNCE_INTERVAL": "1"}


async def test_a_seed_killed_mid_task_costs_the_origin_at_most_1_3x(tmp_path: Path) -> None:
    data = os.urandom(16 * MiB)
    files = {"/f.bin": data}
    async with LocalCluster(tmp_path, peers=3, seeds=1, origin_files=files, env=FAST) as cluster:
        cluster.origin.set_behaviour(Behaviour(rate=2 * MiB), "/f.bin")
        url = cluster.origin.url("/f.bin")
        outs = [tmp_path / f"out-{i}" for i in range(3)]
        runs = [
            asyncio.create_task(cluster.dfget(i, url, out, *ARGS)) for i, out in enumerate(outs)
        ]
        await wait_until(lambda: cluster.origin.bytes_served >= 6 * MiB, within=30, interval=0.02)
        await cluster.kill(cluster.seeds[0], signal.SIGKILL)
        done = await asyncio.gather(*runs)
        served = cluster.origin.bytes_served
        logs = cluster.logs()
    for run, out in zip(done, outs, strict=True):
        assert run.code == 0, run.stderr + logs
        assert out.read_bytes() == data
    assert served <= 1.3 * len(data), f"origin served {served / MiB:.1f} MiB\n{logs}"
