"""damselfly: a scheduler, one seed peer and a dfdaemon per node; ``dfget`` on every node.

Deployed before the start (untimed, as in a cluster where the daemons already run): the
scheduler in the control namespace, ``dfdaemon --seed`` in the seed namespace, one
``dfdaemon`` per node, each with an empty store; we wait until the scheduler counts every
host and the seed. At the start every node runs ``dfget URL -O copy -e SOCKET``.

``damselfly-mtls`` is the same with mTLS on everywhere (issue 11): a throw-away cluster CA
(``demo/pki.py``) issues, before the start, one certificate per process naming its role and
its namespace's IP (scheduler, seed, one ``peer`` per node; the CN is the host id); every
service gets ``--tls-dir``. dfget talks to its daemon over the unix socket either way. With
mTLS each node also spot-checks the file against the origin (2 x 64 KiB: docs/security.md);
those bytes are in the origin's count but not in ``source_bytes`` (collected as ``spot_check``).

After the run the daemons' metrics tell where each node's bytes came from. dfget downloads
by itself when no daemon answers; a node whose daemon did not receive the whole file means
that happened, and the run is failed rather than reported as damselfly's.
"""

from __future__ import annotations

import re
from typing import Any

from bench.common.workspace import BenchError
from bench.swarm.metrics import scrape, wait_metrics
from bench.swarm.netns import Host
from bench.swarm.procs import Proc, Processes, ready_match, wait_ready
from bench.swarm.system import (
    CONTROL,
    NODE_DAEMON,
    SEED,
    Context,
    Deployment,
    NodeJob,
)
from damselfly.demo.pki import LocalPki, Role

SCHEDULER_PORT, SCHEDULER_METRICS_PORT = 8002, 8004
UPLOAD_PORT, METRICS_PORT = 4000, 4002
READY_TIMEOUT = 60.0  # plus a second per daemon: they start together on two CPUs
ANNOUNCE_TIMEOUT = 30.0
OUTPUT_NAME = "blob.bin"
SOURCE_BYTES = "damselfly_daemon_source_bytes_total"
PEER_BYTES = "damselfly_daemon_peer_bytes_total"
UPLOAD_BYTES = "damselfly_daemon_upload_bytes_total"
UPLOAD_PIECES = "damselfly_daemon_upload_pieces_total"
UPLOAD_RECHECKED = "damselfly_daemon_upload_pieces_rechecked_total"
SPOT_CHECK_BYTES = "damselfly_daemon_spot_check_bytes_total"
_SCHEDULER_READY = re.compile(r"scheduler listening: grpc=(\S+) metrics=(\S+)")
_DAEMON_READY = re.compile(r"dfdaemon ready: .* metrics=http://(\S+)")


class Damselfly:
    source_on_seed = False

    def __init__(self, log_level: str = "warn", *, tls: bool = False, copy: bool = False) -> None:
        self._log_level = log_level
        self._tls = tls
        self._copy = copy  # outputs copied (--no-hard-link) instead of linked to the store
        self._pki: LocalPki | None = None
        self.name = "damselfly-mtls" if tls else "damselfly-copy" if copy else "damselfly"

    def deploy(self, ctx: Context, procs: Processes) -> Deployment:
        ctx.tools.require("dfget", "dfdaemon", "damselfly")
        self._pki = LocalPki(ctx.run_dir / "pki") if self._tls else None  # fresh CA per run
        scheduler = self._start_scheduler(ctx, procs)
        scheduler_address = f"{ctx.layout.control.ip}:{SCHEDULER_PORT}"
        seed = self._start_daemon(ctx, procs, ctx.layout.seed, scheduler_address, seed=True)
        daemons = [
            self._start_daemon(ctx, procs, host, scheduler_address, seed=False)
            for host in ctx.layout.nodes
        ]
        wait_ready([seed, *daemons], _DAEMON_READY, READY_TIMEOUT + len(daemons))
        _wait_announced(ready_match(scheduler, _SCHEDULER_READY).group(2), len(daemons) + 1)
        services = [(CONTROL, scheduler), (SEED, seed), *((NODE_DAEMON, d) for d in daemons)]
        return Deployment(services=services, jobs=[self._job(ctx, h) for h in ctx.layout.nodes])

    def collect(self, ctx: Context, deployment: Deployment) -> dict[str, Any]:
        daemons = {
            proc.host.role: _bytes(scrape(ready_match(proc, _DAEMON_READY).group(1)))
            for role, proc in deployment.services
            if role in (NODE_DAEMON, SEED)
        }
        short = [
            node
            for node, got in daemons.items()
            if node != "seed" and got["source"] + got["peer"] < ctx.source.size
        ]
        if short:
            raise BenchError(
                f"daemons of {', '.join(short)} did not receive the whole file:"
                " dfget fell back to downloading by itself (see their logs)"
            )
        return {"daemon_bytes": daemons}

    def _start_scheduler(self, ctx: Context, procs: Processes) -> Proc:
        host = ctx.layout.control
        argv = [ctx.tools.damselfly, "scheduler", "--listen", f"{host.ip}:{SCHEDULER_PORT}"]
        argv += ["--metrics-listen", f"{host.ip}:{SCHEDULER_METRICS_PORT}"]
        argv += ["--log-level", self._log_level]
        argv += self._tls_flags("scheduler", Role.SCHEDULER, host)
        proc = procs.start("scheduler", host, argv, ctx.log("scheduler"))
        wait_ready([proc], _SCHEDULER_READY, READY_TIMEOUT)
        return proc

    def _start_daemon(
        self, ctx: Context, procs: Processes, host: Host, scheduler: str, *, seed: bool
    ) -> Proc:
        directory = ctx.node_dir(host)
        argv = [ctx.tools.dfdaemon, *(["--seed"] if seed else []), "--scheduler", scheduler]
        argv += ["--storage-dir", str(directory / "store"), "--socket", str(directory / "d.sock")]
        argv += ["--upload-listen", f"{host.ip}:{UPLOAD_PORT}", "--advertise-ip", host.ip]
        argv += ["--metrics-listen", f"{host.ip}:{METRICS_PORT}", "--log-level", self._log_level]
        argv += self._tls_flags(host.role, Role.SEED if seed else Role.PEER, host)
        argv += ["--no-proxy"]  # the swarm measures the mesh; the proxy has its own bench
        return procs.start(f"{host.role}-daemon", host, argv, ctx.log(f"{host.role}-daemon"))

    def _tls_flags(self, node_id: str, role: Role, host: Host) -> list[str]:
        """``--tls-dir`` with this process's own certificate; nothing in plain text."""
        if self._pki is None:
            return []
        return ["--tls-dir", str(self._pki.node_dir(node_id, role, (host.ip,)))]

    def _job(self, ctx: Context, host: Host) -> NodeJob:
        directory = ctx.node_dir(host)
        output = directory / OUTPUT_NAME
        argv = [ctx.tools.dfget, ctx.url, "-O", str(output), "-e", str(directory / "d.sock")]
        argv += ["--no-progress", "--storage-dir", str(directory / "standalone-store")]
        argv += ["--no-hard-link"] if self._copy else []
        return NodeJob(host, argv, output)


def _wait_announced(scheduler_metrics: str, hosts: int) -> None:
    def ready(values: dict[str, float]) -> bool:
        found = values.get("damselfly_scheduler_hosts", 0)
        return found >= hosts and values.get("damselfly_scheduler_seeds", 0) >= 1

    wait_metrics(scheduler_metrics, ready, ANNOUNCE_TIMEOUT, f"scheduler knows {hosts} hosts")


def _bytes(values: dict[str, float]) -> dict[str, float]:
    return {
        "source": values.get(SOURCE_BYTES, 0.0),
        "peer": values.get(PEER_BYTES, 0.0),
        "upload": values.get(UPLOAD_BYTES, 0.0),
        "upload_pieces": values.get(UPLOAD_PIECES, 0.0),
        "upload_pieces_rechecked": values.get(UPLOAD_RECHECKED, 0.0),
        "spot_check": values.get(SPOT_CHECK_BYTES, 0.0),
    }
