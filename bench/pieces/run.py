"""Piece transfer micro-benchmark: one UploadServer, one PieceClient, loopback.

A task of random bytes is written into a store on /dev/shm; an ``UploadServer`` serves it from
a separate process (so server and client each get a core); the client fetches every piece,
``--in-flight`` at a time, round after round. Round 1 is *cold* (the server re-checks each
piece while sending it); later rounds are *warm* (``sendfile``, no hashing). With ``--verify``
the client also hashes every piece with BLAKE3 in a worker thread, as the download engine
does. With ``--tls`` both ends speak mTLS (TLS 1.3, certificates of a throw-away cluster CA,
a seed's on the server, a peer's on the client): warm rounds then go out with ``pread`` and
asyncio's SSL transport instead of ``sendfile``. The piece port speaks TLS 1.2 with
ECDHE-ECDSA-AES128-GCM (``security/tls.py``); ``--tls13`` makes both ends speak TLS 1.3 with
OpenSSL's choice (AES-256-GCM), as every other TLS link does, to compare the two ciphers.
``--dir`` puts the store elsewhere than /dev/shm (tmpfs cannot answer ``RWF_NOWAIT``, so
there every TLS chunk is read in a worker thread); ``--thread-reads`` reads every TLS chunk in a
worker thread wherever the store is (the send path before ``read_cached``). Prints a markdown
table; asserts nothing.

    .venv/bin/python bench/pieces/run.py --size 256MiB --piece-length 4MiB --in-flight 8
    .venv/bin/python bench/pieces/run.py --tls
    .venv/bin/python bench/pieces/run.py --tls --tls13
    .venv/bin/python bench/pieces/run.py --tls --dir /var/tmp [--thread-reads]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3

from damselfly.config.security import TlsSettings
from damselfly.core.pieces import piece_count
from damselfly.core.units import format_size, parse_size
from damselfly.daemon.servers import upload_server
from damselfly.daemon.servers.upload_server import UploadServer
from damselfly.security.node_tls import NodeTls
from damselfly.security.roles import Role
from damselfly.security.tls import client_context, reloading_server_context
from damselfly.storage.store import Store
from damselfly.testing.pki import TestPki
from damselfly.transport.piece_client import PieceClient

TASK_ID = "be" * 32
MiB = 1024 * 1024


@dataclass(frozen=True)
class Round:
    name: str
    seconds: float
    client_cpu: float
    server_cpu: float
    rechecked: int
    client_rss_mib: float
    server_rss_mib: float


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        if args.thread_reads:
            upload_server.read_cached = lambda *_: None  # type: ignore[assignment]
        asyncio.run(serve(Path(args.serve), args.tls_dir, tls13=args.tls13))
        return 0
    directory = str(args.dir) if args.dir else shm_or_tmp()
    with tempfile.TemporaryDirectory(dir=directory, prefix="damselfly-pieces-") as root:
        make_task(Path(root), args.size, args.piece_length)
        rounds = run_rounds(Path(root), args)
    print_table(rounds, args)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=256 * MiB)
    parser.add_argument("--piece-length", type=parse_size, default=4 * MiB)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--verify", action="store_true", help="client hashes every piece")
    parser.add_argument("--tls", action="store_true", help="mTLS between client and server")
    parser.add_argument("--tls13", action="store_true", help="with --tls: TLS 1.3 (AES-256-GCM)")
    parser.add_argument("--dir", type=Path, help="where the store goes (default /dev/shm)")
    parser.add_argument("--thread-reads", action="store_true", help="no read on the loop")
    parser.add_argument("--serve", metavar="STORE", help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def shm_or_tmp() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def make_task(root: Path, size: int, piece_length: int) -> None:
    with (
        Store(root / "store") as store,
        store.open_task(
            TASK_ID, url="bench://pieces", content_length=size, piece_length=piece_length
        ) as task,
    ):
        for number in range(task.piece_count):
            length = min(piece_length, size - number * piece_length)
            task.write_piece(number, os.urandom(length))


# -- the server process ---------------------------------------------------------------------------


def node_tls(directory: Path) -> NodeTls:
    return NodeTls.from_settings(TlsSettings(enabled=True, dir=directory), expect=set(Role))


def server_context(tls_dir: Path, *, tls13: bool) -> ssl.SSLContext:
    node = node_tls(tls_dir)
    return reloading_server_context(node.source) if tls13 else node.server_context()


def client_tls(tls_dir: Path, *, tls13: bool) -> Callable[[], ssl.SSLContext]:
    node = node_tls(tls_dir)
    if not tls13:
        return node.client_context
    context = client_context(node.source.files, check_hostname=False)
    return lambda: context


async def serve(root: Path, tls_dir: Path | None, *, tls13: bool) -> None:
    """Print the port, then answer ``stats`` lines on stdin until it closes."""
    context = None if tls_dir is None else server_context(tls_dir, tls13=tls13)
    tls = None if context is None else (lambda: context)
    with Store(root) as store:
        async with UploadServer(store, host="127.0.0.1", port=0, tls=tls) as server:
            print(server.port, flush=True)
            while await asyncio.to_thread(sys.stdin.readline):
                stats = server.statistics()
                print(json.dumps({"rechecked": stats.pieces_rechecked}), flush=True)


class ServerProcess:
    def __init__(self, root: Path, tls_dir: Path | None, args: argparse.Namespace) -> None:
        argv = [sys.executable, __file__, "--serve", str(root / "store")]
        argv += [] if tls_dir is None else ["--tls-dir", str(tls_dir)]
        argv += ["--tls13"] if args.tls13 else []
        argv += ["--thread-reads"] if args.thread_reads else []
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the upload server process exited")
        return line.decode()

    def rechecked(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(b"stats\n")
        self.process.stdin.flush()
        return int(json.loads(self._line())["rechecked"])

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


# -- the client -----------------------------------------------------------------------------------


def run_rounds(root: Path, args: argparse.Namespace) -> list[Round]:
    tls: Callable[[], ssl.SSLContext] | None = None
    server_dir: Path | None = None
    if args.tls:
        pki = TestPki(root / "pki")
        server_dir = pki.node("seed-a", Role.SEED).cert_file.parent
        tls = client_tls(pki.node("peer-b", Role.PEER).cert_file.parent, tls13=args.tls13)
    server = ServerProcess(root, server_dir, args)
    try:
        return asyncio.run(client_rounds(server, args, tls))
    finally:
        server.stop()


async def client_rounds(
    server: ServerProcess, args: argparse.Namespace, tls: Callable[[], ssl.SSLContext] | None
) -> list[Round]:
    rounds: list[Round] = []
    warm = "pread + TLS" if args.tls else "sendfile"
    async with PieceClient(limit_per_host=args.in_flight, tls=tls) as client:
        for index in range(args.rounds):
            name = "cold (re-check)" if index == 0 else f"warm {index} ({warm})"
            rounds.append(await one_round(client, server, args, name))
    return rounds


async def one_round(
    client: PieceClient, server: ServerProcess, args: argparse.Namespace, name: str
) -> Round:
    rechecked, server_cpu, client_cpu = server.rechecked(), server.cpu_seconds(), own_cpu()
    started = time.perf_counter()
    scheme = "https" if args.tls else "http"
    await fetch_all(client, f"{scheme}://127.0.0.1:{server.port}", args)
    seconds = time.perf_counter() - started
    return Round(
        name,
        seconds,
        own_cpu() - client_cpu,
        server.cpu_seconds() - server_cpu,
        server.rechecked() - rechecked,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        server.peak_rss_mib(),
    )


async def fetch_all(client: PieceClient, parent: str, args: argparse.Namespace) -> None:
    count = piece_count(args.size, args.piece_length)
    numbers = iter(range(count))

    async def worker() -> None:
        for number in numbers:
            length = min(args.piece_length, args.size - number * args.piece_length)
            chunks = await client.fetch_piece(parent, TASK_ID, number, length)
            if args.verify:
                await asyncio.to_thread(hash_chunks, chunks)

    async with asyncio.TaskGroup() as group:
        for _ in range(args.in_flight):
            group.create_task(worker())


def hash_chunks(chunks: list[memoryview]) -> str:
    hasher = blake3.blake3()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()


def tls_label(args: argparse.Namespace) -> str:
    if not args.tls:
        return "no"
    return "TLS 1.3 (AES-256-GCM)" if args.tls13 else "TLS 1.2 ECDHE-ECDSA-AES128-GCM"


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def print_table(rounds: Sequence[Round], args: argparse.Namespace) -> None:
    size_mib = args.size / MiB
    print(
        f"task {format_size(args.size)}, pieces {format_size(args.piece_length)}, "
        f"{args.in_flight} in flight, client verify: {'yes' if args.verify else 'no'}, "
        f"mTLS: {tls_label(args)}\n"
    )
    print(
        "| round | MiB/s | time s | client CPU s | server CPU s | re-checked "
        "| client peak RSS MiB | server peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rounds:
        print(
            f"| {r.name} | {size_mib / r.seconds:,.0f} | {r.seconds:.3f} | "
            f"{r.client_cpu:.2f} | {r.server_cpu:.2f} | {r.rechecked} | "
            f"{r.client_rss_mib:.0f} | {r.server_rss_mib:.0f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
