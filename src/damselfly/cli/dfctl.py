"""``dfctl``: operate a damselfly cluster through its manager.

Cluster commands (``blocklist``, ``ratelimit``, ``preheat``, ``jobs``, ``peers``) call the
manager's REST API with the URL and token of ``~/.config/damselfly/dfctl.yaml`` (written by
``dfctl config set``, mode 0600), ``DFCTL_MANAGER`` / ``DFCTL_TOKEN`` or the flags. Tables on
stdout (``--output json`` for scripts), messages on stderr. Exit codes as dfget's: 0 success,
1 failure, 2 usage error, 130 interrupted. The local daemon commands (``task``, ``import``,
``export``, ``gc``) are not available yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from damselfly.cli import dfctl_commands as commands
from damselfly.cli.dfctl_local import LOCAL_COMMANDS, run_local
from damselfly.cli.dfctl_parser import build_parser
from damselfly.cli.reporting import report_failure
from damselfly.config import dfctl as dfctl_config
from damselfly.core.errors import EXIT_OK, UsageError
from damselfly.transport.manager_client import ManagerClient

PROG = "dfctl"
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.log_level == "debug"
        return run(args, env)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return report_failure(PROG, exc, debug=debug)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.command in LOCAL_COMMANDS:
        _print(asyncio.run(run_local(args, env)), args.output)
        return EXIT_OK
    path = Path(args.config) if args.config else dfctl_config.default_config_path(env)
    settings = dfctl_config.load(path, env)
    if args.command == "config":
        return _config(args, path, settings)
    settings = settings.model_copy(update=_flag_overrides(args))
    if not settings.token:
        raise UsageError(f"no token: run `dfctl config set --manager URL --token-stdin` ({path})")
    shown = asyncio.run(_call(settings, args.handler, args))
    _print(shown, args.output)
    return EXIT_OK


def _flag_overrides(args: argparse.Namespace) -> dict[str, str]:
    flags = {"manager": args.manager, "token": args.token}
    return {key: value for key, value in flags.items() if value}


async def _call(
    settings: dfctl_config.DfctlSettings, handler: commands.Command, args: argparse.Namespace
) -> commands.Shown:
    client = ManagerClient(settings.manager, settings.token, timeout=args.timeout)
    try:
        return await handler(client, args)
    finally:
        await client.aclose()


def _config(args: argparse.Namespace, path: Path, settings: dfctl_config.DfctlSettings) -> int:
    if args.config_command == "show":
        shown = {"path": str(path), "manager": settings.manager, "token": _masked(settings)}
        _print(commands.Shown(shown, [(key.upper(), key) for key in shown]), args.output)
        return EXIT_OK
    update = _flag_overrides(args)
    if args.set_manager:
        update["manager"] = args.set_manager
    if args.token_stdin:
        update["token"] = sys.stdin.readline().strip()
    dfctl_config.save(path, settings.model_copy(update=update))
    print(f"{PROG}: wrote {path} (mode 600)", file=sys.stderr)
    return EXIT_OK


def _masked(settings: dfctl_config.DfctlSettings) -> str:
    return f"{settings.token[:8]}..." if settings.token else ""


def _print(shown: commands.Shown, output: str) -> None:
    if output == "json":
        json.dump(shown.data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return
    if shown.message:
        print(f"{PROG}: {shown.message.strip()}", file=sys.stderr)
    rows = shown.data.get("files") if isinstance(shown.data, dict) else shown.data
    if shown.columns and isinstance(rows, list):
        _table(rows, shown.columns)
    elif shown.columns and isinstance(shown.data, dict):
        _table([shown.data], shown.columns)


def _table(rows: list[dict[str, object]], columns: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for header, _key in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*(commands.cell(key, row.get(key)) for _header, key in columns))
    Console(soft_wrap=True).print(table)


if __name__ == "__main__":
    sys.exit(main())
