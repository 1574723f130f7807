"""A mesh on loopback as real processes: schedulers, seeds, peers, and dfget runs.

``ProcessCluster`` is an async context manager that owns every process it starts::

    async with ProcessCluster(workdir, peers=3, env={"HF_ENDPOINT": hub.endpoint}) as cluster:
        done = await cluster.dfget(0, "hf://owner/repo", workdir / "out", "-r")
        assert done.code == 0, cluster.logs()
        sent = (await cluster.metrics(cluster.peers[1]))["damselfly_daemon_upload_bytes_total"]

- Schedulers (``python -m damselfly.cli.scheduler``) and daemons
  (``python -m damselfly.cli.dfdaemon``) are separate processes on port 0; their addresses
  come from the one line each prints on stdout when ready. Every node has its own storage
  directory and socket under ``workdir``; its stdout and stderr are kept in
  ``workdir/logs/<name>.{out,err}`` (appended across restarts, with a marker line).
- ``dfget`` runs the real command with ``-e`` the peer's socket; a standalone fallback
  (daemon gone) writes to ``workdir/dfget-store``, never to the user's cache.
- Leaving the block stops everything: SIGTERM, then SIGKILL after ``stop_grace`` seconds.
  When the block raised, the tail of every log goes to stderr.

- ``tls=True``: a throw-away cluster CA in ``workdir/pki`` (``pki.py``) and one certificate
  per process (CN = the node's name, which a daemon then uses as its host id), handed over as
  ``DAMSELFLY_TLS_DIR``: the scheduler link and the piece ports speak mTLS.

``damselfly demo`` runs it (with TLS); ``damselfly.testing.cluster.LocalCluster`` adds an origin
server for the tests and benchmarks. Process helpers (stop, ready lines, metrics):
``processes.py``.
"""

from __future__ import annotations

import asyncio
import enum
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp

from damselfly.demo.pki import LocalPki
from damselfly.demo.pki import Role as CertRole
from damselfly.demo.processes import (
    POLL_INTERVAL,
    child_env,
    module_argv,
    parse_metrics,
    read_from,
    ready_fields,
    socket_dir_for,
    stop_process,
    until_counted,
)

READY_TIMEOUT = 30.0  # seconds a process gets to print its ready line
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
DFGET_TIMEOUT = 120.0  # seconds one dfget run may take before it is killed
LOG_TAIL_LINES = 60
LOOPBACK = "127.0.0.1"


class Role(enum.Enum):
    SCHEDULER = "scheduler"
    SEED = "seed"
    PEER = "peer"


@dataclass(frozen=True)
class Completed:
    """A finished ``dfget`` run (the cluster's and the e2e tests' own)."""

    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


@dataclass
class Node:
    """One process of the cluster and what it told us when it became ready."""

    name: str
    role: Role
    argv: list[str]
    log_dir: Path
    env: dict[str, str]
    storage_dir: Path | None = None
    socket: Path | None = None
    process: asyncio.subprocess.Process | None = None
    ready: dict[str, str] = field(default_factory=dict)
    starts: int = 0

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}.out"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.err"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def metrics_url(self) -> str:
        return self._http("metrics") + "/metrics"

    @property
    def health_url(self) -> str:
        return self._http("metrics") + "/healthz"

    @property
    def upload_url(self) -> str:
        return self.ready["upload"]

    @property
    def host_id(self) -> str:
        return self.ready["host"]

    @property
    def grpc_address(self) -> str:
        return self.ready["grpc"]

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def _http(self, key: str) -> str:
        value = self.ready[key]
        return value if value.startswith("http") else f"http://{value}"


class ClusterError(RuntimeError):
    """A process of the cluster did not start, or exited while we waited for it."""


class ProcessCluster:
    def __init__(
        self,
        workdir: str | Path,
        *,
        peers: int = 3,
        seeds: int = 1,
        schedulers: int = 1,
        env: Mapping[str, str] | None = None,
        seed_env: Mapping[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        stop_grace: float = STOP_GRACE,
        dfget_timeout: float = DFGET_TIMEOUT,
        tls: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.pki: LocalPki | None = None
        self.schedulers: list[Node] = []
        self.seeds: list[Node] = []
        self.peers: list[Node] = []
        self._counts = (schedulers, seeds, peers)
        self._env = child_env(env or {})
        self._seed_env = dict(seed_env or {})
        self._ready_timeout = ready_timeout
        self._stop_grace = stop_grace
        self._dfget_timeout = dfget_timeout
        self._log_dir = self.workdir / "logs"
        self._socket_dir: Path | None = None
        self._clients: set[asyncio.subprocess.Process] = set()

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            self.print_logs("cluster failed to start")
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        if exc is not None:
            self.print_logs(f"cluster block raised {exc_type.__name__ if exc_type else ''}")

    async def start(self) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._socket_dir = socket_dir_for(self.workdir)
        if self.tls and self.pki is None:
            self.pki = LocalPki(self.workdir / "pki")
        scheduler_count, seed_count, peer_count = self._counts
        async with asyncio.TaskGroup() as group:
            for _ in range(scheduler_count):
                group.create_task(self.add_scheduler())
        async with asyncio.TaskGroup() as group:
            for _ in range(seed_count):
                group.create_task(self.add_daemon(seed=True, env=self._seed_env))
            for _ in range(peer_count):
                group.create_task(self.add_daemon())
        await self._until_schedulers_know_them(seed_count, seed_count + peer_count)

    async def _until_schedulers_know_them(self, seeds: int, hosts: int) -> None:
        """A daemon says ready once its schedulers know it, or after a bounded wait for a slow
        one (``daemon/loops.py``): check the counts here too, at most the ready timeout."""
        deadline = time.monotonic() + self._ready_timeout
        for scheduler in self.schedulers:
            await until_counted(partial(self.metrics, scheduler), hosts, seeds, deadline)

    async def aclose(self) -> None:
        """Stop clients, then daemons, then schedulers. Never raises."""
        for process in list(self._clients):
            await stop_process(process, signal.SIGKILL, 0.0)
        daemons = [n for n in self.seeds + self.peers if n.process is not None]
        await asyncio.gather(*(self._stop_node(n) for n in daemons))
        await asyncio.gather(*(self._stop_node(n) for n in self.schedulers))
        if self._socket_dir is not None and not self._socket_dir.is_relative_to(self.workdir):
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    async def _stop_node(self, node: Node) -> None:
        if node.process is not None:
            await stop_process(node.process, signal.SIGTERM, self._stop_grace)

    # -- adding and restarting nodes -----------------------------------------------------------

    @property
    def scheduler_addresses(self) -> list[str]:
        return [node.grpc_address for node in self.schedulers]

    async def add_scheduler(self, *, env: Mapping[str, str] | None = None) -> Node:
        name = f"scheduler-{len(self.schedulers)}"
        any_port = f"{LOOPBACK}:0"
        listen = ["--listen", any_port, "--metrics-listen", any_port]
        argv = [*module_argv("damselfly.cli.scheduler"), *listen]
        node_env = {**self._env, **self._tls_env(name, CertRole.SCHEDULER), **(env or {})}
        node = Node(name, Role.SCHEDULER, argv, self._log_dir, node_env)
        self.schedulers.append(node)
        await self._launch(node, "scheduler listening:")
        return node

    async def add_daemon(
        self,
        *,
        seed: bool = False,
        schedulers: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        flags: Sequence[str] = (),
    ) -> Node:
        """Start a seed or a peer (appended to ``seeds`` / ``peers``) and wait until ready.
        ``schedulers``: addresses to give it instead of the cluster's schedulers; ``flags``:
        more dfdaemon flags, after the cluster's (a later ``--upload-listen`` wins)."""
        group = self.seeds if seed else self.peers
        role = Role.SEED if seed else Role.PEER
        name = f"{role.value}-{len(group)}"
        tls_env = self._tls_env(name, CertRole.SEED if seed else CertRole.PEER)
        node = Node(name, role, [], self._log_dir, {**self._env, **tls_env, **(env or {})})
        node.storage_dir = self.workdir / "nodes" / name
        assert self._socket_dir is not None, "start() the cluster first"
        node.socket = self._socket_dir / f"{name}.sock"
        node.argv = [*self._daemon_argv(node, seed, schedulers), *flags]
        group.append(node)
        await self._launch(node, "dfdaemon ready:")
        return node

    def _tls_env(self, name: str, role: CertRole) -> dict[str, str]:
        return {} if self.pki is None else self.pki.env_for(name, role)

    def _daemon_argv(self, node: Node, seed: bool, schedulers: Sequence[str] | None) -> list[str]:
        argv = module_argv("damselfly.cli.dfdaemon")
        for address in self.scheduler_addresses if schedulers is None else schedulers:
            argv += ["--scheduler", address]
        argv += ["--storage-dir", str(node.storage_dir), "--socket", str(node.socket)]
        argv += ["--upload-listen", f"{LOOPBACK}:0", "--metrics-listen", f"{LOOPBACK}:0"]
        argv += ["--proxy-listen", f"{LOOPBACK}:0"]  # ready line: proxy=host:port
        return argv + (["--seed"] if seed else [])

    async def restart_scheduler(self, index: int) -> Node:
        """Stop scheduler ``index`` if it runs and start it again on the same gRPC port."""
        node = self.schedulers[index]
        if node.process is not None:
            await stop_process(node.process, signal.SIGTERM, self._stop_grace)
        node.argv[node.argv.index("--listen") + 1] = node.grpc_address
        await self._launch(node, "scheduler listening:")
        return node

    async def restart(self, node: Node) -> Node:
        """Stop ``node`` if it runs and start it again with the same arguments (a daemon keeps
        its storage and socket, and gets new ports)."""
        if node.role is Role.SCHEDULER:
            return await self.restart_scheduler(self.schedulers.index(node))
        if node.process is not None:
            await stop_process(node.process, signal.SIGTERM, self._stop_grace)
        await self._launch(node, "dfdaemon ready:")
        return node

    async def kill(self, node: Node, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig``; for SIGKILL/SIGTERM/SIGINT wait for the exit. Returns the exit code."""
        if not node.running:
            return None if node.process is None else node.process.returncode
        assert node.process is not None
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            await stop_process(node.process, sig, self._stop_grace)
        else:
            node.process.send_signal(sig)
        return node.process.returncode

    async def _launch(self, node: Node, ready_prefix: str) -> None:
        node.starts += 1
        offset = node.stdout_path.stat().st_size if node.stdout_path.exists() else 0
        with node.stdout_path.open("ab") as out, node.stderr_path.open("ab") as err:
            marker = f"=== {node.name}: start {node.starts}: {' '.join(node.argv)}\n".encode()
            err.write(marker)
            err.flush()
            node.process = await asyncio.create_subprocess_exec(
                *node.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err, env=node.env
            )
        node.ready = await self._ready_line(node, ready_prefix, offset)

    async def _ready_line(self, node: Node, prefix: str, offset: int) -> dict[str, str]:
        deadline = time.monotonic() + self._ready_timeout
        assert node.process is not None
        while time.monotonic() < deadline:
            for line in read_from(node.stdout_path, offset).splitlines():
                if line.startswith(prefix):
                    return ready_fields(line[len(prefix) :])
            if node.process.returncode is not None:
                raise ClusterError(f"{node.name} exited with {node.process.returncode}")
            await asyncio.sleep(POLL_INTERVAL)
        raise ClusterError(f"{node.name}: no ready line within {self._ready_timeout} s")

    # -- using the cluster ---------------------------------------------------------------------

    def node(self, which: int | Node) -> Node:
        return self.peers[which] if isinstance(which, int) else which

    async def dfget(
        self, which: int | Node, url: str, output: str | Path, *extra: str
    ) -> Completed:
        """Run the real ``dfget URL -O output -e <socket> *extra`` against peer ``which``."""
        node = self.node(which)
        argv = [*module_argv("damselfly.cli.dfget"), url, "-O", str(output), "-e", str(node.socket)]
        env = {**self._env, "DAMSELFLY_STORAGE_DIR": str(self.workdir / "dfget-store")}
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv, *extra, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        self._clients.add(process)
        try:
            async with asyncio.timeout(self._dfget_timeout):
                stdout, stderr = await process.communicate()
        finally:
            await stop_process(process, signal.SIGKILL, 0.0)
            self._clients.discard(process)
        assert process.returncode is not None
        seconds = time.monotonic() - started
        return Completed(process.returncode, stdout.decode(), stderr.decode(), seconds)

    async def metrics(self, which: int | Node) -> dict[str, float]:
        """The node's samples by name (``name{label="v",...}`` when labelled)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                self.node(which).metrics_url, timeout=aiohttp.ClientTimeout(total=5)
            ) as response,
        ):
            response.raise_for_status()
            return parse_metrics(await response.text())

    async def metric(self, which: int | Node, name: str) -> float:
        return (await self.metrics(which)).get(name, 0.0)

    # -- logs ----------------------------------------------------------------------------------

    def all_nodes(self) -> list[Node]:
        return [*self.schedulers, *self.seeds, *self.peers]

    def logs(self, tail_lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of every node's stderr (and stdout), for assertion messages."""
        parts = []
        for node in self.all_nodes():
            for path in (node.stdout_path, node.stderr_path):
                lines = read_from(path, 0).splitlines()[-tail_lines:]
                parts.append(f"--- {path.name} ({len(lines)} last lines)\n" + "\n".join(lines))
        return "\n".join(parts)

    def print_logs(self, why: str) -> None:
        sys.stderr.write(f"=== {why}; logs in {self._log_dir}\n{self.logs()}\n")
        sys.stderr.flush()
