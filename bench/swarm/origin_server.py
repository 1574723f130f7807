"""The swarm's origin: the project's test origin plus a way to read its byte counter.

Runs inside the origin namespace::

    python bench/swarm/origin_server.py --root DIR --host 198.18.0.2 --port 8080

Prints ``serving DIR at http://HOST:PORT`` once it listens. It reads commands on stdin, one
per line, and answers each with one JSON line on stdout: ``stats`` -> ``{"bytes": N,
"requests": M}`` (body bytes handed to the socket and requests seen since start, over all
paths). End of stdin (the benchmark went away) stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from pathlib import Path

from damselfly.testing.origin import OriginServer


async def serve(root: Path, host: str, port: int) -> None:
    async with OriginServer(root=root, host=host, port=port) as origin:
        print(f"serving {root} at {origin.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        threading.Thread(target=_answer, args=(origin, loop, stop), daemon=True).start()
        await stop.wait()


def _answer(origin: OriginServer, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Answer ``stats`` lines until stdin closes, then stop the server."""
    for line in sys.stdin:
        if line.strip() == "stats":
            stats = asyncio.run_coroutine_threadsafe(_stats(origin), loop).result()
            print(json.dumps(stats), flush=True)
    loop.call_soon_threadsafe(stop.set)


async def _stats(origin: OriginServer) -> dict[str, int]:
    """Read on the event loop's thread, where the counters change."""
    return {"bytes": origin.bytes_served, "requests": len(origin.requests)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.root, args.host, args.port))


if __name__ == "__main__":
    main()
