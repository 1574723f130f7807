"""``damselfly``: the umbrella command (``demo``, ``scheduler``, ``manager``, ``ca``,
``enroll``, ``renew``, ``injector``, ``containerd-config``, ``report``, ``download``)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Sequence

from damselfly.cli import ca as ca_cli
from damselfly.cli import containerd_config as containerd_cli
from damselfly.cli import enroll as enroll_cli
from damselfly.cli import hub_download as download_cli
from damselfly.cli import injector as injector_cli
from damselfly.cli import manager as manager_cli
from damselfly.cli import report as report_cli
from damselfly.cli import scheduler as scheduler_cli
from damselfly.cli.reporting import report_failure
from damselfly.core.errors import EXIT_FAILURE, EXIT_OK, DamselflyError, UsageError
from damselfly.core.units import parse_size
from damselfly.demo.run import demo_root, print_report, run_demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="damselfly")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a local P2P cluster demonstration, offline")
    demo.add_argument("--peers", type=int, default=8, help="peer daemons (default 8)")
    demo.add_argument(
        "--shard-size", default="128MiB", help="size of the synthetic shard (default 128MiB)"
    )
    demo.add_argument("--keep", action="store_true", help="keep the demo's files afterwards")
    scheduler_cli.add_arguments(commands.add_parser("scheduler", help="run the scheduler"))
    ca_cli.add_arguments(commands.add_parser("ca", help="the cluster CA and enrollment service"))
    enroll_cli.add_enroll_arguments(
        commands.add_parser("enroll", help="join the cluster: get a certificate with a token")
    )
    enroll_cli.add_renew_arguments(
        commands.add_parser("renew", help="renew this node's certificate")
    )
    injector_cli.add_arguments(
        commands.add_parser("injector", help="run the Pod-injection webhook")
    )
    containerd_cli.add_arguments(
        commands.add_parser("containerd-config", help="point containerd at the daemon's mirror")
    )
    report_cli.add_arguments(commands.add_parser("report", help="rollout figures before/after"))
    manager_cli.add_arguments(commands.add_parser("manager", help="run the manager"))
    download_cli.add_arguments(
        commands.add_parser("download", help="hf download, through the mesh when a daemon runs")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "scheduler":
            return scheduler_cli.run(args)
        if args.command in _COMMANDS:
            return _COMMANDS[args.command](args)
        return _demo(args)
    except DamselflyError as exc:
        return report_failure("damselfly", exc, debug=False)
    except KeyboardInterrupt:
        return 130


_COMMANDS = {
    "ca": ca_cli.run,
    "enroll": enroll_cli.run_enroll,
    "renew": enroll_cli.run_renew,
    "injector": injector_cli.run,
    "containerd-config": containerd_cli.run,
    "report": report_cli.run,
    "manager": manager_cli.run,
    "download": download_cli.run,
}


def _demo(args: argparse.Namespace) -> int:
    length = parse_size(args.shard_size, what="--shard-size")
    if not 1 <= args.peers <= 64:
        raise UsageError(f"--peers {args.peers}: must be between 1 and 64")
    workdir = demo_root()
    try:
        report = asyncio.run(run_demo(args.peers, length, workdir))
        ok = print_report(report)
    finally:
        if args.keep:
            print(f"demo files kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return EXIT_OK if ok else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
