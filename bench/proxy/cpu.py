"""Where the CPU goes: proxy cold vs ``dfget hf:// -r``, per process, in one cluster.

Same hub and cluster as ``run.py``; each round runs ``proxy-cold`` (``snapshot_download`` on
node 0 through its proxy) and ``dfget`` (``dfget hf:// -r`` through node 1's daemon), each on
a repo of its own, in alternating order, and reads the CPU seconds (user + sys) each process
spent: the hub (this process), the scheduler, the seed, node 0, node 1 and the client
processes. ``--py-spy PATH`` also records node 0's (proxy) and node 1's (dfget) stacks during
the last round (py-spy's raw format, one file per system, under ``bench/results``); that
round's times and client CPU (py-spy counts as a client) are not comparable with the others.

    .venv/bin/python bench/proxy/cpu.py --shards 2 --shard-size 128MiB --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import ssl
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

import trustme  # noqa: E402

from bench.common.arguments import size_type  # noqa: E402
from bench.hub.repo import build_repo  # noqa: E402
from bench.proxy.run import _cluster_env, _dfget, _hub_repo, _proxy_env, _snapshot  # noqa: E402
from damselfly.testing.cluster import LocalCluster  # noqa: E402
from damselfly.testing.proxy import TlsHfTestHub  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--shard-size", type=size_type("--shard-size"), default=128 * 2**20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--py-spy", type=Path, default=None, help="py-spy binary")
    return parser.parse_args(argv)


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _cpu(cluster) -> dict[str, float]:
    nodes = {"scheduler": cluster.schedulers[0], "seed": cluster.seeds[0]}
    nodes.update({f"node{i}": node for i, node in enumerate(cluster.peers)})
    cpu = {name: _process_cpu(node.process.pid) for name, node in nodes.items()}
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # clients that exited
    cpu["hub"] = own.ru_utime + own.ru_stime
    cpu["clients"] = children.ru_utime + children.ru_stime
    return cpu


async def _spied(spy: Path | None, pid: int, out: Path, run):
    if spy is None:
        return await run
    argv = [str(spy), "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
    recorder = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)  # fmt: skip
    await asyncio.sleep(1)  # py-spy attaches
    try:
        return await run
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes its file
        await recorder.wait()


async def main(args: argparse.Namespace) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-proxy-cpu-") as tmp:
        root = Path(tmp)
        repos = {
            f"{name}-{r}": build_repo(root / "repos" / f"{name}-{r}", f"bench/{name}-{r}",
                                      shards=args.shards, shard_size=args.shard_size)
            for name in ("proxy", "dfget") for r in range(args.rounds)
        }  # fmt: skip
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        bundle = root / "hub-ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        async with TlsHfTestHub([_hub_repo(r) for r in repos.values()], ssl_context=context) as hub:
            env = _cluster_env(hub, bundle)
            async with LocalCluster(root / "mesh", peers=2, seeds=1, env=env) as cluster:
                return await _rounds(args, root, hub, cluster, repos)


async def _rounds(args, root: Path, hub, cluster, repos) -> list[dict[str, object]]:
    first, second = cluster.peers
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    rows: list[dict[str, object]] = []

    def spy(r: int) -> Path | None:
        return args.py_spy if r == args.rounds - 1 else None

    async def proxy(r: int) -> float:
        out = RESULTS_DIR / f"proxy-cpu-{stamp}-proxy.txt"
        run = _snapshot(root, f"proxy-{r}", repos[f"proxy-{r}"], _proxy_env(hub, first))
        return await _spied(spy(r), first.process.pid, out, run)

    async def dfget(r: int) -> float:
        out = RESULTS_DIR / f"proxy-cpu-{stamp}-dfget.txt"
        run = _dfget(root, cluster, second, repos[f"dfget-{r}"], f"dfget-{r}")
        return await _spied(spy(r), second.process.pid, out, run)

    for r in range(args.rounds):
        for name, system in (("proxy", proxy), ("dfget", dfget))[:: 1 if r % 2 else -1]:
            before, started = _cpu(cluster), time.monotonic()
            seconds = await system(r)
            wall = time.monotonic() - started
            after = _cpu(cluster)
            cpu = {k: round(after[k] - before[k], 2) for k in after}
            rows.append({"round": r, "system": name, "seconds": round(seconds, 2),
                         "wall": round(wall, 2), "cpu": cpu})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(parse_args()))
