"""``damselfly scheduler``: run the scheduler until SIGTERM or SIGINT.

Also runnable as ``python -m damselfly.cli.scheduler``. Settings: defaults < ``--config`` YAML
< ``DAMSELFLY_TLS_DIR`` < ``DAMSELFLY_SCHEDULER_*`` environment < flags. Once serving, one
line goes to stdout: ``scheduler listening: grpc=<host:port> metrics=<host:port>`` (useful
with port 0).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damselfly.cli.service_runner import run_service
from damselfly.config.scheduler import SchedulerSettings, load
from damselfly.scheduler.app import RunningScheduler, serve

PROG = "damselfly scheduler"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--config", type=Path, help="YAML settings file (see --print-example-config)"
    )
    parser.add_argument("--listen", help="gRPC address, host:port (default 127.0.0.1:8002)")
    parser.add_argument(
        "--metrics-listen", help="/metrics and /healthz address, host:port (default 127.0.0.1:8004)"
    )
    parser.add_argument(
        "--tls-dir",
        type=Path,
        help="serve mTLS with the node material in this directory (tls.crt, tls.key, ca.crt; "
        "also DAMSELFLY_TLS_DIR); without it the port is plain text",
    )
    parser.add_argument("-l", "--log-level", choices=["error", "warn", "info", "debug"])
    parser.add_argument(
        "--print-example-config", action="store_true", help="print a commented example config"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog=PROG, description=__doc__))


def run(args: argparse.Namespace) -> int:
    """Run with parsed arguments (also the entry of the ``damselfly`` umbrella command)."""
    overrides = _overrides(args)
    return run_service(
        args, prog=PROG, model=SchedulerSettings, load=load, overrides=overrides, serve=_serve
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"listen": args.listen, "metrics_listen": args.metrics_listen,
             "log_level": args.log_level}  # fmt: skip
    overrides = {name: value for name, value in flags.items() if value is not None}
    if args.tls_dir is not None:
        overrides["tls"] = {"enabled": True, "dir": args.tls_dir}
    return overrides


async def _serve(settings: SchedulerSettings, stop: asyncio.Event) -> None:
    await serve(settings, stop=stop, on_ready=_announce)


def _announce(running: RunningScheduler) -> None:
    print(
        f"scheduler listening: grpc={running.grpc_address} metrics={running.metrics_address}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
