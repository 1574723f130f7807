"""``make bench-swarm TIER=...``: one file to N nodes, damselfly vs direct vs BitTorrent.

Steps: build a cluster of network namespaces on one bridge with links shaped by ``tbf``
(``bench/swarm/netns.py``); write a file of random bytes to /dev/shm and serve it from the
origin namespace; then per round, calibrate the links' goodput and run every system once
(order rotated), all nodes starting together; check every node's copy (sha256); print a
markdown table, write ``bench/results/swarm-<tier>-<timestamp>.json`` and a PNG of the
completion times. The namespaces, links and bridge are always removed, also on Ctrl-C.

Needs root (network namespaces, tc). Exit codes: 0 done, 1 failed, 2 usage or not root,
130 interrupted.

    sudo .venv/bin/python bench/swarm/run.py --tier smoke --runs 1
    sudo .venv/bin/python bench/swarm/run.py --tier standard --systems damselfly,bt-cold
    sudo .venv/bin/python bench/swarm/run.py --cleanup     # remove what a killed run left
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

from bench.common.arguments import (  # noqa: E402
    EXIT_FAILED,
    positive_int,
    run_guarded,
    size_type,
    system_names,
)
from bench.common.machine import load_average, machine_info  # noqa: E402
from bench.common.report import write_json  # noqa: E402
from bench.common.workspace import (  # noqa: E402
    check_room,
    shm_directory,
    write_random,
)
from bench.swarm import report  # noqa: E402
from bench.swarm.calibrate import prepare_files  # noqa: E402
from bench.swarm.netns import network, new_tag, plan_layout, stale_names, teardown  # noqa: E402
from bench.swarm.origin import origin_process  # noqa: E402
from bench.swarm.plot import plot_completions  # noqa: E402
from bench.swarm.session import Session, run_rounds  # noqa: E402
from bench.swarm.system import Source, Tools  # noqa: E402
from bench.swarm.systems import DEFAULT_SYSTEMS, SYSTEM_NAMES, build_systems  # noqa: E402
from bench.swarm.tiers import TIERS, Tier, direct_time, fluid_bound  # noqa: E402
from damselfly.core.units import format_size  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
EXIT_USAGE = 2
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"}
TIMEOUT_SLACK = 120.0  # seconds on top of 3 x the direct download's nominal time


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print(
            "bench-swarm: needs root (network namespaces, veth, tc):"
            " run it as root, e.g. `sudo make bench-swarm TIER=smoke`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run_guarded(
        "bench-swarm",
        lambda: _cleanup() if args.cleanup else run(args),
        on_interrupt="processes stopped, network removed",
        signals=(signal.SIGTERM, signal.SIGHUP),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="bench-swarm", description=summary)
    parser.add_argument("--tier", choices=sorted(TIERS), default="smoke", help="default smoke")
    parser.add_argument("--runs", type=positive_int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--systems",
        type=system_names(SYSTEM_NAMES),
        default=list(DEFAULT_SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEM_NAMES)}"
        f" (default {','.join(DEFAULT_SYSTEMS)})",
    )
    parser.add_argument("--nodes", type=positive_int, help="override the tier's node count")
    parser.add_argument("--size", type=size_type("--size"), help="override the tier's file size")
    parser.add_argument("--timeout", type=float, help="seconds one run may take")
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm directory")
    parser.add_argument(
        "--log-level",
        choices=("error", "warn", "info", "debug"),
        default="warn",
        help="damselfly's services' log level (default warn; logs are kept with --keep)",
    )
    parser.add_argument(
        "--cleanup", action="store_true", help="remove namespaces/links a killed run left"
    )
    return parser.parse_args(argv)


def _copies_per_node(names: list[str]) -> int:
    """Copies of the file a node keeps in /dev/shm: one (damselfly's output is a hard link to
    its store's file there) unless a system copies its outputs (``--no-hard-link``). Rounds
    run one after another, each cleaned."""
    return 2 if any(name.endswith("-copy") for name in names) else 1


def run(args: argparse.Namespace) -> None:
    tier = TIERS[args.tier].with_overrides(args.nodes, args.size)
    tools = Tools.find()
    systems = build_systems(args.systems, tools, damselfly_log_level=args.log_level)
    timeout = (
        args.timeout or 3 * direct_time(tier.size, tier.nodes, tier.origin_rate) + TIMEOUT_SLACK
    )
    started, load_start = datetime.now(UTC), load_average()
    _announce(tier, args)
    with shm_directory(keep=args.keep) as root:
        check_room(root, (tier.nodes * _copies_per_node(args.systems) + 4) * tier.size)
        source = _make_source(root, tier.size)
        layout = plan_layout(new_tag(), tier.nodes, tier.origin_mbit, tier.node_mbit)
        env = child_env()
        with (
            network(layout),
            origin_process(layout.origin, source.path.parent, root / "origin.log", env) as origin,
        ):
            session = Session(tier, layout, origin, source, tools, env, root, timeout, args.keep)
            runs = run_rounds(session, systems, args.runs)
    _report(args, tier, tools, started, [load_start, load_average()], runs, source)


def default_timeout(tier: Tier) -> float:
    """3 x the direct download's nominal time, plus slack: long enough for every system."""
    return 3 * direct_time(tier.size, tier.nodes, tier.origin_rate) + TIMEOUT_SLACK


def _announce(tier: Tier, args: argparse.Namespace) -> None:
    nominal = fluid_bound(tier.size, tier.nodes, tier.origin_rate, tier.node_rate)
    print(
        f"tier {tier.name}: {tier.nodes} nodes, {format_size(tier.size)},"
        f" origin {tier.origin_mbit:g} Mbit/s, nodes {tier.node_mbit:g} Mbit/s;"
        f" fluid bound at nominal rates {nominal:.1f} s; {args.runs} round(s) of"
        f" {','.join(args.systems)}",
        file=sys.stderr,
    )


def _make_source(root: Path, size: int) -> Source:
    origin_root = root / "origin"
    print(f"writing {format_size(size)} of random bytes to {origin_root}", file=sys.stderr)
    path = origin_root / "blob.bin"
    sha256 = write_random(path, size)
    prepare_files(origin_root, root / "calibration")
    return Source(path, size, sha256)


def child_env() -> dict[str, str]:
    """Our environment without proxies (nothing may leave the namespaces) or DFGET_*."""
    return {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in PROXY_VARIABLES and not key.startswith("DFGET_")
    }


def _report(
    args: argparse.Namespace,
    tier: Tier,
    tools: Tools,
    started: datetime,
    loads: list[list[float]],
    runs: list[report.SwarmRun],
    source: Source,
) -> None:
    summaries = report.summarise(runs)
    print(report.markdown_table(summaries))
    for line in report.failures(runs):
        print(f"FAILED: {line}")
    print(f"load average (1/5/15 min): start {loads[0]}, end {loads[1]}")
    stem = f"swarm-{tier.name}-{started:%Y%m%dT%H%M%SZ}"
    png = RESULTS_DIR / f"{stem}.png"
    title = (
        f"{tier.name}: {tier.nodes} nodes, {format_size(tier.size)}, {started:%Y-%m-%d %H:%M} UTC"
    )
    why_not = plot_completions(runs, title, png)
    print(why_not or f"plot: {png.relative_to(REPO)}", file=sys.stderr)
    document = _document(args, tier, tools, started, loads, runs, source, summaries)
    write_json(RESULTS_DIR / f"{stem}.json", document)
    print(f"raw runs: {(RESULTS_DIR / f'{stem}.json').relative_to(REPO)}", file=sys.stderr)


def _document(
    args: argparse.Namespace,
    tier: Tier,
    tools: Tools,
    started: datetime,
    loads: list[list[float]],
    runs: list[report.SwarmRun],
    source: Source,
    summaries: list[report.SystemSummary],
) -> dict[str, Any]:
    return {
        "benchmark": "swarm",
        "date": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "tier": tier.__dict__,
        "settings": {"runs": args.runs, "systems": args.systems, "timeout": args.timeout},
        "source": {"size": source.size, "sha256": source.sha256},
        "nominal_bound_seconds": fluid_bound(
            tier.size, tier.nodes, tier.origin_rate, tier.node_rate
        ),
        "machine": machine_info({k: v for k, v in tools.to_json().items() if v}),
        "load_average": {"start": loads[0], "end": loads[1]},
        "runs": [r.to_json() for r in runs],
        "summary": report.summaries_json(summaries),
    }


def _cleanup() -> int:
    left = stale_names()
    if not left:
        print("nothing to remove", file=sys.stderr)
        return 0
    namespaces = [name for name in left if "-" in name]
    still = teardown("dfsw", namespaces)
    print(f"removed {len(left) - len(still)}; left: {still or 'nothing'}", file=sys.stderr)
    return EXIT_FAILED if still else 0


if __name__ == "__main__":
    sys.exit(main())
