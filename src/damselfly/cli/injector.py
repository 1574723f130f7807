"""``damselfly injector``: the Pod-injection admission webhook, over HTTPS until SIGTERM.

Settings: defaults < ``--config`` YAML < ``DAMSELFLY_INJECTOR_*`` environment < flags. Once
serving, one line goes to stdout: ``injector listening: https=<host:port>``.
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
from damselfly.config.injector import InjectorSettings, load
from damselfly.core.errors import EXIT_OK
from damselfly.injector.server import serve

PROG = "damselfly injector"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", type=Path, help="YAML settings file")
    parser.add_argument("--listen", help="HTTPS address, host:port (default 127.0.0.1:9443)")
    parser.add_argument("--tls-cert", help="PEM certificate file (e.g. <secret dir>/tls.crt)")
    parser.add_argument("--tls-key", help="PEM private key file (e.g. <secret dir>/tls.key)")
    parser.add_argument("-l", "--log-level", choices=["error", "warn", "info", "debug"])
    parser.add_argument(
        "--print-example-config", action="store_true", help="print a commented example config"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    if args.print_example_config:
        sys.stdout.write(example_yaml(InjectorSettings))
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
    flags = {"listen": args.listen, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
             "log_level": args.log_level}  # fmt: skip
    return {name: value for name, value in flags.items() if value is not None}


async def _serve_until_signal(settings: InjectorSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, stop=stop, on_ready=_announce)


def _announce(address: str) -> None:
    print(f"injector listening: https={address}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        add_arguments(argparse.ArgumentParser(prog=PROG, description=__doc__)).parse_args(argv)
    )


if __name__ == "__main__":
    sys.exit(main())
