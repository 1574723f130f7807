"""20,000 idle connections to a piece port, then one real piece fetch (issue 11, item 4).

The run is ``damselfly.testing.piece_port_flood`` (the suite's ``tests/e2e/test_floods.py``
runs the same at the same size and asserts on it); this prints what it saw. Exit 1 when
the fetch took 1 s or more, got wrong bytes, or the server logged 100 lines or more.

    .venv/bin/python bench/security/piece_port_flood.py --connections 20000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from damselfly.testing.piece_port_flood import run_piece_port_flood


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flood-") as root:
        outcome = asyncio.run(
            run_piece_port_flood(Path(root), connections=args.connections,
                                 processes=args.processes)
        )  # fmt: skip
    print(f"idle connections opened: {outcome.connections} from 127.0.0.2 "
          f"({args.processes} processes)")  # fmt: skip
    print(f"piece fetch from 127.0.0.1: {outcome.fetch_seconds * 1000:.0f} ms (4 MiB), "
          f"right bytes: {outcome.fetched_right_bytes}")  # fmt: skip
    print(f"server counters: {outcome.counters}")
    print(f"server log lines: {outcome.log_lines}")
    held = outcome.fetch_seconds < 1.0 and outcome.fetched_right_bytes
    return 0 if held and outcome.log_lines < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
