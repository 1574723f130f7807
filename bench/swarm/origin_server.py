"""The swarm's origin: the project's test origin plus a way to read its byte counter.

Runs inside the origin namespace::

    python bench/swarm/origin_server.py --root DIR --host 198.18.0.2 --port 8080

Prints ``serving DIR at http://HOST:PORT`` once it listens. It reads commands on stdin, one
per line, and answers each with one JSON line on stdout: ``stats`` -> ``{"bytes": N,
"requests": M, "first_send": T1, "last_send": T2}`` (body bytes handed to the socket and
requests seen since start, over all paths; T1 and T2 the wall-clock times, ``time.time()``, at
which the namespace's ``eth0`` was first and last seen sending more than ``SENDING_BYTES`` in
one ``SAMPLE_SECONDS`` since the previous ``stats``, or null). The link's counter, not the
server's: the server counts a ``sendfile`` only when it completes. End of stdin (the
benchmark went away) stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path

from damselfly.testing.origin import OriginServer

SAMPLE_SECONDS = 0.02
SENDING_BYTES = 16 * 1024  # more than acknowledgements and headers in one sample
TX_BYTES = Path("/sys/class/net/eth0/statistics/tx_bytes")


class SendWindow:
    """When the origin's link was sending: first and last sample since the last ``take``."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None

    async def follow(self) -> None:
        seen = _tx_bytes()
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            sent, seen = _tx_bytes() - seen, _tx_bytes()
            if sent > SENDING_BYTES:
                now = time.time()
                self.first = now if self.first is None else self.first
                self.last = now

    def take(self) -> tuple[float | None, float | None]:
        window = (self.first, self.last)
        self.first = self.last = None
        return window


async def serve(root: Path, host: str, port: int) -> None:
    async with OriginServer(root=root, host=host, port=port) as origin:
        print(f"serving {root} at {origin.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        window = SendWindow()
        follower = asyncio.create_task(window.follow())
        args = (origin, window, loop, stop)
        threading.Thread(target=_answer, args=args, daemon=True).start()
        await stop.wait()
        follower.cancel()


def _answer(
    origin: OriginServer, window: SendWindow, loop: asyncio.AbstractEventLoop, stop: asyncio.Event
) -> None:
    """Answer ``stats`` lines until stdin closes, then stop the server."""
    for line in sys.stdin:
        if line.strip() == "stats":
            stats = asyncio.run_coroutine_threadsafe(_stats(origin, window), loop).result()
            print(json.dumps(stats), flush=True)
    loop.call_soon_threadsafe(stop.set)


async def _stats(origin: OriginServer, window: SendWindow) -> dict[str, float | None]:
    """Read on the event loop's thread, where the counters change."""
    first, last = window.take()
    return {
        "bytes": origin.bytes_served,
        "requests": len(origin.requests),
        "first_send": first,
        "last_send": last,
    }


def _tx_bytes() -> int:
    try:
        return int(TX_BYTES.read_text())
    except (OSError, ValueError):
        return 0  # no eth0 (run outside a namespace): no window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.root, args.host, args.port))


if __name__ == "__main__":
    main()
