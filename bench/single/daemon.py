"""One node of a cluster on loopback: a ``damselfly scheduler`` and one ``dfdaemon``, no seed.

Started once per benchmark invocation, outside every timed region, by ``daemon_node``: the
scheduler and the daemon listen on 127.0.0.1, on ports the kernel picks (``:0``) and that
they print in their ready lines; the daemon's store and unix socket live in the workspace on
/dev/shm. With no seed peer the scheduler sends the daemon back to the origin, so the daemon
is the origin reader, as a single node of a real cluster without seeds would be.

Cold runs. The daemon has no call to drop one task from its store, and a URL made unique per
run (``?r=N``, which the test origin ignores) would leave one more copy of the file in
/dev/shm per round. So ``restart_empty`` stops the daemon, deletes its store and starts a new
one (untimed), then *primes* it: one small download through it (a 1 MiB file of its own), so
the timed run meets a daemon that is announced to the scheduler and has served a download
before, just not this task. The scheduler keeps running.

Measuring a run (``begin_run`` ... ``UsageProbe.end``): the daemon's CPU (``utime + stime``
from ``/proc/<pid>/stat``) and the scheduler's, before and after; the daemon's peak RSS
(``VmHWM`` of ``/proc/<pid>/status``, lowered to its current RSS before the run by writing
``5`` to ``/proc/<pid>/clear_refs``); and its ``/metrics`` counters (bytes from the origin,
from peers, cache hits), which show whether dfget went through the daemon at all.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common.measure import KIB
from bench.common.rounds import child_env
from bench.common.workspace import BenchError, process_cpu_seconds, remove, server_process
from bench.swarm.metrics import scrape, wait_metrics
from bench.swarm.procs import status_kib

START_TIMEOUT = 60.0  # a Python service starting on a loaded 2-CPU machine
ANNOUNCE_TIMEOUT = 30.0
SOURCE_BYTES = "damselfly_daemon_source_bytes_total"
PEER_BYTES = "damselfly_daemon_peer_bytes_total"
CACHE_HITS = "damselfly_daemon_cache_hits_total"
_SCHEDULER_READY = re.compile(r"scheduler listening: grpc=(?P<grpc>\S+) metrics=(?P<metrics>\S+)")
_DAEMON_READY = re.compile(
    r"dfdaemon ready: .* socket=(?P<socket>\S+) metrics=http://(?P<metrics>\S+)"
)


@dataclass(frozen=True)
class NodeTools:
    dfget: str
    dfdaemon: str
    damselfly: str


@dataclass(frozen=True)
class Counters:
    """The daemon's byte counters, summed over labels."""

    source_bytes: int
    peer_bytes: int
    cache_hits: int

    @classmethod
    def scrape(cls, metrics_address: str) -> Counters:
        values = scrape(metrics_address)
        return cls(
            int(values.get(SOURCE_BYTES, 0)),
            int(values.get(PEER_BYTES, 0)),
            int(values.get(CACHE_HITS, 0)),
        )

    def __sub__(self, before: Counters) -> Counters:
        return Counters(
            self.source_bytes - before.source_bytes,
            self.peer_bytes - before.peer_bytes,
            self.cache_hits - before.cache_hits,
        )


@dataclass(frozen=True)
class DaemonUsage:
    """What one run cost the daemon (and the scheduler), and where the daemon's bytes came from."""

    cpu_seconds: float
    peak_rss_bytes: int
    scheduler_cpu_seconds: float
    counters: Counters


@dataclass(frozen=True)
class _Daemon:
    pid: int
    metrics: str  # host:port


class UsageProbe:
    """Readings taken just before a run; ``end`` takes them again and returns the difference."""

    def __init__(self, daemon: _Daemon, scheduler_pid: int) -> None:
        self._daemon, self._scheduler_pid = daemon, scheduler_pid
        self._counters = Counters.scrape(daemon.metrics)  # first: the scrape costs daemon CPU
        _reset_peak_rss(daemon.pid)
        self._cpu = process_cpu_seconds(daemon.pid)
        self._scheduler_cpu = process_cpu_seconds(scheduler_pid)

    def end(self) -> DaemonUsage:
        cpu = process_cpu_seconds(self._daemon.pid) - self._cpu
        scheduler_cpu = process_cpu_seconds(self._scheduler_pid) - self._scheduler_cpu
        peak = status_kib(self._daemon.pid, "VmHWM") * KIB
        if peak == 0:
            raise BenchError(f"dfdaemon (pid {self._daemon.pid}) exited during the run")
        counters = Counters.scrape(self._daemon.metrics) - self._counters
        return DaemonUsage(cpu, peak, scheduler_cpu, counters)


class DaemonNode:
    """The running scheduler and daemon; ``restart_empty`` gives a daemon without any task."""

    def __init__(self, tools: NodeTools, directory: Path, primer_url: str) -> None:
        self._tools, self._dir, self._primer_url = tools, directory, primer_url
        self._scheduler_pid = 0
        self._scheduler_grpc = self._scheduler_metrics = ""
        self._daemon: _Daemon | None = None
        self._daemon_stack = contextlib.ExitStack()
        self._holds: set[str] = set()
        self.restarts = 0

    @property
    def socket(self) -> Path:
        return self._dir / "dfdaemon.sock"

    @property
    def fallback_store(self) -> Path:
        """dfget's own store, only written if it downloads without the daemon."""
        return self._dir / "dfget-fallback-store"

    def holds(self, url: str) -> bool:
        """Whether this daemon (since its last restart) has ``url`` in its store."""
        return url in self._holds

    def stored(self, url: str) -> None:
        self._holds.add(url)

    def begin_run(self) -> UsageProbe:
        if self._daemon is None:
            raise BenchError("dfdaemon is not running")
        return UsageProbe(self._daemon, self._scheduler_pid)

    def dfget_argv(self, dfget_url: str, output: Path) -> list[str]:
        """``dfget URL -O out -e SOCKET --no-progress`` (and a fallback store on /dev/shm)."""
        argv = [self._tools.dfget, dfget_url, "-O", str(output), "-e", str(self.socket)]
        return [*argv, "--no-progress", "--storage-dir", str(self.fallback_store)]

    def start_scheduler(self, stack: contextlib.ExitStack) -> None:
        argv = [self._tools.damselfly, "scheduler", "--listen", "127.0.0.1:0"]
        argv += ["--metrics-listen", "127.0.0.1:0", "--log-level", "warn"]
        server = stack.enter_context(
            server_process(
                argv,
                log_path=self._dir / "scheduler.log",
                banner=_SCHEDULER_READY,
                start_timeout=START_TIMEOUT,
            )
        )
        self._scheduler_pid = server.pid
        self._scheduler_grpc = server.banner.group("grpc")
        self._scheduler_metrics = server.banner.group("metrics")

    def restart_empty(self) -> None:
        """Stop the daemon, delete its store, start a new one, wait until ready, prime it."""
        self.stop_daemon()
        remove(self._dir / "store", self.socket, self.fallback_store)
        self.restarts += 1
        self._daemon = self._start_daemon()
        wait_metrics(
            self._scheduler_metrics,
            lambda values: values.get("damselfly_scheduler_hosts", 0) >= 1,
            ANNOUNCE_TIMEOUT,
            "scheduler knows the daemon",
        )
        self._prime(self._daemon)

    def stop_daemon(self) -> None:
        self._daemon_stack.close()
        self._daemon = None
        self._holds.clear()

    def _start_daemon(self) -> _Daemon:
        argv = [self._tools.dfdaemon, "--scheduler", self._scheduler_grpc]
        argv += ["--storage-dir", str(self._dir / "store"), "--socket", str(self.socket)]
        argv += ["--upload-listen", "127.0.0.1:0", "--advertise-ip", "127.0.0.1"]
        argv += ["--metrics-listen", "127.0.0.1:0", "--log-level", "warn"]
        argv += ["--proxy-listen", "127.0.0.1:0"]  # never the default port of a real daemon
        log = self._dir / f"dfdaemon-{self.restarts}.log"
        server = self._daemon_stack.enter_context(
            server_process(argv, log_path=log, banner=_DAEMON_READY, start_timeout=START_TIMEOUT)
        )
        if Path(server.banner.group("socket")) != self.socket:
            raise BenchError(
                f"dfdaemon listens on {server.banner.group('socket')}, not {self.socket}"
            )
        return _Daemon(server.pid, server.banner.group("metrics"))

    def _prime(self, daemon: _Daemon) -> None:
        before = Counters.scrape(daemon.metrics)
        output = self._dir / "primer.bin"
        argv = self.dfget_argv(self._primer_url, output)
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
        if done.returncode != 0:
            raise BenchError(f"priming dfdaemon failed: {done.stderr.strip()}")
        got = Counters.scrape(daemon.metrics) - before
        if got.source_bytes != output.stat().st_size:
            raise BenchError(f"dfdaemon did not serve the primer download ({got}): see its log")
        remove(output)


def _reset_peak_rss(pid: int) -> None:
    """Lower ``pid``'s ``VmHWM`` to its current RSS (Linux >= 4.0, our own user or root)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
    except OSError as exc:
        raise BenchError(f"cannot reset the peak RSS of pid {pid}: {exc}") from exc


@contextlib.contextmanager
def daemon_node(tools: NodeTools, directory: Path, primer_url: str) -> Iterator[DaemonNode]:
    """Scheduler and daemon started and ready; both always stopped, daemon first."""
    directory.mkdir(parents=True, exist_ok=True)
    node = DaemonNode(tools, directory, primer_url)
    with contextlib.ExitStack() as stack:
        node.start_scheduler(stack)
        stack.callback(node.stop_daemon)
        node.restart_empty()
        yield node
