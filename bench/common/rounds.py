"""Systems run side by side: rounds interleaved, order rotated, each run cold and verified.

A ``System`` is prepared outside the timed region (its output, store or cache deleted, or a
warm store filled), then its ``Plan.argv`` runs under measurement, then the output is verified
and ``clean`` frees the memory it used. ``Harness`` holds what one benchmark plugs in: its
workspace (passed to every system), how to read the origin's CPU, how to verify an output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from bench.common.machine import load_average
from bench.common.measure import measure, tail
from bench.common.report import MIB, RunRecord
from bench.common.workspace import BenchError

W = TypeVar("W")
W_contra = TypeVar("W_contra", contravariant=True)


@dataclass(frozen=True)
class Plan:
    argv: list[str]
    output: Path  # what ``Harness.verify`` checks: a file, or a directory of files
    env: Mapping[str, str] | None = None  # None: ``child_env()``


class System(Protocol[W_contra]):
    @property
    def name(self) -> str: ...

    def prepare(self, ws: W_contra) -> Plan:
        """Reach the starting state (untimed) and return the command to time."""
        ...

    def clean(self, ws: W_contra) -> None:
        """Free what the run left behind (untimed)."""
        ...


@dataclass(frozen=True)
class Harness(Generic[W]):
    ws: W
    log_dir: Path
    run_length: int  # bytes one run moves, for the progress line
    origin_cpu_seconds: Callable[[], float]
    verify: Callable[[Path, str], None]  # (output, "system (round n)"); raises BenchError


def child_env() -> dict[str, str]:
    """Our environment without ``DFGET_*`` overrides, so every dfget run sees the flags only."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DFGET_")}


def rotated(systems: Sequence[System[W]], round_index: int) -> list[System[W]]:
    """Round ``r`` starts with system ``r mod n``, so no system always runs first."""
    shift = round_index % len(systems) if systems else 0
    return [*systems[shift:], *systems[:shift]]


def run_rounds(harness: Harness[W], systems: Sequence[System[W]], rounds: int) -> list[RunRecord]:
    records = []
    for round_index in range(rounds):
        for position, system in enumerate(rotated(systems, round_index)):
            record = run_once(harness, system, round_index, position)
            _progress(record, rounds, harness.run_length)
            records.append(record)
    return records


def run_once(harness: Harness[W], system: System[W], round_index: int, position: int) -> RunRecord:
    """Prepare (untimed), run (timed), verify and clean (untimed)."""
    plan = system.prepare(harness.ws)
    harness.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = harness.log_dir / f"{system.name}-round{round_index + 1}.log"
    load = load_average()
    origin_cpu = harness.origin_cpu_seconds()
    env = child_env() if plan.env is None else dict(plan.env)
    measurement = measure(plan.argv, log_path=log_path, env=env)
    origin_cpu = harness.origin_cpu_seconds() - origin_cpu
    what = f"{system.name} (round {round_index + 1})"
    if measurement.exit_code != 0:
        raise BenchError(f"{what} exited {measurement.exit_code}: {tail(log_path)}")
    harness.verify(plan.output, what)
    system.clean(harness.ws)
    return RunRecord(system.name, round_index, position, measurement, origin_cpu, load)


def _progress(record: RunRecord, rounds: int, run_length: int) -> None:
    seconds = record.measurement.wall_seconds
    print(
        f"round {record.round_index + 1}/{rounds} {record.system:<18} {seconds:7.2f} s"
        f" {run_length / MIB / seconds:7.0f} MiB/s  cpu {record.measurement.cpu_seconds:5.2f} s",
        file=sys.stderr,
    )
