"""``make bench-proxy``: huggingface_hub through dfdaemon's proxy vs direct vs dfget hf:// -r.

One run, one local TLS test hub (API + CDN with 302s, trustme CA, served from files written
here) and one loopback cluster (scheduler, seed, two daemons, each with its proxy): every
system downloads a model repo of its own (same shapes, different random bytes, so each cold
run is really cold) or, for the warm runs, the one its cold run fetched:

- ``direct``: ``snapshot_download`` straight from the hub (the baseline);
- ``proxy-cold`` / ``proxy-warm``: ``snapshot_download`` on node 0 with only ``HTTPS_PROXY``
  and the node's CA set; warm = a fresh client cache, the daemon's store holding the files;
- ``proxy-peer``: the same repo on node 1 through its own proxy (from node 0 over the mesh);
- ``mirror-cold``: ``snapshot_download`` on node 0 with only ``HF_ENDPOINT`` set to its hub
  mirror endpoint (plain HTTP: no TLS between client and daemon);
- ``dfget`` / ``dfget-warm``: ``dfget hf://... -r`` through node 1's daemon;
- metadata latency: ``HEAD`` on a ``resolve`` URL, direct and through the proxy (medians).

The systems run in ``--rounds`` rounds, each cold run on a repo of its own, the order of the
cold systems rotated from round to round (the first run of an invocation pays for warming the
daemons up); the table holds the medians, the ratio is one of medians, then per round
(proxy-cold and dfget of the same round) with their median.

Every output is checked against the repo's sha256s. Prints a markdown table and writes the
figures to ``bench/results/proxy-<timestamp>.json``. The hub runs in this process (its event
loop also times the runs): good for comparing the systems, not for absolute figures.

    .venv/bin/python bench/proxy/run.py                       # 4 x 256 MiB shards
    .venv/bin/python bench/proxy/run.py --shards 1 --shard-size 4MiB   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: make the `bench` package importable

import aiohttp  # noqa: E402
import trustme  # noqa: E402

from bench.common.arguments import size_type  # noqa: E402
from bench.common.workspace import sha256_of  # noqa: E402
from bench.hub.repo import ModelRepo, build_repo  # noqa: E402
from damselfly.demo.hub_repos import HubRepo  # noqa: E402
from damselfly.testing.cluster import LocalCluster  # noqa: E402
from damselfly.testing.hub_clients import hub_proxy_settings  # noqa: E402
from damselfly.testing.proxy import TlsHfTestHub  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")
SNAPSHOT = "import sys; from huggingface_hub import snapshot_download as s; print(s(sys.argv[1]))"
COLD = ("direct", "proxy", "mirror", "dfget")  # the systems that need a repo of their own per round
METADATA_CALLS = 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-size", type=size_type("--shard-size"), default=256 * 2**20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-proxy-", dir=args.workdir) as tmp:
        root = Path(tmp)
        repos = {
            f"{name}-{r}": build_repo(root / "repos" / f"{name}-{r}", f"bench/{name}-{r}",
                                      shards=args.shards, shard_size=args.shard_size)
            for name in COLD for r in range(args.rounds)
        }  # fmt: skip
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        bundle = root / "hub-ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        hub_repos = [_hub_repo(repo) for repo in repos.values()]
        async with TlsHfTestHub(hub_repos, ssl_context=context) as hub:
            env = _cluster_env(hub, bundle)
            async with LocalCluster(root / "mesh", peers=2, seeds=1, env=env) as cluster:
                return await _measure(root, hub, cluster, repos, bundle, args.rounds)


async def _measure(
    root: Path, hub, cluster, repos: dict[str, ModelRepo], bundle: Path, rounds: int
) -> dict[str, object]:
    first, second = cluster.peers
    proxy0, proxy1 = _proxy_env(hub, first), _proxy_env(hub, second)
    runs: dict[str, list[float]] = {}

    def timed(name: str, seconds: float) -> None:
        runs.setdefault(name, []).append(seconds)

    async def proxy(r: int) -> None:
        repo = repos[f"proxy-{r}"]
        timed("proxy-cold", await _snapshot(root, f"proxy-cold-{r}", repo, proxy0))
        timed("proxy-warm", await _snapshot(root, f"proxy-warm-{r}", repo, proxy0))
        timed("proxy-peer", await _snapshot(root, f"proxy-peer-{r}", repo, proxy1))

    async def mirror(r: int) -> None:
        env = {**_base_env(hub), "HF_ENDPOINT": f"http://{first.ready['mirrors']}"}
        timed("mirror-cold", await _snapshot(root, f"mirror-cold-{r}", repos[f"mirror-{r}"], env))

    async def dfget(r: int) -> None:
        repo = repos[f"dfget-{r}"]
        timed("dfget", await _dfget(root, cluster, second, repo, f"dfget-{r}"))
        timed("dfget-warm", await _dfget(root, cluster, second, repo, f"dfget-warm-{r}"))

    async def direct(r: int) -> None:
        env = _direct_env(hub, bundle)
        timed("direct", await _snapshot(root, f"direct-{r}", repos[f"direct-{r}"], env))

    systems = [direct, proxy, mirror, dfget]
    for r in range(rounds):
        for system in systems[r % 4 :] + systems[: r % 4]:  # rotated
            await system(r)
    latency = await _metadata_latency(hub, first, repos["proxy-0"], bundle)
    size = repos["proxy-0"].total_size
    table = {
        name: {
            "seconds": statistics.median(times),
            "mib_per_s": size / statistics.median(times) / 2**20,
            "all_seconds": times,
        }
        for name, times in runs.items()
    }
    return {"bytes": size, "rounds": rounds, "runs": table, "metadata_head_ms": latency}


def _hub_repo(repo: ModelRepo) -> HubRepo:
    return HubRepo(repo.repo_id, {f.path: repo.directory / f.path for f in repo.files},
                   lfs_threshold=1024 * 1024)  # fmt: skip


def _cluster_env(hub, bundle: Path) -> dict[str, str]:
    return {
        "SSL_CERT_FILE": str(bundle),
        "HF_ENDPOINT": hub.endpoint,
        "DAMSELFLY_DAEMON_PROXY": hub_proxy_settings(hub, bundle),
    }


def _base_env(hub) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


def _direct_env(hub, bundle: Path) -> dict[str, str]:
    return {**_base_env(hub), **{name: str(bundle) for name in CA_VARIABLES}}


def _proxy_env(hub, node) -> dict[str, str]:
    ca = str(node.storage_dir / "proxy" / "ca.crt")
    env = {**_base_env(hub), **{name: ca for name in CA_VARIABLES}}
    env.update(HTTPS_PROXY=f"http://{node.ready['proxy']}", NO_PROXY="", no_proxy="")
    return env


async def _snapshot(root: Path, name: str, repo: ModelRepo, env: dict[str, str]) -> float:
    home = root / "clients" / name
    env = {**env, "HOME": str(home), "HF_HOME": str(home / "hf")}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SNAPSHOT, repo.repo_id, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{name}: snapshot_download failed: {stderr.decode()[-2000:]}")
    _check(repo, Path(stdout.decode().strip().splitlines()[-1]), name)
    return seconds


async def _dfget(root: Path, cluster, node, repo: ModelRepo, name: str) -> float:
    output = root / "clients" / name
    done = await cluster.dfget(node, f"hf://{repo.repo_id}", output, "-r")
    if done.code != 0:
        raise RuntimeError(f"{name}: dfget failed: {done.stderr[-2000:]}")
    _check(repo, output, name)
    return done.seconds


def _check(repo: ModelRepo, directory: Path, name: str) -> None:
    for file in repo.files:
        if sha256_of(directory / file.path) != file.sha256:
            raise RuntimeError(f"{name}: {file.path} differs from the repo")


async def _metadata_latency(hub, node, repo: ModelRepo, bundle: Path) -> dict[str, float]:
    url = f"{hub.endpoint}/{repo.repo_id}/resolve/main/config.json"
    direct = ssl.create_default_context(cafile=str(bundle))
    proxied = ssl.create_default_context(cafile=str(node.storage_dir / "proxy" / "ca.crt"))
    proxy = f"http://{node.ready['proxy']}"
    async with aiohttp.ClientSession(trust_env=False) as session:
        plain = [await _head(session, url, direct, None) for _ in range(METADATA_CALLS)]
        through = [await _head(session, url, proxied, proxy) for _ in range(METADATA_CALLS)]
    medians = {"direct": statistics.median(plain), "proxy": statistics.median(through)}
    return {**medians, "added": medians["proxy"] - medians["direct"]}


async def _head(session, url: str, context: ssl.SSLContext, proxy: str | None) -> float:
    started = time.monotonic()
    async with session.head(url, ssl=context, proxy=proxy, allow_redirects=False) as response:
        if response.status >= 400:
            raise RuntimeError(f"HEAD {url}: {response.status}")
    return (time.monotonic() - started) * 1000


def report(result: dict) -> str:
    lines = [f"{result['bytes'] / 2**20:.0f} MiB per repo, {result['rounds']} rounds", "",
             "| system | median s | MiB/s | every run, s |", "|---|---:|---:|---|"]  # fmt: skip
    for name, run in result["runs"].items():
        every = ", ".join(f"{s:.2f}" for s in run["all_seconds"])
        lines.append(f"| {name} | {run['seconds']:.2f} | {run['mib_per_s']:.0f} | {every} |")
    ms = result["metadata_head_ms"]
    lines.append("")
    lines.append(
        f"HEAD resolve, median ms: direct {ms['direct']:.2f}, proxy {ms['proxy']:.2f} "
        f"(+{ms['added']:.2f})"
    )
    runs = result["runs"]
    ratio = runs["proxy-cold"]["mib_per_s"] / runs["dfget"]["mib_per_s"]
    lines.append(f"proxy cold / dfget through the daemon: {ratio:.2f}x (target >= 0.9)")
    rounds = zip(runs["proxy-cold"]["all_seconds"], runs["dfget"]["all_seconds"], strict=True)
    each = [dfget / proxy for proxy, dfget in rounds]  # throughput ratio: time dfget / proxy
    per_round = ", ".join(f"{r:.2f}" for r in each)
    lines.append(f"  per round: {per_round}; median {statistics.median(each):.2f}x")
    ratio = runs["mirror-cold"]["mib_per_s"] / runs["dfget"]["mib_per_s"]
    lines.append(f"mirror cold / dfget through the daemon: {ratio:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    arguments = parse_args()
    outcome = asyncio.run(main(arguments))
    print(report(outcome))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS_DIR / f"proxy-{stamp}.json").write_text(json.dumps(outcome, indent=2) + "\n")
