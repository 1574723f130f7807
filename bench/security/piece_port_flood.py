"""20,000 idle connections to a piece port, then one real piece fetch (issue 11, item 4).

A piece server with the daemon's default limits (``DaemonSettings().upload``) runs in a child
process over a store holding one task; ``--processes`` flood processes
(``python -m damselfly.testing.flood``) open ``--connections`` idle connections from
127.0.0.2 between them and hold them; then this process fetches a piece from 127.0.0.1 and
prints how long it took, what the server counted, and how many lines the server logged.

    .venv/bin/python bench/security/piece_port_flood.py --connections 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from damselfly.transport.piece_client import PieceClient

TASK_ID = "fa" * 32
PIECE = 4 * 1024 * 1024
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flood-") as root:
        return asyncio.run(run(Path(root), args.connections, args.processes))


async def run(root: Path, connections: int, processes: int) -> int:
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(root / "store"), TASK_ID],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
    assert server.stdout is not None
    first = server.stdout.readline()
    if not first.strip():
        sys.stderr.write(log_path.read_text(errors="replace"))
        return 1
    port = int(first)
    floods = [_flood(port, connections // processes) for _ in range(processes)]
    try:
        for flood in floods:
            assert flood.stdout is not None
            flood.stdout.readline()  # "flood open: N"
        await asyncio.sleep(2.0)  # let the server accept (and refuse) what it will
        started = time.monotonic()
        async with PieceClient() as client:
            chunks = await client.fetch_piece(f"http://127.0.0.1:{port}", TASK_ID, 1, PIECE)
        seconds = time.monotonic() - started
        assert b"".join(chunks) == b"b" * PIECE
        counters = _last_counters(server)
    finally:
        for flood in floods:
            flood.kill()
            flood.wait()
        server.kill()
        server.wait()
    lines = len(log_path.read_text(errors="replace").splitlines())
    print(f"idle connections opened: {connections} from 127.0.0.2 ({processes} processes)")
    print(f"piece fetch from 127.0.0.1: {seconds * 1000:.0f} ms (4 MiB)")
    print(f"server counters: {counters}")
    print(f"server log lines: {lines}")
    return 0 if seconds < 1.0 and lines < 100 else 1


def _flood(port: int, count: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "damselfly.testing.flood", "127.0.0.1", str(port), str(count)]
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def _last_counters(server: subprocess.Popen[str]) -> dict[str, int]:
    assert server.stdout is not None
    line = server.stdout.readline()
    return dict(json.loads(line))


if __name__ == "__main__":
    sys.exit(main())
