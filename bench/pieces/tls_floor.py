"""What moving bytes over TLS costs in Python, apart from damselfly: one sender, one receiver,
each in its own process, over loopback.

The sender writes ``--size`` bytes in 1 MiB writes; the receiver reads them with one of:

- ``asyncio``: an ``asyncio.Protocol`` (``data_received``: what aiohttp's client uses);
- ``asyncio-buffered``: an ``asyncio.BufferedProtocol`` (records decrypted into our buffer);
- ``uvloop``, ``uvloop-buffered``: the same on uvloop's event loop (a bench dependency);
- ``blocking``: ``ssl.SSLSocket.recv_into`` in a plain thread (OpenSSL reads the socket
  itself: no memory BIOs, no event loop).

Both ends speak the piece port's profile (TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256) with a
throw-away CA, or plain TCP with ``--plain``. Prints each end's CPU seconds per GiB::

    .venv/bin/python bench/pieces/tls_floor.py --size 1GiB --receivers asyncio,blocking
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

from damselfly.core.units import parse_size

CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"
WRITE = 1 << 20
RECEIVERS = ("asyncio", "asyncio-buffered", "uvloop", "uvloop-buffered", "blocking")


def context(pki: Path | None, *, server: bool) -> ssl.SSLContext | None:
    if pki is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    if server:
        ctx.load_cert_chain(pki / "server.pem")
    else:
        ctx.load_verify_locations(pki / "ca.pem")
    return ctx


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def send(pki: Path | None, size: int) -> None:
    """Accept one connection, send ``size`` bytes, print this process's CPU seconds."""
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    ctx = context(pki, server=True)
    stream = ctx.wrap_socket(conn, server_side=True) if ctx else conn
    block = os.urandom(WRITE)
    start = cpu_seconds()
    for _ in range(size // WRITE):
        stream.sendall(block)
    stream.close()
    print(f"{cpu_seconds() - start:.3f}", flush=True)


class _Counting(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[int]) -> None:
        self.done, self.received = done, 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.done.set_result(self.received)


class _CountingBuffered(asyncio.BufferedProtocol):
    def __init__(self, done: asyncio.Future[int]) -> None:
        self.done, self.received = done, 0
        self.buffer = bytearray(256 * 1024)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes

    def connection_lost(self, exc: Exception | None) -> None:
        self.done.set_result(self.received)


async def _receive_async(port: int, pki: Path | None, buffered: bool) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    kind = _CountingBuffered if buffered else _Counting
    ctx = context(pki, server=False)
    name = "127.0.0.1" if ctx else None
    await loop.create_connection(
        lambda: kind(done), "127.0.0.1", port, ssl=ctx, server_hostname=name
    )
    return await done


def _receive_blocking(port: int, pki: Path | None) -> int:
    ctx = context(pki, server=False)
    conn = socket.create_connection(("127.0.0.1", port))
    stream = ctx.wrap_socket(conn, server_hostname="127.0.0.1") if ctx else conn
    view = memoryview(bytearray(WRITE))
    received = 0
    while count := stream.recv_into(view):
        received += count
    return received


def receive(kind: str, port: int, pki: Path | None) -> None:
    """Read until the sender closes; print bytes and this process's CPU seconds."""
    start = cpu_seconds()
    if kind == "blocking":
        received = _receive_blocking(port, pki)
    else:
        if kind.startswith("uvloop"):  # a bench dependency (DAMSELFLY_BENCH_DEPS=1)
            uvloop = importlib.import_module("uvloop")
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        received = asyncio.run(_receive_async(port, pki, kind.endswith("buffered")))
    print(received, f"{cpu_seconds() - start:.3f}", flush=True)


def one_round(kind: str, size: int, pki: Path | None) -> tuple[float, float, float]:
    """(receiver CPU s, sender CPU s, wall s), per GiB."""
    tls = ["--pki", str(pki)] if pki else []
    me = [sys.executable, __file__, "--size", str(size), *tls]
    sender = subprocess.Popen([*me, "--role", "send"], stdout=subprocess.PIPE, text=True)
    assert sender.stdout is not None
    try:
        port = sender.stdout.readline().strip()
        began = time.monotonic()
        out = subprocess.run(
            [*me, "--role", kind, "--port", port], capture_output=True, text=True, check=True
        ).stdout.split()
        wall = time.monotonic() - began
        sent_cpu = float(sender.stdout.readline())
    finally:
        sender.kill()
        sender.wait()
    if int(out[0]) != size:
        raise SystemExit(f"{kind}: received {out[0]} bytes, sent {size}")
    per_gib = (1 << 30) / size
    return float(out[1]) * per_gib, sent_cpu * per_gib, wall * per_gib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=1 << 30)
    parser.add_argument("--receivers", default="asyncio,asyncio-buffered,blocking")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="plain TCP, no TLS")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size <= 0 or args.size % WRITE:
        parser.error("--size: a positive multiple of 1 MiB")
    if args.role == "send":
        send(args.pki, args.size)
        return 0
    if args.role:
        receive(args.role, args.port, args.pki)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        pki = None if args.plain else _throwaway_pki(Path(tmp))
        print("| receiver | receiver CPU s/GiB | sender CPU s/GiB | wall s/GiB |")
        print("| --- | ---: | ---: | ---: |")
        for _ in range(args.rounds):
            for kind in args.receivers.split(","):
                received, sent, wall = one_round(kind, args.size, pki)
                print(f"| {kind} | {received:.2f} | {sent:.2f} | {wall:.2f} |", flush=True)
    return 0


def _throwaway_pki(directory: Path) -> Path:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    cert = ca.issue_cert("127.0.0.1", key_type=trustme.KeyType.ECDSA)
    cert.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return directory


if __name__ == "__main__":
    sys.exit(main())
