"""A dfdaemon that is only the local API, for tests and experiments.

``python -m damselfly.testing.local_api_server --socket PATH --storage-dir DIR`` serves the
local API (``daemon/servers/local_api.py``) with no P2P engine: ``StoreRunner`` reads every
request from its origins. It prints ``listening on PATH`` once it accepts connections, and
stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from damselfly.config.paths import default_socket_path, store_dir
from damselfly.core.errors import DamselflyError
from damselfly.daemon.engine.runner import StoreRunner
from damselfly.daemon.servers.local_api import LocalApi
from damselfly.storage.store import Store


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m damselfly.testing.local_api_server")
    parser.add_argument("--socket", type=Path, default=None)
    parser.add_argument("--storage-dir", type=Path, default=None)
    parser.add_argument("--group", default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="dfdaemon: %(levelname)s: %(message)s",
    )
    try:
        asyncio.run(_serve(args))
    except DamselflyError as exc:
        sys.stderr.write(f"dfdaemon: error: {exc}\n")
        return exc.exit_code
    return 0


async def _serve(args: argparse.Namespace) -> None:
    path = args.socket or default_socket_path(os.environ)
    stop = _stop_on_signal()  # before "listening": a prompt SIGTERM still cleans up
    with Store(store_dir(args.storage_dir, os.environ)) as store:
        async with LocalApi(path, StoreRunner(store), group=args.group):
            sys.stdout.write(f"listening on {path}\n")
            sys.stdout.flush()
            await stop.wait()


def _stop_on_signal() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


if __name__ == "__main__":
    sys.exit(main())
