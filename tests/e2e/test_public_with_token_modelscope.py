"""A ModelScope token does not make a public file private; a private repo stays private.

As ``test_public_with_token.py`` for the ModelScope hub: real processes (scheduler, seed, two
daemons with their proxies), a TLS ``MsTestHub``, the real ``modelscope`` SDK in child
processes with ``MODELSCOPE_API_TOKEN`` set (it sends the token on every request), and
``dfget modelscope://`` with the same variable. A public repo's bytes leave the hub once for
the two nodes, its tasks are not marked private; a private repo read with the token on node A
is marked private, and a client without the token gets the hub's refusal and no content.
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

from damselfly.testing.cluster import LocalCluster
from damselfly.testing.hub_clients import result_line, run_child
from damselfly.testing.ms_hub import MsRepo, MsTestHub
from damselfly.testing.proxy import (
    CA_VARIABLES,
    loopback_server_context,
    proxy_settings_json,
    url_rule,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("modelscope") is None, reason="the modelscope SDK is not installed"
    ),
]

TOKEN = "ms-everywhere-token-0123456789"
BIG = b"".join(hashlib.sha256(b"m%d" % i).digest() for i in range(40_000))  # 1.28 MB
SMALL = b"".join(hashlib.sha256(b"n%d" % i).digest() for i in range(10_000))  # 320 kB
OTHER = b"".join(hashlib.sha256(b"o%d" % i).digest() for i in range(10_000))  # 320 kB
SECRET = b"".join(hashlib.sha256(b"s%d" % i).digest() for i in range(6_000))  # 192 kB
PUBLIC = {"config.json": b'{"hidden_size": 8}\n', "weights/big.bin": BIG, "tok.bin": SMALL}

CHILD = """
import json, sys
from modelscope.hub.file_download import model_file_download
from modelscope.hub.snapshot_download import snapshot_download
repo, filename = json.loads(sys.argv[1])
path = model_file_download(repo, filename) if filename else snapshot_download(repo)
sys.stdout.write("RESULT " + json.dumps(path) + "\\n")
"""


@pytest.fixture(scope="module")
def hub_ca():
    return trustme.CA()


@pytest.fixture
async def hub(hub_ca):
    repos = {
        "acme/pub": MsRepo(PUBLIC),
        "acme/other": MsRepo({"other.bin": OTHER}),
        "acme/secret": MsRepo({"model.bin": SECRET}, private=True),
    }
    context = loopback_server_context(hub_ca)
    async with MsTestHub(repos, ssl_context=context, token=TOKEN, redirect_lfs=True) as test_hub:
        yield test_hub


@pytest.fixture
async def cluster(hub, hub_ca, tmp_path):
    bundle = tmp_path / "hub-ca.pem"
    hub_ca.cert_pem.write_to_path(str(bundle))
    rules = [url_rule("modelscope", hub.endpoint, intercept=True)]
    env = {
        "SSL_CERT_FILE": str(bundle),
        "MODELSCOPE_ENDPOINT": hub.endpoint,
        "MODELSCOPE_API_TOKEN": TOKEN,  # every node is logged in (dfget reads it)
        "DAMSELFLY_DAEMON_PROXY": proxy_settings_json(str(bundle), rules, []),
        "DAMSELFLY_DAEMON_LOG_LEVEL": "debug",
    }
    async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env) as running:
        yield running


async def _sdk(tmp_path: Path, name: str, node, hub, repo: str, filename: str = "") -> Path:
    """The SDK, logged in, through the node's proxy; the path it returned."""
    home = tmp_path / f"home-{name}"
    (home / "no-certs").mkdir(parents=True)
    ca = str(node.storage_dir / "proxy" / "ca.crt")
    proxy = f"http://{node.ready['proxy']}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "MODELSCOPE_CACHE": str(home / "cache"),
        "MODELSCOPE_ENDPOINT": hub.endpoint,
        "MODELSCOPE_API_TOKEN": TOKEN,
        "MODELSCOPE_DOWNLOAD_PARALLEL_THRESHOLD_MB": "1",
        "MODELSCOPE_DOWNLOAD_PARALLEL_WORKERS": "3",
        "MODELSCOPE_DOWNLOAD_PART_SIZE_MB": "1",
        "HTTPS_PROXY": proxy,
        "https_proxy": proxy,
        "NO_PROXY": "",
        "no_proxy": "",
        "SSL_CERT_DIR": str(home / "no-certs"),
        **{variable: ca for variable in CA_VARIABLES},
    }
    stdout = await run_child(CHILD, env, json.dumps([repo, filename]), seconds=90)
    return Path(result_line(stdout))


def _private_marks(node) -> list[str]:
    return [p.name for p in (node.storage_dir / "private").glob("*")]


async def test_public_repo_is_shared_when_every_client_has_a_token(cluster, hub, tmp_path):
    for index, node in enumerate(cluster.peers):
        snapshot = await _sdk(tmp_path, f"pub-{index}", node, hub, "acme/pub")
        assert (snapshot / "weights/big.bin").read_bytes() == BIG
        assert (snapshot / "tok.bin").read_bytes() == SMALL
    assert hub.bytes_served == sum(map(len, PUBLIC.values()))  # once for two nodes
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.requests)  # logged in

    served = hub.bytes_served
    for index in (0, 1):  # dfget with MODELSCOPE_API_TOKEN in its environment
        output = tmp_path / f"other{index}"
        done = await cluster.dfget(index, "modelscope://acme/other/other.bin", output)
        assert done.code == 0, done.stderr
        assert output.read_bytes() == OTHER
    assert hub.bytes_served - served == len(OTHER)
    assert all(_private_marks(node) == [] for node in cluster.peers)
    _assert_token_nowhere(cluster)


async def test_private_repo_stays_private_with_the_same_token(cluster, hub, tmp_path):
    first, second = cluster.peers
    path = await _sdk(tmp_path, "owner", first, hub, "acme/secret", "model.bin")
    assert path.read_bytes() == SECRET
    assert len(_private_marks(first)) == 1

    url = f"{hub.endpoint}/api/v1/models/acme/secret/repo?Revision=master&FilePath=model.bin"
    for node in cluster.peers:  # the node that holds the file, and its peer
        status, body = await _get_through_proxy(node, url)
        assert status in (401, 403, 404), status
        assert SECRET[:64] not in body
    done = await cluster.dfget(
        second, "modelscope://acme/secret/model.bin", tmp_path / "s.bin", "--ms-token", "wrong"
    )
    assert done.code != 0
    assert not (tmp_path / "s.bin").exists()
    _assert_token_nowhere(cluster)


def _assert_token_nowhere(cluster) -> None:
    for path in (cluster.workdir / "logs").iterdir():
        assert TOKEN not in path.read_text(errors="replace"), path.name
    for path in (cluster.workdir / "nodes").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path


async def _get_through_proxy(node, url: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(node.storage_dir / "proxy" / "ca.crt"))
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.get(url, proxy=f"http://{node.ready['proxy']}", ssl=context) as response,
    ):
        return response.status, await response.read()
