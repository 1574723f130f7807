"""The proxy's serving path alone: CPU per GiB to send a stored file to a client over TLS.

A loopback server does what the intercepting proxy does for a content GET (``CONNECT``, ``200``,
TLS with a certificate from a test CA, the request read and the response written by the
proxy's own ``HttpConnection``) and streams a file from disk; the client is httpx in a process
of its own, reading as ``huggingface_hub`` does (``iter_bytes``, 10 MiB chunks, into a file).
Two ways of sending, alternated in one run:

- ``piece``: what the proxy did before: each 4 MiB piece read in a worker thread and written
  to the TLS transport in one call;
- ``sliced``: what it does now: the same reads (``engine_fetcher.READ_LENGTH``), each written
  in ``wire.SEND_LENGTH`` slices.

Reports the median server CPU (user + sys of this process) and client CPU per GiB, and MiB/s.
CPU per byte is the figure that matters on a busy machine: there every CPU second the proxy
spends is taken from the download it serves.

    .venv/bin/python bench/proxy/serve.py --size 256MiB --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import ssl
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

import trustme  # noqa: E402

from bench.common.arguments import size_type  # noqa: E402
from damselfly.daemon.proxy import engine_fetcher, wire  # noqa: E402
from damselfly.daemon.proxy.wire import HttpConnection  # noqa: E402

PIECE_LENGTH = 4 * 2**20
WAYS = {  # name: (bytes per read, bytes per transport write)
    "piece": (PIECE_LENGTH, PIECE_LENGTH),
    "sliced": (engine_fetcher.READ_LENGTH, wire.SEND_LENGTH),
}
CLIENT = r"""
import resource, sys, time, httpx
url, ca, proxy, out = sys.argv[1:5]
started = time.monotonic()
with httpx.Client(verify=ca, proxy=proxy, trust_env=False) as client:
    with client.stream("GET", url) as response, open(out, "wb") as file:
        for chunk in response.iter_bytes(chunk_size=10 * 1024 * 1024):
            file.write(chunk)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.monotonic() - started, usage.ru_utime + usage.ru_stime)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=size_type("--size"), default=256 * 2**20)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args(argv)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Server:
    def __init__(self, path: Path, context: ssl.SSLContext) -> None:
        self.path, self.context, self.way = path, context, "piece"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = HttpConnection(reader, writer)
        try:
            await conn.read_request(30, 30)  # CONNECT
            await conn.send_head(200, [], reason="Connection Established")
            await writer.start_tls(self.context)
            inner = HttpConnection(reader, writer)
            await inner.read_request(30, 30)
            await inner.drain_body()
            await self._stream(inner)
        finally:
            await conn.aclose()

    async def _stream(self, conn: HttpConnection) -> None:
        read_length, send_length = WAYS[self.way]
        size = self.path.stat().st_size
        await conn.send_head(200, [("Content-Length", str(size))])
        wire.SEND_LENGTH = send_length
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for offset in range(0, size, read_length):
                data = await asyncio.to_thread(os.pread, fd, read_length, offset)
                await conn.send_data(data)
        finally:
            os.close(fd)
        await conn.send_end()


async def _fetch(url: str, ca: Path, proxy: str, out: Path) -> tuple[float, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, url, str(ca), proxy, str(out),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError("client failed")
    seconds, cpu = map(float, stdout.split())
    return seconds, cpu


async def main(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        source = root / "content.bin"
        source.write_bytes(os.urandom(args.size))
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        server = Server(source, context)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        proxy = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        url = "https://127.0.0.1/content.bin"
        runs: dict[str, list[tuple[float, float, float]]] = {way: [] for way in WAYS}
        try:
            for r in range(args.rounds + 1):  # the first round warms up: not counted
                for way in WAYS:
                    server.way = way
                    out = root / f"out-{way}-{r}"
                    before = _cpu()
                    seconds, client_cpu = await _fetch(url, root / "ca.pem", proxy, out)
                    server_cpu = _cpu() - before
                    if out.read_bytes() != source.read_bytes():
                        raise RuntimeError(f"{way}: the client got other bytes")
                    out.unlink()
                    if r:
                        runs[way].append((seconds, server_cpu, client_cpu))
        finally:
            wire.SEND_LENGTH = WAYS["sliced"][1]
            listener.close()
            await listener.wait_closed()
    gib = args.size / 2**30
    return {
        way: {
            "mib_per_s": args.size / 2**20 / statistics.median(r[0] for r in rs),
            "server_cpu_s_per_gib": statistics.median(r[1] for r in rs) / gib,
            "client_cpu_s_per_gib": statistics.median(r[2] for r in rs) / gib,
        }
        for way, rs in runs.items()
    }


if __name__ == "__main__":
    arguments = parse_args()
    result = asyncio.run(main(arguments))
    print(f"{arguments.size / 2**20:.0f} MiB per fetch, {arguments.rounds} rounds, medians")
    print("| way | MiB/s | server CPU s/GiB | client CPU s/GiB |\n|---|---:|---:|---:|")
    for name, figures in result.items():
        print(
            f"| {name} | {figures['mib_per_s']:.0f} | {figures['server_cpu_s_per_gib']:.2f} "
            f"| {figures['client_cpu_s_per_gib']:.2f} |"
        )
