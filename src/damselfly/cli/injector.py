"""``damselfly injector``: the Pod-injection admission webhook, over HTTPS until SIGTERM.

Settings: defaults < ``--config`` YAML < ``DAMSELFLY_INJECTOR_*`` environment < flags. Once
serving, one line goes to stdout: ``injector listening: https=<host:port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damselfly.cli.service_runner import run_service
from damselfly.config.injector import InjectorSettings, load
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
    """Run with parsed arguments (also the entry of the ``damselfly`` umbrella command)."""
    overrides = _overrides(args)
    return run_service(
        args, prog=PROG, model=InjectorSettings, load=load, overrides=overrides, serve=_serve
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"listen": args.listen, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
             "log_level": args.log_level}  # fmt: skip
    return {name: value for name, value in flags.items() if value is not None}


async def _serve(settings: InjectorSettings, stop: asyncio.Event) -> None:
    await serve(settings, stop=stop, on_ready=_announce)


def _announce(address: str) -> None:
    print(f"injector listening: https={address}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run(
        add_arguments(argparse.ArgumentParser(prog=PROG, description=__doc__)).parse_args(argv)
    )


if __name__ == "__main__":
    sys.exit(main())
