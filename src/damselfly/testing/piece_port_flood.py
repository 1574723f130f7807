"""20,000 idle connections to a piece port, then one real piece fetch (issue 11, item 4);
``bench/security/piece_port_flood.py`` and ``tests/e2e/test_floods.py`` run it.

``run_piece_port_flood(root, connections=20_000)``: a piece server with the daemon's default
limits (``DaemonSettings().upload``) runs in a child process over a store holding one task,
logging at INFO to ``root/server.log``; ``processes`` flood processes
(``python -m damselfly.testing.flood``) open ``connections`` idle connections from
127.0.0.2 between them and hold them; then a peer on 127.0.0.1 fetches a 4 MiB piece.
Returns how long the fetch took, whether it got the right bytes, the server's guard
counters and how many lines the server logged.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from damselfly.demo.processes import stop_process
from damselfly.transport.piece_client import PieceClient

TASK_ID = "fa" * 32
PIECE = 4 * 1024 * 1024
LINE_TIMEOUT = 60.0  # seconds: a child says it is ready (or counts) within this
SETTLE_SECONDS = 2.0  # after the flood is open: the server accepts (and refuses) what it will
SERVER = """
import asyncio, json, logging, sys
from pathlib import Path
from damselfly.config.daemon import DaemonSettings
from damselfly.daemon.app import upload_limits
from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.storage.store import Store
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
async def main():
    with Store(Path(sys.argv[1])) as store:
        task = store.open_task(sys.argv[2], url="https://x/f", content_length=2 * {piece},
                               piece_length={piece})
        task.write_piece(0, b"a" * {piece}); task.write_piece(1, b"b" * {piece}); task.close()
        limits = upload_limits(DaemonSettings())
        async with UploadServer(store, host="127.0.0.1", port=0, limits=limits) as server:
            print(server.port, flush=True)
            while True:
                await asyncio.sleep(0.5)
                print(json.dumps(server.statistics().guard.__dict__), flush=True)
asyncio.run(main())
""".replace("{piece}", str(PIECE))


@dataclass
class PiecePortFlood:
    connections: int
    fetch_seconds: float = 0.0
    fetched_right_bytes: bool = False
    counters: dict[str, int] = field(default_factory=dict)  # the server's guard statistics
    log_lines: int = 0


async def run_piece_port_flood(
    root: Path, *, connections: int = 20_000, processes: int = 4
) -> PiecePortFlood:
    """``processes``: one process cannot hold 20,000 sockets under a 20,000-file limit."""
    outcome = PiecePortFlood(connections)
    log_path = root / "server.log"
    server = await _start_server(root, log_path)
    floods: list[asyncio.subprocess.Process] = []
    try:
        port = int(await _line(server))
        for _ in range(processes):
            floods.append(await _start_flood(port, connections // processes))
        for flood in floods:
            await _line(flood)  # "flood open: N"
        await asyncio.sleep(SETTLE_SECONDS)
        started = time.monotonic()
        async with PieceClient() as client:
            chunks = await client.fetch_piece(f"http://127.0.0.1:{port}", TASK_ID, 1, PIECE)
        outcome.fetch_seconds = time.monotonic() - started
        outcome.fetched_right_bytes = b"".join(chunks) == b"b" * PIECE
        outcome.counters = dict(json.loads(await _line(server)))
    finally:
        for process in [*floods, server]:
            await stop_process(process, signal.SIGKILL, 0.0)
    outcome.log_lines = len(log_path.read_bytes().splitlines())
    return outcome


async def _start_server(root: Path, log_path: Path) -> asyncio.subprocess.Process:
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVER, str(root / "store"), TASK_ID,
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip


async def _start_flood(port: int, count: int) -> asyncio.subprocess.Process:
    argv = ["-m", "damselfly.testing.flood", "127.0.0.1", str(port), str(count)]
    return await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(LINE_TIMEOUT):
        line = (await process.stdout.readline()).decode().strip()
    if not line:
        raise RuntimeError(f"process {process.pid} ended (exit {process.returncode})")
    return line
