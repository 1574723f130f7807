"""How every long-running ``damselfly`` service command runs: settings, logging, signals.

A service command parses its own flags; ``run_service`` does the rest the same way for each:
``--print-example-config``, settings loaded as defaults < YAML < environment < flags, logging
with UTC timestamps, a stop event set by SIGTERM/SIGINT, one-line errors and exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from damselfly.cli.heap import settle_heap
from damselfly.cli.reporting import configure_logging, report_failure
from damselfly.config.base import example_yaml
from damselfly.core.errors import EXIT_INTERRUPTED, EXIT_OK


class ServiceSettings(Protocol):
    @property
    def log_level(self) -> str: ...


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
Loader = Callable[[Path | None, Mapping[str, str], Mapping[str, Any]], SettingsT]
Server = Callable[[SettingsT, asyncio.Event], Awaitable[None]]


def run_service(
    args: argparse.Namespace,
    *,
    prog: str,
    model: type[BaseModel],
    load: Loader[SettingsT],
    overrides: dict[str, Any],
    serve: Server[SettingsT],
) -> int:
    """Run ``serve(settings, stop)`` until a signal sets ``stop``; the command's exit code."""
    if args.print_example_config:
        sys.stdout.write(example_yaml(model))
        return EXIT_OK
    try:
        settings = load(args.config, os.environ, overrides)
        configure_logging(prog, settings.log_level, timestamps=True)
        asyncio.run(_until_signal(serve, settings))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        return report_failure(prog, exc, debug=args.log_level == "debug")
    return EXIT_OK


async def _until_signal(serve: Server[SettingsT], settings: SettingsT) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settle_heap()  # the service's modules are imported; what it builds next is not frozen
    await serve(settings, stop)
