"""Unchanged huggingface_hub through each node's dfdaemon proxy, over the real P2P mesh.

Real processes (``LocalCluster``: scheduler, seed, two daemons, each with its proxy and a hub
mirror endpoint) and a TLS test hub (hub + CDN, trustme CA). The client is the real
``huggingface_hub`` in a child process with only ``HTTPS_PROXY`` and the CA variables set
(the bundle holds the node's proxy CA alone, so nothing reached it past the interception), or
only ``HF_ENDPOINT`` for the mirror. What is checked: byte-identical files in
huggingface_hub's cache layout on both nodes, the LFS bytes leaving the CDN once in total,
the proxy and ``dfget hf://`` sharing one task both ways, and private content: served to the
token holder, refused (the hub's own 401/404, no content) to a client without the token or
with a wrong one, the token in no log, store file, metric or scheduler log.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from damselfly.core.digests import Digest
from damselfly.core.ids import task_id_for_content
from damselfly.core.pieces import choose_piece_length
from damselfly.demo.hub_repos import HubRepo
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.hub_clients import hf_client_env, hub_proxy_settings, run_hf_sdk
from damselfly.testing.proxy import TlsHfTestHub, loopback_server_context

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
)

WEIGHTS = b"".join(hashlib.sha256(b"w%d" % i).digest() for i in range(40_000))  # 1.28 MB
OTHER = b"".join(hashlib.sha256(b"o%d" % i).digest() for i in range(20_000))  # 640 kB
SECRET = b"".join(hashlib.sha256(b"s%d" % i).digest() for i in range(3_000))  # 96 kB
TINY = {"config.json": b'{"hidden_size": 8}\n', "model.safetensors": WEIGHTS}
XET_FILE = b"".join(hashlib.sha256(b"x%d" % i).digest() for i in range(24_000))  # 768 kB
TOKEN = "hf_mesh_secret_0123456789abcdef"
REPOS = [
    HubRepo("acme/tiny", TINY, lfs_threshold=1024),
    HubRepo("acme/other", {"big.bin": OTHER}, lfs_threshold=1024),
    HubRepo(
        "acme/private",
        {"model.bin": SECRET},
        lfs_threshold=1024,
        private=True,
        allowed_tokens=frozenset({TOKEN}),
    ),
    HubRepo("acme/xet", {"model.safetensors": XET_FILE}, lfs_threshold=1024, xet=True),
]


@pytest.fixture(scope="module")
def hub_ca():
    return trustme.CA()


@pytest.fixture
async def hub(hub_ca):
    context = loopback_server_context(hub_ca)
    async with TlsHfTestHub(REPOS, ssl_context=context) as test_hub:
        yield test_hub


@pytest.fixture
async def cluster(hub, hub_ca, tmp_path):
    bundle = tmp_path / "hub-ca.pem"
    hub_ca.cert_pem.write_to_path(str(bundle))
    env = {
        "SSL_CERT_FILE": str(bundle),  # the daemons' own origin reads (hf backend) trust the hub
        "HF_ENDPOINT": hub.endpoint,  # for dfget hf://
        "DAMSELFLY_DAEMON_PROXY": hub_proxy_settings(hub, bundle),
        "DAMSELFLY_DAEMON_LOG_LEVEL": "debug",
        "DAMSELFLY_SCHEDULER_LOG_LEVEL": "debug",
    }
    async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env) as running:
        yield running


def _client_env(
    tmp_path: Path, name: str, node, hub, *, mirror: bool = False, xet: bool = False
) -> dict[str, str]:
    bundle = tmp_path / "hub-ca.pem"  # written by the cluster fixture
    home = tmp_path / f"home-{name}"
    return hf_client_env(home, node, hub, hub_bundle=bundle, mirror=mirror, xet=xet)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def _cdn_gets(hub, data: bytes) -> int:
    """GETs of that file's bytes at the CDN (its paths end with the sha256)."""
    name, log = hashlib.sha256(data).hexdigest(), hub.stats.log
    return sum(1 for r in log if r.server == "cdn" and r.method == "GET" and r.path.endswith(name))


def _content_task(data: bytes) -> str:
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    return task_id_for_content(digest, choose_piece_length(len(data)))


def _holds(node, task_id: str) -> bool:
    return (node.storage_dir / "content" / task_id[:2] / task_id).is_file()


def _assert_tiny(result: dict, cache: Path) -> None:
    snapshot = Path(result["path"])
    assert _tree_bytes(snapshot) == TINY
    commit = REPOS[0].refs["main"]
    repo_dir = cache / "models--acme--tiny"
    assert snapshot == repo_dir / "snapshots" / commit
    assert (repo_dir / "refs" / "main").read_text() == commit
    blob = repo_dir / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()
    assert (snapshot / "model.safetensors").resolve() == blob


async def test_huggingface_hub_through_each_nodes_proxy_and_mirror(cluster, hub, tmp_path):
    calls = {
        "tiny": {"fn": "snapshot", "repo_id": "acme/tiny"},
        "one": {"fn": "file", "repo_id": "acme/tiny", "filename": "config.json"},
    }
    for index, node in enumerate(cluster.peers):
        env = _client_env(tmp_path, f"proxy-{index}", node, hub)
        results = await run_hf_sdk(env, calls)
        cache = Path(env["HF_HOME"]) / "hub"
        _assert_tiny(results["tiny"], cache)
        assert Path(results["one"]["path"]).read_bytes() == TINY["config.json"]
    assert _cdn_gets(hub, WEIGHTS) == 1  # the LFS bytes left the CDN once
    assert all(_holds(node, _content_task(WEIGHTS)) for node in cluster.peers)

    for index, node in enumerate(cluster.peers):
        env = _client_env(tmp_path, f"mirror-{index}", node, hub, mirror=True)
        results = await run_hf_sdk(env, calls)
        _assert_tiny(results["tiny"], Path(env["HF_HOME"]) / "hub")
    assert _cdn_gets(hub, WEIGHTS) == 1
    assert hub.stats.bytes_served["cdn"] == len(WEIGHTS)

    metrics = await cluster.metrics(cluster.peers[1])
    assert metrics['damselfly_proxy_requests_total{outcome="mesh",rule="cdn"}'] >= 1
    assert metrics["damselfly_daemon_peer_bytes_total"] >= len(WEIGHTS)  # node 1: from node 0


@pytest.mark.skipif(importlib.util.find_spec("hf_xet") is None, reason="hf_xet not installed")
async def test_xet_advertised_by_the_hub_still_goes_through_the_mesh(cluster, hub, tmp_path):
    """The hub advertises Xet for the repo's LFS file (X-Xet-Hash, rel="xet-auth", xetHash in
    the tree); the test hub does not serve Xet CAS, so a client that takes the Xet path fails
    and is counted at the token route. Straight to the hub, huggingface_hub with hf_xet takes
    it (the advertisement is one the real client acts on); through the proxy and the mirror
    it never does: the bytes come through resolve and the mesh, once from the CDN."""
    call = {"x": {"fn": "snapshot", "repo_id": "acme/xet"}}
    direct = await run_hf_sdk(_client_env(tmp_path, "xet-direct", None, hub, xet=True), call)
    assert "error" in direct["x"], direct
    tried = hub.stats.requests["GET /api/xet-read-token"]
    assert tried >= 1

    first, second = cluster.peers
    for name, node, mirror in (("xet-proxy", first, False), ("xet-mirror", second, True)):
        env = _client_env(tmp_path, name, node, hub, mirror=mirror, xet=True)
        results = await run_hf_sdk(env, call)
        assert "path" in results["x"], results
        assert (Path(results["x"]["path"]) / "model.safetensors").read_bytes() == XET_FILE
    assert hub.stats.requests["GET /api/xet-read-token"] == tried  # no client tried Xet
    assert _cdn_gets(hub, XET_FILE) == 1
    assert all(_holds(node, _content_task(XET_FILE)) for node in cluster.peers)


async def test_proxy_and_dfget_share_tasks_both_ways(cluster, hub, tmp_path):
    first, second = cluster.peers
    # proxy first, then dfget on the same node: served from the store
    env = _client_env(tmp_path, "p", first, hub)
    call = {"fn": "file", "repo_id": "acme/tiny", "filename": "model.safetensors"}
    results = await run_hf_sdk(env, {"w": call})
    assert Path(results["w"]["path"]).read_bytes() == WEIGHTS
    done = await cluster.dfget(first, "hf://acme/tiny/model.safetensors", tmp_path / "w.bin")
    assert done.code == 0, done.stderr
    assert (tmp_path / "w.bin").read_bytes() == WEIGHTS
    assert _cdn_gets(hub, WEIGHTS) == 1

    # dfget first on one node, then the proxy on the other: the same task, from the mesh
    done = await cluster.dfget(second, "hf://acme/other/big.bin", tmp_path / "big.bin")
    assert done.code == 0, done.stderr
    assert _holds(second, _content_task(OTHER))
    env = _client_env(tmp_path, "q", first, hub)
    call = {"fn": "file", "repo_id": "acme/other", "filename": "big.bin"}
    results = await run_hf_sdk(env, {"b": call})
    assert Path(results["b"]["path"]).read_bytes() == OTHER
    assert _cdn_gets(hub, OTHER) == 1
    assert _holds(first, _content_task(OTHER))


async def test_private_content_only_with_the_clients_own_token(cluster, hub, tmp_path):
    node = cluster.peers[0]
    env = _client_env(tmp_path, "owner", node, hub)
    call = {"fn": "file", "repo_id": "acme/private", "filename": "model.bin", "token": TOKEN}
    results = await run_hf_sdk(env, {"p": call})
    assert Path(results["p"]["path"]).read_bytes() == SECRET
    assert _holds(node, _content_task(SECRET))

    url = f"{hub.endpoint}/acme/private/resolve/main/model.bin"
    for other, authorization in itertools.product(
        cluster.peers, (None, "Bearer hf_wrong_token_000000")
    ):  # the node that holds the file, and its peer
        for status, body in (
            await _get_through_proxy(other, url, authorization),
            await _get_through_mirror(other, "/acme/private/resolve/main/model.bin", authorization),
        ):
            assert status in (401, 403, 404), status
            assert SECRET[:64] not in body
            assert len(body) < 1000
    status, body = await _get_through_proxy(node, url, f"Bearer {TOKEN}")
    assert (status, body) == (200, SECRET)
    assert _cdn_gets(hub, SECRET) == 1  # the owner's second read came from the store

    metrics_text = json.dumps(await cluster.metrics(node))
    assert TOKEN not in metrics_text
    for path in (cluster.workdir / "logs").iterdir():
        assert TOKEN not in path.read_text(errors="replace"), path.name
    for path in (cluster.workdir / "nodes").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


async def _get_through_mirror(node, path: str, authorization: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.get(f"http://{node.ready['mirrors']}{path}", headers=headers) as response,
    ):
        return response.status, await response.read()


async def _get_through_proxy(node, url: str, authorization: str | None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(node.storage_dir / "proxy" / "ca.crt"))
    headers = {"Authorization": authorization} if authorization else {}
    proxy = f"http://{node.ready['proxy']}"
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.get(url, proxy=proxy, ssl=context, headers=headers) as response,
    ):
        return response.status, await response.read()
