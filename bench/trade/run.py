"""Peers that start together behind one slow seed: how much they trade among themselves.

The seed's uplink is capped (``--seed-rate``, default 32 MiB/s), so it cannot carry every copy
alone; each round starts a fresh ``LocalCluster`` (scheduler, seed, ``--peers`` daemons on
loopback, the project's test origin) and runs ``dfget`` of one ``--size`` file of random bytes
on every peer at once. Per round: the bytes the peers uploaded to each other (their
``damselfly_daemon_upload_bytes_total``; the seed's uploads are not counted) and the wall time
from the dfgets' start to the last one's end. Every dfget must succeed and the origin must be
read once (1.02x at most), or the benchmark fails.

``--python`` (repeatable) compares code trees in one run: each round runs one round under every
given interpreter in turn (each a virtualenv with its own checkout installed), rotating the
order, so noise falls on all of them alike. Without it, this interpreter only.

    .venv/bin/python bench/trade/run.py --rounds 15 --piece-length 4MiB \
        --python ../old/.venv/bin/python --python .venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024
UPLOAD = "damselfly_daemon_upload_bytes_total"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--piece-length", default="4MiB")
    parser.add_argument("--seed-rate", default="32MiB")
    parser.add_argument("--python", action="append", default=[], help="interpreter to compare")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(_round(args))))
        return 0
    pythons = args.python or [sys.executable]
    results: dict[str, list[dict[str, float]]] = {p: [] for p in pythons}
    for number in range(args.rounds):
        turn = pythons[number % len(pythons) :] + pythons[: number % len(pythons)]
        for python in turn:
            result = _run_one(python, args)
            results[python].append(result)
            print(f"round {number + 1} {python}: {result['traded_mib']:.0f} MiB traded, "
                  f"{result['wall_s']:.2f} s", flush=True)  # fmt: skip
    _report(results)
    return 0


def _run_one(python: str, args: argparse.Namespace) -> dict[str, float]:
    command = [python, __file__, "--one", "--peers", str(args.peers), "--size-mib",
               str(args.size_mib), "--piece-length", args.piece_length, "--seed-rate",
               args.seed_rate]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"trade bench: a round under {python} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _round(args: argparse.Namespace) -> dict[str, float]:
    from damselfly.testing.cluster import LocalCluster

    data = os.urandom(args.size_mib * MiB)
    seed_env = {"DAMSELFLY_DAEMON_UPLOAD__RATE_LIMIT": args.seed_rate}
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="damselfly-trade-") as tmp:
        root = Path(tmp)
        files = {"/model.bin": data}
        async with LocalCluster(
            root / "cluster", peers=args.peers, origin_files=files, seed_env=seed_env
        ) as cluster:
            url = cluster.origin.url("/model.bin")
            extra = ("--piece-length", args.piece_length)
            outputs = [root / f"out-{i}.bin" for i in range(args.peers)]
            started = time.monotonic()
            runs = await asyncio.gather(
                *(cluster.dfget(i, url, out, *extra) for i, out in enumerate(outputs))
            )
            wall = time.monotonic() - started
            for run in runs:
                if run.code != 0:
                    raise SystemExit(f"dfget failed: {run.stderr}")
            if any(out.read_bytes() != data for out in outputs):
                raise SystemExit("a copy differs from the origin's bytes")
            if cluster.origin.bytes_served > 1.02 * len(data):
                raise SystemExit(f"origin read {cluster.origin.bytes_served} bytes")
            uploads = [await cluster.metric(node, UPLOAD) for node in cluster.peers]
    return {"traded_mib": sum(uploads) / MiB, "wall_s": wall}


def _report(results: dict[str, list[dict[str, float]]]) -> None:
    print("\n| python | rounds | traded MiB min / median / max | wall s median / max |")
    print("| --- | --- | --- | --- |")
    for python, rounds in results.items():
        traded = [r["traded_mib"] for r in rounds]
        wall = [r["wall_s"] for r in rounds]
        spread = f"{min(traded):.0f} / {statistics.median(traded):.0f} / {max(traded):.0f}"
        times = f"{statistics.median(wall):.2f} / {max(wall):.2f}"
        print(f"| {python} | {len(rounds)} | {spread} | {times} |")


if __name__ == "__main__":
    sys.exit(main())
