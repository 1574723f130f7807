"""dfget through the node's dfdaemon: a cold download (the daemon reads the origin) and a warm one.

Both time ``dfget URL -O out -e SOCKET --no-progress`` (plus ``--storage-dir`` on /dev/shm for
dfget's own store, which stays empty unless dfget downloads without the daemon). The run's
cost is dfget's *and* the daemon's: the daemon is read from the end of ``prepare`` to the start
of ``clean`` (``DaemonNode.begin_run``), a window that also holds the untimed sha256 check of
the output, during which the daemon only finishes its bookkeeping (announcing the new task).
``with_daemon_usage`` then folds the daemon's figures into each run's ``Measurement``.

dfget downloads by itself when no daemon answers; a run whose daemon counters do not show the
download (cold: the whole file from the origin or peers; warm: one cache hit and no bytes) is
failed rather than reported as the daemon's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from bench.common.measure import Measurement
from bench.common.report import RunRecord
from bench.common.rounds import Plan, System, child_env
from bench.common.workspace import BenchError, remove
from bench.single.daemon import DaemonNode, DaemonUsage, UsageProbe
from bench.single.workspace import OUTPUT_NAME, Workspace


@dataclass(frozen=True)
class NodeMeasurement(Measurement):
    """dfget's ``Measurement`` with the daemon's share added.

    ``cpu_seconds`` and ``peak_rss_bytes`` are dfget's plus the daemon's (the two processes a
    node runs for the download); ``user_seconds``, ``system_seconds`` and the ``wait4``
    fields stay dfget's own. The scheduler's CPU is recorded, not added: it runs elsewhere in
    a real cluster."""

    dfget_cpu_seconds: float
    dfget_peak_rss_bytes: int
    daemon_cpu_seconds: float
    daemon_peak_rss_bytes: int
    daemon_source_bytes: int
    daemon_peer_bytes: int
    daemon_cache_hits: int
    scheduler_cpu_seconds: float

    @property
    def cpu_seconds(self) -> float:
        return self.dfget_cpu_seconds + self.daemon_cpu_seconds


def node_measurement(dfget: Measurement, daemon: DaemonUsage) -> NodeMeasurement:
    base = {f.name: getattr(dfget, f.name) for f in fields(Measurement)}
    base["peak_rss_bytes"] = dfget.peak_rss_bytes + daemon.peak_rss_bytes
    return NodeMeasurement(
        **base,
        dfget_cpu_seconds=dfget.cpu_seconds,
        dfget_peak_rss_bytes=dfget.peak_rss_bytes,
        daemon_cpu_seconds=daemon.cpu_seconds,
        daemon_peak_rss_bytes=daemon.peak_rss_bytes,
        daemon_source_bytes=daemon.counters.source_bytes,
        daemon_peer_bytes=daemon.counters.peer_bytes,
        daemon_cache_hits=daemon.counters.cache_hits,
        scheduler_cpu_seconds=daemon.scheduler_cpu_seconds,
    )


class _ThroughDaemon:
    """What both systems share: the command, the usage window, the served-by-daemon check."""

    name: str

    def __init__(self, concurrent_pieces: int | None) -> None:
        self._concurrent_pieces = concurrent_pieces
        self._probe: UsageProbe | None = None
        self.usages: list[DaemonUsage] = []  # one per finished run, in order

    def output(self, ws: Workspace) -> Path:
        return ws.path(self.name, OUTPUT_NAME)

    def _plan(self, ws: Workspace, node: DaemonNode) -> Plan:
        output = self.output(ws)
        remove(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        argv = node.dfget_argv(ws.url, output)
        if self._concurrent_pieces is not None:
            argv += ["--concurrent-pieces", str(self._concurrent_pieces)]
        self._probe = node.begin_run()  # last: nothing of ours runs between this and the run
        return Plan(argv, output)

    def clean(self, ws: Workspace) -> None:
        if self._probe is None:
            raise BenchError(f"{self.name}: clean without a run")
        usage, self._probe = self._probe.end(), None
        self._check(usage, ws.source.size)
        self.usages.append(usage)
        ws.require_node().stored(ws.url)
        remove(self.output(ws))

    def _check(self, usage: DaemonUsage, size: int) -> None:
        raise NotImplementedError


class DfgetDaemonCold(_ThroughDaemon):
    """Through a daemon restarted with an empty store before the run: every byte from the
    origin, read by the daemon."""

    name = "dfget-daemon"

    def prepare(self, ws: Workspace) -> Plan:
        node = ws.require_node()
        node.restart_empty()
        return self._plan(ws, node)

    def _check(self, usage: DaemonUsage, size: int) -> None:
        got = usage.counters.source_bytes + usage.counters.peer_bytes
        if got < size:
            raise BenchError(
                f"{self.name}: dfdaemon received {got} of {size} bytes:"
                " dfget downloaded without it (see the dfget and dfdaemon logs)"
            )


class DfgetDaemonWarm(_ThroughDaemon):
    """Through the same daemon with the file already in its store: a cache hit.

    If the daemon does not hold the file (it was restarted for a cold run since), it is
    filled first by one untimed download through it."""

    name = "dfget-daemon-warm"

    def prepare(self, ws: Workspace) -> Plan:
        node = ws.require_node()
        if not node.holds(ws.url):
            self._fill(ws, node)
        return self._plan(ws, node)

    def _fill(self, ws: Workspace, node: DaemonNode) -> None:
        priming = ws.path(self.name, "filling.bin")
        priming.parent.mkdir(parents=True, exist_ok=True)
        argv = node.dfget_argv(ws.url, priming)
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
        if done.returncode != 0:
            raise BenchError(f"filling dfdaemon's store failed: {done.stderr.strip()}")
        remove(priming)
        node.stored(ws.url)

    def _check(self, usage: DaemonUsage, size: int) -> None:
        c = usage.counters
        if c.cache_hits < 1 or c.source_bytes + c.peer_bytes > 0:
            raise BenchError(
                f"{self.name}: not a cache hit of dfdaemon ({c});"
                " dfget downloaded without it, or the daemon fetched the file again"
            )


def with_daemon_usage(
    records: Sequence[RunRecord], systems: Sequence[System[Workspace]]
) -> list[RunRecord]:
    """``records`` with each daemon run's measurement replaced by a ``NodeMeasurement``."""
    usages = {s.name: list(s.usages) for s in systems if isinstance(s, _ThroughDaemon)}
    merged = []
    for record in records:
        queue = usages.get(record.system)
        if queue is None:
            merged.append(record)
            continue
        if not queue:
            raise BenchError(f"{record.system}: more runs than daemon readings")
        measurement = node_measurement(record.measurement, queue.pop(0))
        merged.append(replace(record, measurement=measurement))
    return merged
