"""Small files through a running dfdaemon: ``config.json``-sized downloads, cold and cached.

A model repo is mostly small files (configs, tokenizers, READMEs) next to a few big ones, and
each is one dfget through the node's daemon: for them latency is everything. Steps: write
``2 * --files`` random files of ``--size`` bytes on /dev/shm; serve them with the project's
test origin; start a scheduler and one dfdaemon on loopback (untimed, as in
``bench/single/daemon.py``); then, per topology:

- ``lone``: the daemon alone (the scheduler sends it to the origin: it is the origin reader);
- ``seed``: a ``dfdaemon --seed`` joins, so each cold task is a seed job and the daemon
  downloads it from the seed, as a node of a cluster with seeds does;
- ``hub``: the same files as ``hf://bench/small/<name>`` from the project's test hub
  (``damselfly.testing.hf_hub``, ``HF_ENDPOINT`` in dfget's environment), seed still there:
  dfget resolves the hub's options (token, revision, endpoint) before it hands off.

and in each, for every file: one *cold* download (a task no daemon holds), then, after all
cold ones, one *cached* download of each (a cache hit). Two clients, on separate halves of the
files, because the machine's Python start-up dwarfs the rest:

- ``process``: ``dfget URL -O out -e SOCKET`` as a subprocess, wall time (what a user waits);
- ``in-process``: ``damselfly.cli.dfget.main([...])`` called in this process, wall time (the
  same request, reply and delivery without interpreter start-up and imports).

Every output's bytes are checked (untimed); dfget's fallback store must stay empty (a download
that did not go through the daemon fails the benchmark). Prints a markdown table of median,
p95 and max per topology, client and phase; writes the raw times to
``bench/results/small-<timestamp>.json``.

    .venv/bin/python bench/small/run.py --files 20 --size 1KiB
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

from bench.common.arguments import positive_int, run_guarded, size_type  # noqa: E402
from bench.common.machine import load_average  # noqa: E402
from bench.common.rounds import child_env  # noqa: E402
from bench.common.workspace import (  # noqa: E402
    BenchError,
    Server,
    server_process,
    sha256_of,
    shm_directory,
    write_random,
)
from bench.hub.repo import ModelRepo  # noqa: E402
from bench.hub.workspace import Hub, hub_process  # noqa: E402
from bench.single.workspace import origin_process  # noqa: E402
from bench.swarm.metrics import wait_metrics  # noqa: E402

START_TIMEOUT = 60.0
ANNOUNCE_TIMEOUT = 30.0
BIN = Path(sys.executable).parent
_SCHEDULER = re.compile(r"scheduler listening: grpc=(?P<grpc>\S+) metrics=(?P<metrics>\S+)")
_DAEMON = re.compile(r"dfdaemon ready: .* socket=(?P<socket>\S+) metrics=http://(?P<metrics>\S+)")
CLIENTS = ("process", "in-process")
HUB_REPO = "bench/small"
PHASES = ("cold", "cached")


@dataclass(frozen=True)
class Row:
    topology: str
    client: str
    phase: str
    millis: list[float]

    def cells(self) -> list[str]:
        ordered = sorted(self.millis)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        values = (statistics.median(ordered), p95, ordered[-1])
        return [self.topology, self.client, self.phase, str(len(ordered))] + [
            f"{v:.0f}" for v in values
        ]


class Node:
    """The scheduler, the daemon under test and (later) a seed, all on loopback."""

    def __init__(self, root: Path, stack: contextlib.ExitStack) -> None:
        self.root, self._stack = root, stack
        scheduler = self._start(
            "scheduler",
            [str(BIN / "damselfly"), "scheduler", "--listen", "127.0.0.1:0"],
            _SCHEDULER,
        )
        self._grpc, self._metrics = (
            scheduler.banner.group("grpc"),
            scheduler.banner.group("metrics"),
        )
        self.socket = Path(self._daemon("daemon").banner.group("socket"))
        self._wait_hosts(1, "the scheduler knows the daemon")

    def add_seed(self) -> None:
        self._daemon("seed", "--seed")
        self._wait_hosts(2, "the scheduler knows the seed")
        wait_metrics(
            self._metrics,
            lambda v: v.get("damselfly_scheduler_seeds", 0) >= 1,
            ANNOUNCE_TIMEOUT,
            "the seed takes seed jobs",
        )

    def _daemon(self, name: str, *extra: str) -> Server:
        argv = [str(BIN / "dfdaemon"), *extra, "--scheduler", self._grpc]
        argv += ["--storage-dir", str(self.root / f"{name}-store")]
        argv += ["--socket", str(self.root / f"{name}.sock")]
        argv += ["--upload-listen", "127.0.0.1:0", "--advertise-ip", "127.0.0.1"]
        argv += ["--proxy-listen", "127.0.0.1:0"]  # two daemons: never the default port twice
        return self._start(name, argv, _DAEMON)

    def _start(self, name: str, argv: list[str], banner: re.Pattern[str]) -> Server:
        argv += ["--metrics-listen", "127.0.0.1:0", "--log-level", "warn"]
        log = self.root / f"{name}.log"
        return self._stack.enter_context(
            server_process(argv, log_path=log, banner=banner, start_timeout=START_TIMEOUT)
        )

    def _wait_hosts(self, count: int, what: str) -> None:
        def known(values: dict[str, float]) -> bool:
            return values.get("damselfly_scheduler_hosts", 0) >= count

        wait_metrics(self._metrics, known, ANNOUNCE_TIMEOUT, what)


class Downloads:
    """One dfget per call, through the node's daemon; checks the bytes afterwards. ``base`` is
    the URL the file names go under (``http://origin`` or ``hf://owner/repo``); ``env`` is
    added to dfget's environment (the hub's endpoint)."""

    def __init__(self, node: Node, base: str, sources: dict[str, str]) -> None:
        self._node, self._base, self._sources = node, base, sources
        self._fallback = node.root / "dfget-fallback-store"
        self._outputs = node.root / "outputs"
        self._outputs.mkdir(exist_ok=True)
        self._count = 0
        self.env: dict[str, str] = {}

    def serve_from(self, base: str, env: dict[str, str]) -> None:
        self._base, self.env = base, env

    def argv(self, name: str, output: Path) -> list[str]:
        argv = [f"{self._base}/{name}", "-O", str(output), "-e", str(self._node.socket)]
        return [*argv, "--no-progress", "--storage-dir", str(self._fallback)]

    def timed(self, client: str, name: str) -> float:
        self._count += 1
        output = self._outputs / f"{self._count}-{name}"
        argv = self.argv(name, output)
        started = time.perf_counter()
        if client == "process":
            done = subprocess.run(
                [str(BIN / "dfget"), *argv],
                capture_output=True,
                text=True,
                env=child_env() | self.env,
            )
            code, why = done.returncode, done.stderr.strip()
        else:
            code, why = _dfget_main(argv, self.env), "see above"
        millis = 1000 * (time.perf_counter() - started)
        if code != 0:
            raise BenchError(f"dfget {name} ({client}) exited {code}: {why}")
        self._check(name, output)
        return millis

    def add_sources(self, sources: dict[str, str]) -> None:
        self._sources |= sources

    def _check(self, name: str, output: Path) -> None:
        if sha256_of(output) != self._sources[name]:
            raise BenchError(f"{output}: not the origin's bytes")
        output.unlink()
        if self._fallback.exists() and any((self._fallback / "content").glob("*/*")):
            raise BenchError("dfget downloaded without the daemon (its own store has content)")


def _dfget_main(argv: list[str], env: dict[str, str]) -> int:
    from damselfly.cli.dfget import main  # imported once, by the first in-process call

    return main(argv, child_env() | env)


def run_topology(downloads: Downloads, topology: str, names: list[str]) -> list[Row]:
    half = len(names) // 2
    split = {"process": names[:half], "in-process": names[half:]}
    rows = []
    for phase in PHASES:
        for client in CLIENTS:
            millis = [downloads.timed(client, name) for name in split[client]]
            rows.append(Row(topology, client, phase, millis))
            print(f"{topology} {client} {phase}: {' '.join(f'{m:.0f}' for m in millis)}")
    return rows


def run(args: argparse.Namespace) -> list[Row]:
    with shm_directory(keep=args.keep) as root, contextlib.ExitStack() as stack:
        sources, hub_sources = {}, {}
        for i in range(4 * args.files + 1):  # the last one warms the in-process client up
            sources[f"config-{i}.json"] = write_random(
                root / "origin" / f"config-{i}.json", args.size
            )
        for i in range(2 * args.files + 1):
            name = f"hub-config-{i}.json"
            hub_sources[name] = write_random(root / "hub-repo" / name, args.size)
        origin = stack.enter_context(origin_process(root / "origin", root / "origin.log"))
        node = Node(root, stack)
        downloads = Downloads(node, origin.base_url, sources)
        names = list(sources)
        if args.warm_up:  # the in-process client's imports, outside the timed runs
            downloads.timed("in-process", names[-1])
        lone, seeded = names[: 2 * args.files], names[2 * args.files : 4 * args.files]
        rows = run_topology(downloads, "lone", lone)
        node.add_seed()
        rows += run_topology(downloads, "seed", seeded)
        hub = stack.enter_context(_hub(root, args.size))
        downloads.serve_from(f"hf://{HUB_REPO}", _hub_env(hub.endpoint, root / "hf-home"))
        downloads.add_sources(hub_sources)
        hub_names = list(hub_sources)
        if args.warm_up:  # the in-process client's hf:// imports, outside the timed runs too
            downloads.timed("in-process", hub_names[-1])
        return rows + run_topology(downloads, "hub", hub_names[: 2 * args.files])


def _hub(root: Path, size: int) -> contextlib.AbstractContextManager[Hub]:
    """The project's test hub serving ``root/hub-repo`` as ``HUB_REPO`` (small files: no LFS)."""
    repo = ModelRepo(HUB_REPO, root / "hub-repo", ())
    return hub_process(repo, root / "hub.log", shard_size=max(size, 1024 * 1024))


def _hub_env(endpoint: str, hf_home: Path) -> dict[str, str]:
    """dfget pointed at the test hub, with an empty ``HF_HOME`` (no token, no cache)."""
    return {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1"}


def print_table(rows: Sequence[Row]) -> None:
    print("| topology | client | phase | n | median ms | p95 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


def write_results(rows: Sequence[Row], args: argparse.Namespace) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = REPO / "bench" / "results" / f"small-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": stamp,
        "files": args.files,
        "size": args.size,
        "load_average": load_average(),
        "rows": [row.__dict__ for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=positive_int, default=20, help="files per client")
    parser.add_argument("--size", type=size_type("--size"), default=1024, help="bytes per file")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        rows = run(args)
        print_table(rows)
        print(f"raw times: {write_results(rows, args)}")
        return 0

    return run_guarded("bench-small", work, on_interrupt="stopped")


if __name__ == "__main__":
    sys.exit(main())
