"""``damselfly scheduler``: run the scheduler until SIGTERM or SIGINT.

Also runnable as ``python -m damselfly.cli.scheduler``. Settings: defaults < ``--config`` YAML
< ``DAMSELFLY_TLS_DIR`` < ``DAMSELFLY_SCHEDULER_*`` environment < flags. Once serving, one
line goes to stdout: ``scheduler listening: grpc=<host:port> metrics=<host:port>`` (useful
with port 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damselfly.cli.reporting import configure_logging, report_failure
from damselfly.config.base import example_yaml
from damselfly.config.scheduler import SchedulerSettings, load
from damselfly.core.errors import EXIT_OK
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
    if args.print_example_config:
        sys.stdout.write(example_yaml(SchedulerSettings))
        return EXIT_OK
    try:
        settings = load(args.config, os.environ, _overrides(args))
        configure_logging(PROG, settings.log_level, timestamps=True)
        asyncio.run(_serve_until_signal(settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return report_failure(PROG, exc, debug=args.log_level == "debug")
    return EXIT_OK


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"listen": args.listen, "metrics_listen": args.metrics_listen,
             "log_level": args.log_level}  # fmt: skip
    overrides = {name: value for name, value in flags.items() if value is not None}
    if args.tls_dir is not None:
        overrides["tls"] = {"enabled": True, "dir": args.tls_dir}
    return overrides


async def _serve_until_signal(settings: SchedulerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
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
