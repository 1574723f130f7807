"""Processes inside the cluster's hosts: start, wait until ready, gate, watch, stop, account.

``Processes`` owns every process one run starts and stops them all at the end (SIGTERM, then
SIGKILL), whatever happened. Output goes to a log file per process, never to a pipe we might
stop draining; a service is *ready* when its log shows its ready line.

The start gate: every node's command runs as ``sh -c 'read _ < FIFO && exec CMD'``. We hold
the FIFO open read-write before any reader starts, so no reader can miss the start: once every
gated process has the FIFO open, one newline per process releases them all at once (``dash``'s
``read`` consumes exactly one line). ``ip netns exec`` and ``sh`` both ``exec``, so the pid we
started is the pid of the command, and ``wait4`` on it gives that command's own rusage.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.measure import KIB, tail
from bench.common.workspace import BenchError, process_cpu_seconds
from bench.swarm.netns import Host

STOP_GRACE = 5.0
POLL_SECONDS = 0.05
GATE_SCRIPT = 'read _ < "$0" && exec "$@"'


@dataclass
class Proc:
    name: str
    host: Host
    popen: subprocess.Popen[bytes]
    log: Path
    exited_at: float | None = None  # time.time() when reaped by ``reap``
    cpu_at_exit: float | None = None  # user + system from wait4
    maxrss_at_exit: int | None = None  # bytes, wait4's (may include what sh inherited)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """CPU used so far (``/proc``), or at exit (``wait4``) once reaped."""
        return self.cpu_at_exit if self.cpu_at_exit is not None else process_cpu_seconds(self.pid)

    def peak_rss_bytes(self) -> int:
        """``VmHWM`` while it runs; 0 once gone."""
        return status_kib(self.pid, "VmHWM") * KIB


class Processes:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._procs: list[Proc] = []

    def start(
        self, name: str, host: Host, argv: Sequence[str], log: Path, cwd: Path | None = None
    ) -> Proc:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            popen = subprocess.Popen(
                host.argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=cwd,
                start_new_session=True,  # Ctrl-C reaches us, not them; we stop them in order
            )
        proc = Proc(name, host, popen, log)
        self._procs.append(proc)
        return proc

    def start_gated(
        self, name: str, host: Host, argv: Sequence[str], log: Path, gate: Gate
    ) -> Proc:
        return self.start(name, host, ["sh", "-c", GATE_SCRIPT, str(gate.path), *argv], log)

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            with contextlib.suppress(ProcessLookupError):
                if proc.popen.returncode is None:
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in reversed(self._procs):
            _wait_or_kill(proc.popen, deadline)
        self._procs.clear()


def _wait_or_kill(popen: subprocess.Popen[bytes], deadline: float) -> None:
    if popen.returncode is not None:
        return
    try:
        popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def wait_ready(procs: Sequence[Proc], pattern: re.Pattern[str], timeout: float) -> None:
    """Until every process's log matches ``pattern``; raises if one exits or time runs out."""
    pending = list(procs)
    deadline = time.monotonic() + timeout
    while pending:
        for proc in list(pending):
            if pattern.search(_read(proc.log)):
                pending.remove(proc)
            elif proc.popen.poll() is not None:
                raise BenchError(f"{proc.name} exited {proc.popen.returncode}: {tail(proc.log)}")
        if pending and time.monotonic() > deadline:
            raise BenchError(
                f"{pending[0].name} not ready in {timeout:.0f} s: {tail(pending[0].log)}"
            )
        time.sleep(POLL_SECONDS if pending else 0)


def ready_match(proc: Proc, pattern: re.Pattern[str]) -> re.Match[str]:
    match = pattern.search(_read(proc.log))
    if match is None:
        raise BenchError(f"{proc.name}: no ready line in {proc.log}")
    return match


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class Gate:
    """A FIFO that gated commands block on until ``open_all``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # never blocks, keeps it alive

    def wait_waiting(self, procs: Sequence[Proc], timeout: float) -> None:
        """Until every gated process holds the FIFO as its stdin (about to block reading)."""
        deadline = time.monotonic() + timeout
        while not all(_stdin_is(proc.pid, self.path) for proc in procs):
            dead = [p for p in procs if p.popen.poll() is not None]
            if dead:
                raise BenchError(f"{dead[0].name} exited before the start: {tail(dead[0].log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"gated processes not waiting after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def open_all(self, count: int) -> float:
        """Release ``count`` waiters; returns the start time (``time.time()``)."""
        started = time.time()
        os.write(self._fd, b"\n" * count)
        return started

    def close(self) -> None:
        os.close(self._fd)


def _stdin_is(pid: int, path: Path) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/fd/0") == str(path)
    except OSError:
        return False


def reap(procs: Sequence[Proc]) -> list[Proc]:
    """``wait4`` every process of ``procs`` that has exited; returns those reaped now."""
    reaped = []
    for proc in procs:
        if proc.exited_at is not None:
            continue
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            continue
        proc.exited_at = time.time()
        proc.popen.returncode = os.waitstatus_to_exitcode(status)
        proc.cpu_at_exit = usage.ru_utime + usage.ru_stime
        proc.maxrss_at_exit = usage.ru_maxrss * KIB
        reaped.append(proc)
    return reaped


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status``; 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
