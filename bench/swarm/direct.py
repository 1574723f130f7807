"""Direct download: every node fetches the whole file from the origin with ``curl``.

The baseline a cluster gets without any distribution system: the origin's uplink is shared
by all N nodes, so the last one finishes after about ``N * S / B_o`` and the origin sends
``N * S`` bytes.
"""

from __future__ import annotations

from typing import Any

from bench.swarm.procs import Processes
from bench.swarm.system import Context, Deployment, NodeJob

OUTPUT_NAME = "blob.bin"


class Direct:
    name = "direct"
    source_on_seed = False

    def deploy(self, ctx: Context, procs: Processes) -> Deployment:
        jobs = []
        for host in ctx.layout.nodes:
            output = ctx.node_dir(host) / OUTPUT_NAME
            argv = [ctx.tools.curl, "-s", "-S", "-f", "-o", str(output), ctx.url]
            jobs.append(NodeJob(host, argv, output))
        return Deployment(services=[], jobs=jobs)

    def collect(self, ctx: Context, deployment: Deployment) -> dict[str, Any]:
        return {}
