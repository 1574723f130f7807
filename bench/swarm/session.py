"""One invocation's rounds: calibrate the links, then run every system once, order rotated.

The network and the origin live for the whole invocation; each run gets a fresh directory
for its stores and copies (removed afterwards) and a log directory. A failed run (a node that
did not finish, a corrupt copy, a system that fell back to something else) is recorded with
its reason and the next run goes on; Ctrl-C stops everything.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.machine import load_average
from bench.common.workspace import BenchError
from bench.swarm.calibrate import Calibration, calibrate
from bench.swarm.netns import Layout
from bench.swarm.origin import Origin
from bench.swarm.report import SwarmRun
from bench.swarm.runner import run_once
from bench.swarm.system import Context, Source, SwarmSystem, Tools
from bench.swarm.tiers import Tier, fluid_bound


@dataclass(frozen=True)
class Session:
    tier: Tier
    layout: Layout
    origin: Origin
    source: Source
    tools: Tools
    env: Mapping[str, str]
    root: Path  # the /dev/shm directory of this invocation
    timeout: float  # seconds one run may take
    keep: bool


def run_rounds(session: Session, systems: Sequence[SwarmSystem], rounds: int) -> list[SwarmRun]:
    runs = []
    for round_index in range(rounds):
        calibration = _calibrate(session, round_index)
        for position, system in enumerate(_rotated(systems, round_index)):
            run = _run(session, system, round_index, position, calibration)
            _progress(run, rounds)
            runs.append(run)
    return runs


def _calibrate(session: Session, round_index: int) -> Calibration:
    log_dir = session.root / "logs" / f"calibration-{round_index + 1}"
    log_dir.mkdir(parents=True, exist_ok=True)
    node_root = session.root / "calibration"
    found = calibrate(session.layout, session.origin, node_root, session.env, log_dir)
    print(
        f"round {round_index + 1}: calibrated goodput: origin {found.origin_rate * 8 / 1e6:.1f}"
        f" Mbit/s, node {found.node_rate * 8 / 1e6:.1f} Mbit/s",
        file=sys.stderr,
    )
    return found


def _run(
    session: Session,
    system: SwarmSystem,
    round_index: int,
    position: int,
    calibration: Calibration,
) -> SwarmRun:
    tier = session.tier
    label = f"{system.name}-r{round_index + 1}"
    ctx = Context(
        layout=session.layout,
        origin=session.origin,
        source=session.source,
        tools=session.tools,
        env=session.env,
        work_dir=session.root / "work",
        run_dir=session.root / "runs" / label,
        log_dir=session.root / "logs" / label,
    )
    ctx.run_dir.mkdir(parents=True)
    ctx.log_dir.mkdir(parents=True)
    source_rate = calibration.node_rate if system.source_on_seed else calibration.origin_rate
    bound = fluid_bound(tier.size, tier.nodes, source_rate, calibration.node_rate)
    run = SwarmRun(
        system.name, round_index, position, tier.nodes, tier.size, calibration, bound,
        bound_source="seed" if system.source_on_seed else "origin",
        load_before=load_average(), load_after=[], figures=None,
    )  # fmt: skip
    try:
        run.figures = run_once(ctx, system, session.timeout)
    except BenchError as exc:
        run.error = str(exc)
    finally:
        run.load_after = load_average()
        if not session.keep:
            shutil.rmtree(ctx.run_dir, ignore_errors=True)
    return run


def _rotated(systems: Sequence[SwarmSystem], round_index: int) -> list[SwarmSystem]:
    shift = round_index % len(systems) if systems else 0
    return [*systems[shift:], *systems[:shift]]


def _progress(run: SwarmRun, rounds: int) -> None:
    head = f"round {run.round_index + 1}/{rounds} {run.system:<14}"
    if run.figures is None:
        print(f"{head} FAILED: {run.error}", file=sys.stderr)
        return
    d = run.derived()
    sends = ""
    if "origin_first_s" in d:
        sends = f" from {d['origin_first_s']:.1f} to {d['origin_last_s']:.1f} s"
    print(
        f"{head} first {d['first']:6.1f} s  last {d['last']:6.1f} s"
        f"  last/bound {d['last_over_bound']:5.2f}  origin {d['origin_ratio']:5.2f} x S{sends}"
        f"  cpu {d['cpu_seconds']:6.1f} s  load {run.load_after[0]:.2f}",
        file=sys.stderr,
    )
