"""``damselfly manager``: run the manager (``serve``, the default) or create the first admin.

Settings: defaults < ``--config`` YAML < ``DAMSELFLY_MANAGER_*`` environment < flags. Once
serving, one line goes to stdout: ``manager listening: http=<host:port>`` (useful with port 0).
``create-admin --name N`` migrates the database if needed, creates the admin user and prints
its token once on stdout: there is no default password.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from damselfly.cli.heap import settle_heap
from damselfly.cli.reporting import configure_logging, report_failure
from damselfly.config.base import example_yaml
from damselfly.config.manager import ManagerSettings, load
from damselfly.core.errors import EXIT_OK, UsageError
from damselfly.core.units import parse_duration

PROG = "damselfly manager"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _settings_flags(parser, None)
    actions = parser.add_subparsers(dest="manager_command")
    serve = actions.add_parser("serve", help="run the manager (the default)")
    admin = actions.add_parser("create-admin", help="create an admin user; prints its token")
    for action in (serve, admin):  # the flags also after the action, without resetting them
        _settings_flags(action, argparse.SUPPRESS)
    admin.add_argument("--name", required=True, help="the admin's user name")
    admin.add_argument("--lifetime", default="90d", help="token lifetime (default 90d)")
    return parser


def _settings_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--config", type=Path, default=default, help="YAML settings file")
    parser.add_argument(
        "--listen", default=default, help="HTTP address, host:port (default 127.0.0.1:8080)"
    )
    parser.add_argument("--data-dir", default=default, help="directory of the SQLite database")
    parser.add_argument(
        "--database-url", default=default, help="e.g. postgresql+psycopg://user@host/db"
    )
    parser.add_argument(
        "-l", "--log-level", default=default, choices=["error", "warn", "info", "debug"]
    )
    parser.add_argument(
        "--print-example-config",
        action="store_true",
        default=default if default is argparse.SUPPRESS else False,
        help="print a commented example config",
    )


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run with parsed arguments (the entry of ``damselfly manager``)."""
    env = os.environ if env is None else env
    if args.print_example_config:
        sys.stdout.write(example_yaml(ManagerSettings))
        return EXIT_OK
    try:
        settings = load(args.config, env, _overrides(args))
        configure_logging(PROG, settings.log_level, timestamps=True)
        if args.manager_command == "create-admin":
            return _create_admin(settings, env, args.name, args.lifetime)
        asyncio.run(_serve_until_signal(settings, env))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return report_failure(PROG, exc, debug=args.log_level == "debug")
    return EXIT_OK


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags = {"listen": args.listen, "data_dir": args.data_dir,
             "database_url": args.database_url, "log_level": args.log_level}  # fmt: skip
    return {name: value for name, value in flags.items() if value is not None}


def _create_admin(settings: ManagerSettings, env: Mapping[str, str], name: str, life: str) -> int:
    from sqlalchemy import select

    from damselfly.manager.auth import issue_token
    from damselfly.manager.db.database import open_database
    from damselfly.manager.db.models import User

    lifetime = timedelta(seconds=parse_duration(life))
    database = open_database(settings.resolved_database_url(env))
    try:
        with database.session() as session:
            if session.scalar(select(User).where(User.name == name)) is not None:
                raise UsageError(f"user {name} exists")
            user = User(name=name, role="admin")
            session.add(user)
            session.flush()
            _row, token = issue_token(session, user, "create-admin", lifetime)
            session.commit()
    finally:
        database.close()
    print(token)
    print(f"{PROG}: admin {name} created; the token above is shown only once", file=sys.stderr)
    return EXIT_OK


async def _serve_until_signal(settings: ManagerSettings, env: Mapping[str, str]) -> None:
    from damselfly.manager.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, env, stop=stop, on_ready=_announce)


def _announce(running: Any) -> None:
    settle_heap()
    print(f"manager listening: http={running.address}", flush=True)
