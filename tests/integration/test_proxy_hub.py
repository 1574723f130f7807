"""The real huggingface_hub, unchanged, through the proxy and through the mirror endpoint.

A TLS test hub (hub + CDN, certificates from a trustme CA) serves a model repo and a private
one. ``snapshot_download`` and ``hf_hub_download`` run in a child process with a clean
environment: through the proxy, only ``HTTPS_PROXY`` and the CA variables (the bundle holds
the proxy's CA alone, so every byte the client accepted came through interception); through
the mirror, only ``HF_ENDPOINT``. ``HF_ENDPOINT`` also names the test hub in the proxy case,
since the hub is not huggingface.co. The fake mesh records every content GET it was given.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import trustme

from damselfly.config.proxy import HubMirror, ProxyCerts, ProxyRule, ProxySettings
from damselfly.daemon.proxy.service import ProxyService
from damselfly.daemon.proxy.upstream import DirectFetcher
from damselfly.demo.hub_repos import HubRepo
from damselfly.testing.hub_clients import HF_SDK_SCRIPT
from damselfly.testing.proxy import (
    CA_VARIABLES,
    RecordingMeshFetcher,
    TlsHfTestHub,
    loopback_server_context,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
)

WEIGHTS = hashlib.sha256(b"proxy").digest() * 10_000  # 320,000 bytes: LFS, via the CDN
TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": WEIGHTS,
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\n",
}
PRIVATE = {"model.bin": WEIGHTS[:3000], "README.md": b"# private\n"}
TOKEN = "hf_proxy_secret_0123456789"
REPOS = [
    HubRepo("acme/tiny", TINY, lfs_threshold=1024),
    HubRepo("acme/private", PRIVATE, private=True, allowed_tokens=frozenset({TOKEN})),
]

CHILD = HF_SDK_SCRIPT


@pytest.fixture(scope="module")
def hub_ca():
    return trustme.CA()


@pytest.fixture
async def hub(hub_ca):
    context = loopback_server_context(hub_ca)
    async with TlsHfTestHub(REPOS, ssl_context=context, page_size=2) as test_hub:
        yield test_hub


@pytest.fixture
def hub_bundle(tmp_path, hub_ca) -> Path:
    path = tmp_path / "hub-ca.pem"
    hub_ca.cert_pem.write_to_path(str(path))
    return path


def _escaped(url: str) -> str:
    return url.replace(".", r"\.")


@pytest.fixture
async def proxy(hub, hub_bundle, tmp_path):
    rules = [
        ProxyRule(
            regx=f"^{_escaped(hub.origin)}/", certs=ProxyCerts(hosts=["127.0.0.1"]), name="hub"
        ),
        ProxyRule(regx=f"^{_escaped(hub.cdn.base_url)}/", name="cdn"),
    ]
    settings = ProxySettings(
        listen="127.0.0.1:0",
        proxies=rules,
        upstream_ca_bundle=hub_bundle,
        mirrors=[HubMirror(listen="127.0.0.1:0", upstream=hub.endpoint)],
    )
    service = ProxyService(settings, data_dir=tmp_path / "daemon")
    service.use_mesh(RecordingMeshFetcher(DirectFetcher(service.upstream)))
    async with service:
        yield service


def _base_env(home: Path, endpoint: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HOME": str(home / "hf-home"),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


async def _run_client(env: dict[str, str], calls: dict[str, dict[str, object]]) -> dict:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        json.dumps(calls),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-3000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def _calls(cache: Path) -> dict[str, dict[str, object]]:
    return {
        "tiny": {"fn": "snapshot", "repo_id": "acme/tiny", "cache_dir": str(cache)},
        "one": {
            "fn": "file",
            "repo_id": "acme/tiny",
            "filename": "config.json",
            "cache_dir": str(cache),
        },
        "private": {
            "fn": "snapshot",
            "repo_id": "acme/private",
            "token": TOKEN,
            "cache_dir": str(cache),
        },
        "denied": {
            "fn": "snapshot",
            "repo_id": "acme/private",
            "token": False,
            "cache_dir": str(cache / "x"),
        },
    }


def _tree_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def _assert_downloads(results: dict, cache: Path) -> None:
    assert _tree_bytes(Path(results["tiny"]["path"])) == TINY
    assert Path(results["one"]["path"]).read_bytes() == TINY["config.json"]
    assert _tree_bytes(Path(results["private"]["path"])) == PRIVATE
    assert results["denied"]["error"] == "RepositoryNotFoundError"
    commit = REPOS[0].refs["main"]
    repo_dir = cache / "models--acme--tiny"
    assert (repo_dir / "refs" / "main").read_text() == commit
    snapshot = repo_dir / "snapshots" / commit
    assert Path(results["tiny"]["path"]) == snapshot
    weights = snapshot / "model.safetensors"
    assert weights.is_symlink()
    assert weights.resolve() == repo_dir / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()


def _assert_mesh(service: ProxyService, hub) -> None:
    mesh = service.forwarder.mesh
    served = sum(len(b) for b in TINY.values()) + sum(len(b) for b in PRIVATE.values())
    assert mesh.bytes_served == served  # every file's bytes through the mesh, once
    assert not any("/api/" in record.url for record in mesh.records)
    assert hub.stats.cdn_hits["model.safetensors"] == 1
    assert TOKEN not in repr(mesh.records)
    assert mesh.authorized_requests >= 1  # the private repo's token, for the origin only
    assert not any(r.authorized for r in hub.stats.log if r.server == "cdn")


async def test_snapshot_download_through_https_proxy(proxy, hub, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text(proxy.ca.path.read_text())  # the proxy's CA only: nothing tunnelled
    (tmp_path / "no-certs").mkdir()
    env = _base_env(tmp_path, hub.endpoint)
    env.update({name: str(bundle) for name in CA_VARIABLES})
    env.update(SSL_CERT_DIR=str(tmp_path / "no-certs"), NO_PROXY="", no_proxy="")
    env["HTTPS_PROXY"] = f"http://127.0.0.1:{proxy.proxy.port}"
    cache = tmp_path / "cache"

    results = await _run_client(env, _calls(cache))

    _assert_downloads(results, cache)
    _assert_mesh(proxy, hub)
    assert "proxy GET https://" in caplog.text  # requests were logged, the token never
    assert TOKEN not in caplog.text
    heads = [r for r in hub.stats.log if r.method == "HEAD"]
    assert heads  # metadata went to the hub itself, not to the mesh
    (cdn_get,) = [r for r in proxy.forwarder.mesh.records if r.url.startswith(hub.cdn.base_url)]
    assert cdn_get.linked is not None  # the hub's HEAD answer names the CDN URL's content
    assert cdn_get.linked.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert cdn_get.linked.size == len(WEIGHTS)
    assert cdn_get.linked.commit == REPOS[0].refs["main"]
    assert cdn_get.linked.resolve_url.endswith(
        "/acme/tiny/resolve/" + REPOS[0].refs["main"] + "/model.safetensors"
    )


async def test_snapshot_download_through_the_mirror_endpoint(proxy, hub, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    mirror = f"http://127.0.0.1:{proxy.mirrors[0].port}"
    cache = tmp_path / "cache"

    results = await _run_client(_base_env(tmp_path, mirror), _calls(cache))

    _assert_downloads(results, cache)
    _assert_mesh(proxy, hub)
    assert (
        hub.stats.requests["GET /api/tree"] >= 3
    )  # tiny: 2 pages (the Link rewritten), private: 1
    assert "proxy HEAD https://" in caplog.text
    assert TOKEN not in caplog.text
