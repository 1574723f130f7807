"""The unchanged ``modelscope`` SDK through each node's dfdaemon proxy and mirror, over the
real P2P mesh.

Real processes (``LocalCluster``: scheduler, seed, two daemons, each with its proxy and a
ModelScope mirror endpoint) and a TLS ModelScope test hub (``MsTestHub`` with a trustme
certificate). The client is the real ``modelscope`` SDK in a child process with only
``HTTPS_PROXY`` and the CA variables set (the bundle holds the node's proxy CA alone, so
nothing reached the hub past the interception), or only ``MODELSCOPE_ENDPOINT`` pointing at
the node's mirror. What is checked: byte-identical files in the SDK's own cache layout (the
same tree it writes straight from the hub), on both nodes, both ways, with the file over
1 MiB taking the SDK's parallel ranged path; and the hub's file bytes served once in total.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest
import trustme

from damselfly.testing.cluster import LocalCluster
from damselfly.testing.hub_clients import result_line, run_child
from damselfly.testing.ms_hub import MsRepo, MsTestHub
from damselfly.testing.proxy import (
    CA_VARIABLES,
    loopback_server_context,
    proxy_settings_json,
    url_rule,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("modelscope") is None, reason="the modelscope SDK is not installed"
)

BIG = b"".join(hashlib.sha256(b"m%d" % i).digest() for i in range(70_000))  # 2.1 MiB
SMALL = b"".join(hashlib.sha256(b"n%d" % i).digest() for i in range(10_000))  # 320 kB
FILES = {"config.json": b'{"hidden_size": 8}\n', "weights/big.bin": BIG, "tokenizer.bin": SMALL}

CHILD = """
import json, sys
from modelscope.hub.file_download import model_file_download
from modelscope.hub.snapshot_download import snapshot_download
out = {
    "snapshot": snapshot_download("acme/tiny"),
    "file": model_file_download("acme/tiny", "tokenizer.bin"),
}
sys.stdout.write("RESULT " + json.dumps(out) + "\\n")
"""


@pytest.fixture(scope="module")
def hub_ca():
    return trustme.CA()


@pytest.fixture(params=[False, True], ids=["hub-serves", "cdn-redirect"])
async def hub(hub_ca, request):
    """``cdn-redirect``: files over 1 MiB answered with a 302 to a signed URL on a second port
    (the "CDN"), as the live hub does for large files."""
    async with MsTestHub(
        {"acme/tiny": MsRepo(FILES)},
        ssl_context=loopback_server_context(hub_ca),
        redirect_lfs=request.param,
    ) as test_hub:
        yield test_hub


def _proxy_settings(hub: MsTestHub, hub_bundle: Path) -> str:
    mirrors = [{"listen": "127.0.0.1:0", "upstream": hub.endpoint, "hub": "modelscope"}]
    rules = [url_rule("modelscope", hub.endpoint, intercept=True)]
    return proxy_settings_json(str(hub_bundle), rules, mirrors)


@pytest.fixture
async def cluster(hub, hub_ca, tmp_path):
    bundle = tmp_path / "hub-ca.pem"
    hub_ca.cert_pem.write_to_path(str(bundle))
    env = {
        "SSL_CERT_FILE": str(bundle),  # the daemons' own origin reads trust the hub
        "DAMSELFLY_DAEMON_PROXY": _proxy_settings(hub, bundle),
        "DAMSELFLY_DAEMON_LOG_LEVEL": "debug",
    }
    async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env) as running:
        yield running


def _client_env(tmp_path: Path, name: str, hub: MsTestHub, how: str, node=None) -> dict[str, str]:
    """``how``: "direct" (straight to the hub), "proxy" (HTTPS_PROXY), "mirror"."""
    home = tmp_path / f"home-{name}"
    (home / "no-certs").mkdir(parents=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "MODELSCOPE_CACHE": str(home / "cache"),
        "MODELSCOPE_ENDPOINT": hub.endpoint,
        # Files over 1 MiB go through the SDK's parallel ranged download, 1 MiB parts.
        "MODELSCOPE_DOWNLOAD_PARALLEL_THRESHOLD_MB": "1",
        "MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS": "3",
        "MODELSCOPE_DOWNLOAD_PART_SIZE_MB": "1",
    }
    if how == "direct":
        env.update({variable: str(tmp_path / "hub-ca.pem") for variable in CA_VARIABLES})
    elif how == "mirror":
        env["MODELSCOPE_ENDPOINT"] = f"http://{node.ready['mirrors']}"
    else:
        ca = str(node.storage_dir / "proxy" / "ca.crt")
        env.update({variable: ca for variable in CA_VARIABLES})
        proxy = f"http://{node.ready['proxy']}"
        env.update(HTTPS_PROXY=proxy, https_proxy=proxy, NO_PROXY="", no_proxy="")
        env["SSL_CERT_DIR"] = str(home / "no-certs")
    return env


async def _modelscope(env: dict[str, str]) -> dict[str, str]:
    result: dict[str, str] = result_line(await run_child(CHILD, env, seconds=90))
    return result


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _layout(env: dict[str, str], result: dict[str, str]) -> tuple[set[str], str, str]:
    """What the SDK wrote under its cache: every file name, and where the calls pointed."""
    cache = Path(env["MODELSCOPE_CACHE"])
    names = {p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()}
    snapshot = Path(result["snapshot"]).relative_to(cache).as_posix()
    return names, snapshot, Path(result["file"]).relative_to(cache).as_posix()


async def test_modelscope_sdk_through_each_nodes_proxy_and_mirror(cluster, hub, tmp_path):
    reference_env = _client_env(tmp_path, "direct", hub, "direct")
    reference = await _modelscope(reference_env)
    assert _tree(Path(reference["snapshot"])) == FILES
    expected_layout = _layout(reference_env, reference)
    total = sum(map(len, FILES.values()))
    direct_bytes, hub.bytes_served = hub.bytes_served, 0
    assert direct_bytes == total  # the file call found tokenizer.bin in the SDK's cache
    ranged = hub.requests_for("cdn" if hub.redirect_lfs else "file")
    assert any(r.range and r.method == "GET" for r in ranged)  # big.bin: the SDK's ranged path

    for how in ("proxy", "mirror"):
        for index, node in enumerate(cluster.peers):
            env = _client_env(tmp_path, f"{how}-{index}", hub, how, node)
            result = await _modelscope(env)
            assert _tree(Path(result["snapshot"])) == FILES, (how, index)
            assert Path(result["file"]).read_bytes() == SMALL
            assert _layout(env, result) == expected_layout, (how, index)
    # Every file's bytes left the hub once for 2 nodes x (proxy, mirror) x 2 calls.
    assert hub.bytes_served == total

    metrics = await cluster.metrics(cluster.peers[1])
    assert metrics['damselfly_proxy_requests_total{outcome="mesh",rule="modelscope"}'] >= 1
    assert metrics["damselfly_daemon_peer_bytes_total"] >= len(BIG)  # node 1: from its peers
