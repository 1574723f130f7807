"""A hub token does not make a public file private; a private or gated one stays private.

The common cluster: ``HF_TOKEN`` set on every node (for the gated models), so every request
huggingface_hub or dfget sends carries ``Authorization: Bearer hf_...``. Real processes
(``LocalCluster``: scheduler, seed, two daemons, each with its proxy and a hub mirror
endpoint), a TLS test hub (hub + CDN), the real huggingface_hub in child processes with
``HF_TOKEN`` set. What is checked: a public repo's LFS bytes leave the CDN once in total over
the two nodes (through the proxy, the mirror endpoint and ``dfget hf://``), its task is not
marked private; a private and a gated repo read with the same token on node A are marked
private, and node B without the token (or with another valid one) gets the hub's refusal and
no content. The token is in no log, store file or metric.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
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
from damselfly.testing.hub_clients import HF_SDK_SCRIPT, run_child
from damselfly.testing.proxy import (
    CA_VARIABLES,
    TlsHfTestHub,
    loopback_server_context,
    proxy_settings_json,
    url_rule,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
    ),
]

TOKEN = "hf_everywhere_0123456789abcdefXYZ"
OTHER_TOKEN = "hf_someone_else_0123456789abcdef"  # valid at the hub, granted nothing
WEIGHTS = b"".join(hashlib.sha256(b"w%d" % i).digest() for i in range(40_000))  # 1.28 MB
BIG = b"".join(hashlib.sha256(b"b%d" % i).digest() for i in range(20_000))  # 640 kB
MIRRORED = b"".join(hashlib.sha256(b"m%d" % i).digest() for i in range(20_000))  # 640 kB
TREE = {f"part{n}.bin": hashlib.sha256(b"t%d" % n).digest() * 4_000 for n in range(3)}  # 128 kB
SECRET = b"".join(hashlib.sha256(b"s%d" % i).digest() for i in range(6_000))  # 192 kB
GATED = b"".join(hashlib.sha256(b"g%d" % i).digest() for i in range(5_000))  # 160 kB
TINY = {"config.json": b'{"hidden_size": 8}\n', "model.safetensors": WEIGHTS}
ALLOWED = frozenset({TOKEN})
REPOS = [
    HubRepo("acme/tiny", TINY, lfs_threshold=1024),
    HubRepo("acme/big", {"big.bin": BIG}, lfs_threshold=1024),
    HubRepo("acme/tree", TREE, lfs_threshold=1024),
    HubRepo("acme/mirrored", {"m.bin": MIRRORED, "c.json": b"{}"}, lfs_threshold=1024),
    HubRepo("acme/private", {"model.bin": SECRET}, lfs_threshold=1024, private=True,
            allowed_tokens=ALLOWED),
    HubRepo("acme/gated", {"model.bin": GATED}, lfs_threshold=1024, gated=True,
            allowed_tokens=ALLOWED),
]  # fmt: skip


@pytest.fixture(scope="module")
def hub_ca():
    return trustme.CA()


@pytest.fixture
async def hub(hub_ca):
    context = loopback_server_context(hub_ca)
    async with TlsHfTestHub(REPOS, ssl_context=context, tokens={OTHER_TOKEN}) as test_hub:
        yield test_hub


@pytest.fixture(params=[False, True], ids=["plain", "mtls"])
async def cluster(hub, hub_ca, tmp_path, request):
    """``mtls``: a cluster with its CA and secret (private task ids keyed, grants)."""
    bundle = tmp_path / "hub-ca.pem"
    hub_ca.cert_pem.write_to_path(str(bundle))
    rules = [url_rule("hub", hub.origin, intercept=True), url_rule("cdn", hub.cdn.base_url)]
    mirrors = [{"listen": "127.0.0.1:0", "upstream": hub.endpoint}]
    env = {
        "SSL_CERT_FILE": str(bundle),
        "HF_ENDPOINT": hub.endpoint,
        "HF_TOKEN": TOKEN,  # every node is logged in (dfget reads it)
        "DAMSELFLY_DAEMON_PROXY": proxy_settings_json(str(bundle), rules, mirrors),
        "DAMSELFLY_DAEMON_LOG_LEVEL": "debug",
    }
    tls = request.param
    async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env, tls=tls) as running:
        yield running


def _client_env(tmp_path: Path, name: str, node, hub, *, mirror: bool) -> dict[str, str]:
    """huggingface_hub logged in (``HF_TOKEN``), through the node's proxy or its mirror."""
    home = tmp_path / f"home-{name}"
    (home / "no-certs").mkdir(parents=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    if mirror:
        env["HF_ENDPOINT"] = f"http://{node.ready['mirrors']}"
        return env
    ca = str(node.storage_dir / "proxy" / "ca.crt")
    env.update({variable: ca for variable in CA_VARIABLES})
    env.update(SSL_CERT_DIR=str(home / "no-certs"), NO_PROXY="", no_proxy="")
    env["HTTPS_PROXY"] = f"http://{node.ready['proxy']}"
    env["HF_ENDPOINT"] = hub.endpoint
    return env


async def _huggingface_hub(env: dict[str, str], calls: dict[str, dict[str, object]]) -> dict:
    stdout = await run_child(HF_SDK_SCRIPT, env, json.dumps(calls))
    return json.loads(stdout.strip().splitlines()[-1])


def _cdn_gets(hub, data: bytes) -> int:
    name, log = hashlib.sha256(data).hexdigest(), hub.stats.log
    return sum(1 for r in log if r.server == "cdn" and r.method == "GET" and r.path.endswith(name))


def _content_task(data: bytes) -> str:
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    return task_id_for_content(digest, choose_piece_length(len(data)))


def _holds(node, task_id: str) -> bool:
    return (node.storage_dir / "content" / task_id[:2] / task_id).is_file()


def _private(node, task_id: str) -> bool:
    return (node.storage_dir / "private" / task_id).exists()


async def test_public_repo_is_shared_when_every_client_has_a_token(cluster, hub, tmp_path):
    """Each way in on both nodes, a repo of its own: the proxy (huggingface_hub's HEAD on
    ``resolve`` with the token, then the CDN GET), the mirror endpoint (the GET on ``resolve``
    with the token) and ``dfget hf://`` with ``HF_TOKEN``."""
    calls = {"tiny": {"fn": "snapshot", "repo_id": "acme/tiny"}}
    for index, node in enumerate(cluster.peers):
        env = _client_env(tmp_path, f"proxy-{index}", node, hub, mirror=False)
        result = (await _huggingface_hub(env, calls))["tiny"]
        assert "path" in result, result
        assert (Path(result["path"]) / "model.safetensors").read_bytes() == WEIGHTS
        assert (Path(result["path"]) / "config.json").read_bytes() == TINY["config.json"]
    _assert_shared_once(cluster, hub, WEIGHTS)

    calls = {"m": {"fn": "snapshot", "repo_id": "acme/mirrored"}}
    for index, node in enumerate(cluster.peers):
        env = _client_env(tmp_path, f"mirror-{index}", node, hub, mirror=True)
        result = (await _huggingface_hub(env, calls))["m"]
        assert "path" in result, result
        assert (Path(result["path"]) / "m.bin").read_bytes() == MIRRORED
    _assert_shared_once(cluster, hub, MIRRORED)

    for index in (0, 1):  # dfget with HF_TOKEN in its environment, on each node
        done = await cluster.dfget(index, "hf://acme/big/big.bin", tmp_path / f"big{index}")
        assert done.code == 0, done.stderr
        assert (tmp_path / f"big{index}").read_bytes() == BIG
    _assert_shared_once(cluster, hub, BIG)

    for index in (0, 1):  # a whole repo: dfget -r, one anonymous question per file
        done = await cluster.dfget(index, "hf://acme/tree", tmp_path / f"tree{index}", "-r")
        assert done.code == 0, done.stderr
        got = {p.name: p.read_bytes() for p in (tmp_path / f"tree{index}").glob("*.bin")}
        assert got == TREE
    for data in TREE.values():
        _assert_shared_once(cluster, hub, data)
    total = len(WEIGHTS) + len(MIRRORED) + len(BIG) + sum(map(len, TREE.values()))
    assert hub.stats.bytes_served["cdn"] == total
    _assert_token_nowhere(cluster)


def _assert_shared_once(cluster, hub, data: bytes) -> None:
    assert _cdn_gets(hub, data) == 1  # the LFS bytes left the CDN once for two nodes
    task = _content_task(data)
    assert all(_holds(node, task) and not _private(node, task) for node in cluster.peers)


async def test_private_and_gated_repos_stay_private_with_the_same_token(cluster, hub, tmp_path):
    first, second = cluster.peers
    calls = {
        "p": {"fn": "file", "repo_id": "acme/private", "filename": "model.bin"},
        "g": {"fn": "file", "repo_id": "acme/gated", "filename": "model.bin"},
    }
    results = await _huggingface_hub(_client_env(tmp_path, "a", first, hub, mirror=False), calls)
    assert Path(results["p"]["path"]).read_bytes() == SECRET
    assert Path(results["g"]["path"]).read_bytes() == GATED
    assert len(list((first.storage_dir / "private").iterdir())) == 2  # both marked private
    for data in (SECRET, GATED):
        if cluster.tls:  # keyed with the cluster secret: not the public id
            assert not _holds(first, _content_task(data))
        else:
            assert _private(first, _content_task(data))
        assert _cdn_gets(hub, data) == 1

    for data, repo in ((SECRET, "acme/private"), (GATED, "acme/gated")):
        path = f"/{repo}/resolve/main/model.bin"
        for node in cluster.peers:  # the node that holds the file, and its peer
            for authorization in (None, f"Bearer {OTHER_TOKEN}"):
                for status, body in (
                    await _get_through_proxy(node, hub.endpoint + path, authorization),
                    await _get_through_mirror(node, path, authorization),
                ):
                    assert status in (401, 403, 404), (repo, status)
                    assert data[:64] not in body
        url = f"hf://{repo}/model.bin"
        done = await cluster.dfget(second, url, tmp_path / "b.bin", "--hf-token", OTHER_TOKEN)
        assert done.code != 0
        assert not (tmp_path / "b.bin").exists()
        status, body = await _get_through_proxy(first, hub.endpoint + path, f"Bearer {TOKEN}")
        assert (status, body) == (200, data)
        assert _cdn_gets(hub, data) == 1  # the token holder's second read: from the store
    _assert_token_nowhere(cluster)


def _assert_token_nowhere(cluster) -> None:
    for path in (cluster.workdir / "logs").iterdir():
        assert TOKEN not in path.read_text(errors="replace"), path.name
    for path in (cluster.workdir / "nodes").rglob("*"):
        if path.is_file() and not path.is_symlink():
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
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.get(
            url, proxy=f"http://{node.ready['proxy']}", ssl=context, headers=headers
        ) as response,
    ):
        return response.status, await response.read()
