"""Run one command and measure it: wall time, CPU seconds and peak RSS of that child alone.

CPU: ``os.wait4`` on the child's pid gives that child's rusage (it and any grandchildren it
reaped), not the running sum that ``getrusage(RUSAGE_CHILDREN)`` keeps; the
``RUSAGE_CHILDREN`` delta is recorded too, as a cross-check.

Peak RSS needs care. Linux folds the parent's peak RSS into the child's ``ru_maxrss``: the
child starts as a (v)fork of this Python process and its high-water mark before ``exec``
counts. So a 10 MiB ``curl`` spawned from a 50 MiB benchmark reports 50 MiB. We therefore
reset our own high-water mark before spawning (``/proc/self/clear_refs``), and afterwards:

* if the child's ``ru_maxrss`` is above our own peak during the run, it is the child's own
  (exact);
* otherwise the child never outgrew what it inherited, and we use the largest ``VmHWM`` read
  from ``/proc/<pid>/status`` while it ran (sampled every few ms until its pidfd signals exit;
  growth in the last interval can be missed).
"""

from __future__ import annotations

import os
import resource
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KIB = 1024
KILL_GRACE_SECONDS = 5.0
SAMPLE_INTERVAL_MS = 5


@dataclass(frozen=True)
class Measurement:
    wall_seconds: float
    user_seconds: float
    system_seconds: float
    peak_rss_bytes: int  # the child's own, see the module docstring
    rss_source: str  # "wait4" (exact) or "sampled" (VmHWM polled while it ran)
    wait4_maxrss_bytes: int  # as the kernel reports it, inheritance included
    parent_peak_rss_bytes: int  # our own peak while the child ran: what it may inherit
    children_cpu_seconds: float  # RUSAGE_CHILDREN delta, for cross-checking
    exit_code: int

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_seconds": self.cpu_seconds}


def measure(
    argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
) -> Measurement:
    """Run ``argv`` to completion with stdout and stderr going to ``log_path``.

    The child is killed if we are interrupted (Ctrl-C, SIGTERM) while it runs."""
    reset_own_peak_rss()
    cpu_before = _children_cpu()
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
        status, usage, sampled = _wait(process)
        wall = time.perf_counter() - started
    inherited = own_peak_rss_bytes()
    reported = usage.ru_maxrss * KIB  # Linux reports KiB
    exact = reported > inherited
    return Measurement(
        wall_seconds=wall,
        user_seconds=usage.ru_utime,
        system_seconds=usage.ru_stime,
        peak_rss_bytes=reported if exact else sampled,
        rss_source="wait4" if exact else "sampled",
        wait4_maxrss_bytes=reported,
        parent_peak_rss_bytes=inherited,
        children_cpu_seconds=_children_cpu() - cpu_before,
        exit_code=os.waitstatus_to_exitcode(status),
    )


def _wait(process: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage, int]:
    """Reap the child with ``wait4``; also returns the largest ``VmHWM`` sampled meanwhile."""
    try:
        sampled = _sample_until_exit(process.pid)
        _pid, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        stop_process(process)
        raise
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return status, usage, sampled


def _sample_until_exit(pid: int) -> int:
    peak = 0
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while not poller.poll(SAMPLE_INTERVAL_MS):
            peak = max(peak, _status_kib(f"/proc/{pid}/status", "VmHWM") * KIB)
    finally:
        os.close(pidfd)
    return peak


def reset_own_peak_rss() -> None:
    """Lower our high-water mark to our current RSS (Linux >= 4.0; harmless elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def own_peak_rss_bytes() -> int:
    return _status_kib("/proc/self/status", "VmHWM") * KIB


def _status_kib(path: str, field: str) -> int:
    """A ``kB`` field of a ``/proc/*/status`` file; 0 when gone (the process exited)."""
    try:
        with open(path) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate, then kill after a grace period; safe to call on a finished process."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
