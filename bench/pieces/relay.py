"""Relay micro-benchmark: a piece server serving a task *while its own store writes it*.

That is what a seed reading the origin, or any peer relaying, does: each piece is hashed and
written by the daemon (``TaskStorage.write_piece`` in a worker thread, ``--writers`` at once,
then ``UploadServer.piece_added``), and a child fetches it as soon as the watch stream says it
landed. The server runs in its own process (so each side gets a core); per round it writes a
fresh task of ``--size`` bytes (one random piece reused: the bytes do not matter, the work
does). Reported per round: wall time from the start of the writes to the child's last piece,
the server's CPU (writes + hashing + serving), the client's, and how many pieces the server
hashed again while sending them (``pieces_rechecked``). Asserts nothing.

    .venv/bin/python bench/pieces/relay.py --size 256MiB --piece-length 4MiB --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

from bench.common.workspace import process_cpu_seconds  # noqa: E402

from damselfly.core.pieces import piece_at, piece_count  # noqa: E402
from damselfly.core.units import format_size, parse_size  # noqa: E402
from damselfly.daemon.servers.upload_server import UploadServer  # noqa: E402
from damselfly.storage.store import Store  # noqa: E402
from damselfly.transport.piece_client import PieceClient  # noqa: E402

MiB = 1024 * 1024


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=256 * MiB)
    parser.add_argument("--piece-length", type=parse_size, default=4 * MiB)
    parser.add_argument("--in-flight", type=int, default=8, help="the child's piece requests")
    parser.add_argument("--writers", type=int, default=2, help="the server's writes at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", metavar="STORE", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def task_id(round_index: int) -> str:
    return f"{round_index + 1:02x}" * 32


# -- the server process ---------------------------------------------------------------------


async def serve(root: Path, args: argparse.Namespace) -> None:
    """Print the port; then per ``go N`` line write task N; ``stats`` prints the counters."""
    data = os.urandom(args.piece_length)
    with Store(root) as store:
        async with UploadServer(store, host="127.0.0.1", port=0) as server:
            print(server.port, flush=True)
            while line := await asyncio.to_thread(sys.stdin.readline):
                if line.startswith("go "):
                    await write_task(store, server, task_id(int(line.split()[1])), data, args)
                stats = server.statistics()
                print(json.dumps({"rechecked": stats.pieces_rechecked}), flush=True)


async def write_task(
    store: Store, server: UploadServer, task: str, data: bytes, args: argparse.Namespace
) -> None:
    url, size, length = f"bench://relay/{task}", args.size, args.piece_length
    storage = store.open_task(task, url=url, content_length=size, piece_length=length)
    numbers = iter(range(storage.piece_count))

    async def writer() -> None:
        for number in numbers:
            piece = piece_at(number, size, length)
            await asyncio.to_thread(storage.write_piece, number, memoryview(data)[: piece.length])
            server.piece_added(task, number)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(args.writers):
                group.create_task(writer())
        storage.mark_succeeded()
    finally:
        storage.close()


# -- the client -----------------------------------------------------------------------------


class ServerProcess:
    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        argv = [sys.executable, __file__, "--serve", str(root)]
        argv += ["--size", str(args.size), "--piece-length", str(args.piece_length)]
        argv += ["--writers", str(args.writers)]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self.line())

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the relay server process exited")
        return line.decode()

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


async def one_round(
    client: PieceClient, server: ServerProcess, index: int, args: argparse.Namespace
) -> dict[str, float]:
    parent, task = f"http://127.0.0.1:{server.port}", task_id(index)
    server.send("stats")
    rechecked = json.loads(await asyncio.to_thread(server.line))["rechecked"]
    server_cpu, client_cpu, started = server.cpu_seconds(), own_cpu(), time.perf_counter()
    server.send(f"go {index}")
    await fetch_as_they_land(client, parent, task, args)
    seconds = time.perf_counter() - started
    await asyncio.to_thread(server.line)  # the answer to "go": every piece written
    server.send("stats")
    after = json.loads(await asyncio.to_thread(server.line))["rechecked"]
    return {
        "seconds": seconds,
        "server_cpu": server.cpu_seconds() - server_cpu,
        "client_cpu": own_cpu() - client_cpu,
        "rechecked": after - rechecked,
    }


async def fetch_as_they_land(
    client: PieceClient, parent: str, task: str, args: argparse.Namespace
) -> None:
    count = piece_count(args.size, args.piece_length)
    slots = asyncio.Semaphore(args.in_flight)

    async def fetch(number: int) -> None:
        async with slots:
            length = piece_at(number, args.size, args.piece_length).length
            await client.fetch_piece(parent, task, number, length)

    async with asyncio.TaskGroup() as group:
        seen: set[int] = set()
        while len(seen) < count:
            with contextlib.suppress(Exception):  # 404 until the server opened the task
                stream = client.watch(parent, task, piece_count=count)
                async with contextlib.aclosing(stream) as numbers:
                    async for number in numbers:
                        if number not in seen:
                            seen.add(number)
                            await slots.acquire()  # no more requests queued than in flight
                            slots.release()
                            group.create_task(fetch(number))
            await asyncio.sleep(0.005)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def client_rounds(server: ServerProcess, args: argparse.Namespace) -> list[dict[str, float]]:
    async with PieceClient(limit_per_host=args.in_flight + 1) as client:
        return [await one_round(client, server, index, args) for index in range(args.rounds)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        asyncio.run(serve(Path(args.serve), args))
        return 0
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm, prefix="damselfly-relay-") as root:
        server = ServerProcess(Path(root), args)
        try:
            rounds = asyncio.run(client_rounds(server, args))
        finally:
            server.stop()
    print(
        f"task {format_size(args.size)}, pieces {format_size(args.piece_length)}, "
        f"{args.writers} writers, {args.in_flight} in flight\n"
    )
    print("| round | MiB/s | time s | server CPU s | client CPU s | re-checked |")
    print("|---|---:|---:|---:|---:|---:|")
    for index, r in enumerate(rounds, 1):
        print(
            f"| {index} | {args.size / MiB / r['seconds']:,.0f} | {r['seconds']:.3f} | "
            f"{r['server_cpu']:.2f} | {r['client_cpu']:.2f} | {r['rechecked']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
