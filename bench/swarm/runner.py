"""One run of one system: deploy, start every node at once, time each node, account, verify.

Steps: the system deploys (untimed); every node's command (and any gated service) is started
behind the gate and the gate opens once all are waiting; each node's completion time is
measured from that moment to its command's exit (seen through a pidfd) or to the time its
completion hook wrote; when the last node is done we read every process's CPU and peak RSS,
the origin's counters and the system's own figures, stop everything, and check the sha256 of
every node's copy (untimed).

CPU: processes that exited (dfget, curl) are read from ``wait4``, start-up included; the rest
(daemons, seeds, scheduler, tracker, aria2c nodes, the origin) from ``/proc`` as the
difference between the gate opening and the last completion.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common.measure import tail
from bench.common.workspace import BenchError, sha256_of
from bench.swarm.origin import OriginStats
from bench.swarm.procs import Gate, Proc, Processes, reap
from bench.swarm.system import (
    NODE_CLIENT,
    NODE_DAEMON,
    SEED,
    Context,
    Deployment,
    NodeJob,
    SwarmSystem,
)

GATE_TIMEOUT = 60.0
POLL_MS = 20


@dataclass
class RunFigures:
    completion_seconds: list[float]  # per node, in node order
    origin: OriginStats  # what the origin sent during the run
    cpu_seconds: dict[str, float]  # by role, plus "origin"
    daemon_peak_rss_bytes: int | None  # the largest node daemon's VmHWM
    seed_peak_rss_bytes: int | None
    extra: dict[str, Any] = field(default_factory=dict)
    verified_copies: int = 0
    started_at: float = 0.0  # time.time() when the gate opened


def run_once(ctx: Context, system: SwarmSystem, timeout: float) -> RunFigures:
    procs = Processes(ctx.env)
    gate = Gate(ctx.run_dir / "start.fifo")
    try:
        deployment = system.deploy(ctx, procs)
        started = _start_together(ctx, procs, gate, deployment)
        times = wait_for_nodes(deployment.jobs, started.jobs, started.at, timeout)
        figures = _account(ctx, deployment, started, times)
        figures.extra = system.collect(ctx, deployment)
    finally:
        procs.stop_all()
        gate.close()
    figures.verified_copies = verify(deployment.jobs, ctx.source.size, ctx.source.sha256)
    return figures


@dataclass(frozen=True)
class _Started:
    at: float  # time.time() when the gate opened
    jobs: list[Proc]  # one per node job, in order
    gated: list[tuple[str, Proc]]  # (role, process) of the gated services
    cpu_before: dict[int, float]  # pid -> CPU seconds of each service at the start
    origin_before: OriginStats


def _start_together(ctx: Context, procs: Processes, gate: Gate, deployment: Deployment) -> _Started:
    """Start every node job and gated service behind the gate, then open it."""
    jobs = [
        procs.start_gated(job.host.role, job.host, job.argv, ctx.log(job.host.role), gate)
        for job in deployment.jobs
    ]
    gated = [
        (s.role, procs.start_gated(s.role, s.host, s.argv, ctx.log(s.role), gate))
        for s in deployment.gated
    ]
    gate.wait_waiting(jobs + [proc for _, proc in gated], GATE_TIMEOUT)
    cpu_before = {proc.pid: proc.cpu_seconds() for _, proc in deployment.services}
    origin_before = ctx.origin.stats()
    at = gate.open_all(len(jobs) + len(gated))
    return _Started(at, jobs, gated, cpu_before, origin_before)


def _account(
    ctx: Context, deployment: Deployment, started: _Started, times: list[float]
) -> RunFigures:
    """Origin bytes, CPU and peak RSS, read right after the last node finished."""
    origin = ctx.origin.stats() - started.origin_before
    services = deployment.services
    node_daemons = [p for role, p in services if role == NODE_DAEMON]
    node_daemons += [p for j, p in zip(deployment.jobs, started.jobs, strict=True) if j.is_daemon]
    return RunFigures(
        completion_seconds=times,
        origin=origin,
        cpu_seconds=_cpu(deployment, started, origin),
        daemon_peak_rss_bytes=_peak(node_daemons),
        seed_peak_rss_bytes=_peak([p for role, p in [*services, *started.gated] if role == SEED]),
        started_at=started.at,
    )


def wait_for_nodes(
    jobs: Sequence[NodeJob], procs: Sequence[Proc], started: float, timeout: float
) -> list[float]:
    """Seconds from ``started`` to each node's completion; raises on failure or timeout."""
    done: dict[int, float] = {}
    pidfds = {os.pidfd_open(proc.pid): index for index, proc in enumerate(procs)}
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    try:
        while len(done) < len(jobs):
            poller.poll(POLL_MS)
            _check(jobs, procs, started, done)
            if time.time() - started > timeout and len(done) < len(jobs):
                raise BenchError(_timeout_message(jobs, procs, done, timeout))
    finally:
        for fd in pidfds:
            os.close(fd)
    return [done[index] for index in range(len(jobs))]


def _check(
    jobs: Sequence[NodeJob], procs: Sequence[Proc], started: float, done: dict[int, float]
) -> None:
    reap(procs)
    for index, (job, proc) in enumerate(zip(jobs, procs, strict=True)):
        if index in done:
            continue
        if job.done_file is not None and job.done_file.exists():
            stamp = job.done_file.read_text().strip()
            if stamp:
                done[index] = float(stamp) - started
        elif proc.exited_at is not None:
            if job.done_file is not None or proc.popen.returncode != 0:
                code = proc.popen.returncode
                raise BenchError(f"{proc.name} exited {code} unfinished: {tail(proc.log)}")
            done[index] = proc.exited_at - started


def _timeout_message(
    jobs: Sequence[NodeJob], procs: Sequence[Proc], done: dict[int, float], timeout: float
) -> str:
    late = [procs[i] for i in range(len(jobs)) if i not in done]
    return (
        f"{len(late)} of {len(jobs)} nodes not done after {timeout:.0f} s;"
        f" {late[0].name}: {tail(late[0].log, 5)}"
    )


def _cpu(deployment: Deployment, started: _Started, origin: OriginStats) -> dict[str, float]:
    totals: dict[str, float] = {"origin": origin.cpu_seconds}

    def add(role: str, seconds: float) -> None:
        totals[role] = totals.get(role, 0.0) + seconds

    for job, proc in zip(deployment.jobs, started.jobs, strict=True):
        add(NODE_DAEMON if job.is_daemon else NODE_CLIENT, proc.cpu_seconds())
    for role, proc in deployment.services:
        add(role, proc.cpu_seconds() - started.cpu_before[proc.pid])
    for role, proc in started.gated:
        add(role, proc.cpu_seconds())
    return totals


def _peak(procs: Sequence[Proc]) -> int | None:
    return max((proc.peak_rss_bytes() for proc in procs), default=None)


def verify(jobs: Sequence[NodeJob], size: int, sha256: str) -> int:
    """Every node's copy must be the source, byte for byte; returns how many were checked."""
    for job in jobs:
        _verify_one(job.host.role, job.output, size, sha256)
    return len(jobs)


def _verify_one(node: str, output: Path, size: int, sha256: str) -> None:
    if not output.is_file():
        raise BenchError(f"{node}: no copy at {output}")
    if output.stat().st_size != size:
        raise BenchError(f"{node}: copy has {output.stat().st_size} bytes, expected {size}")
    actual = sha256_of(output)
    if actual != sha256:
        raise BenchError(f"{node}: sha256 {actual} differs from the source's {sha256}")
