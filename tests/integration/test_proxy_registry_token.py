"""Registry blobs behind token auth (docker.io's way), through the mesh on two real nodes.

Debian's real ``docker-registry`` with ``auth: token``, its realm a ``RegistryTokenServer``
that gives anonymous pull tokens for ``test/public`` and nothing for ``test/private`` (only
the user ``pusher`` may pull that). Every pull by ``skopeo`` then carries a token: an
anonymous one for the public image. Two real dfdaemons (scheduler, seed), each answering
``/v2/`` on its proxy port as the registry mirror:

- the public image, pulled anonymously on both nodes: public tasks (the registry serves the
  blobs without the client's token), each blob's bytes read from the registry once in total;
- the private image, pulled with the user's credentials: private tasks; a client with an
  anonymous token or none gets the registry's ``401`` and no byte, on the node that holds the
  blob and on its peer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from damselfly.backends.base import RequestOptions
from damselfly.backends.http import HttpBackend, RetryPolicy
from damselfly.core.digests import parse_digest
from damselfly.core.errors import SourceAuthError
from damselfly.core.ids import task_id_for_content
from damselfly.core.pieces import ByteRange, choose_piece_length
from damselfly.core.urls import parse_url
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.oci_registry import (
    ContainerdPuller,
    blob_bytes_served,
    free_port,
    oci_layout,
    run_command,
    serve_registry,
)
from damselfly.testing.registry_token import RegistryTokenServer

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(
    REGISTRY is None or SKOPEO is None, reason="docker-registry and skopeo not installed"
)
PUBLIC_FILE = b"".join(hashlib.sha256(b"p%d" % i).digest() for i in range(120_000))  # 3.8 MB
PRIVATE_FILE = b"".join(hashlib.sha256(b"q%d" % i).digest() for i in range(60_000))  # 1.9 MB
CREDENTIALS = "pusher:push-secret-0123"


@pytest.fixture
async def tokens(tmp_path):
    user, password = CREDENTIALS.split(":")
    public = frozenset({"test/public"})
    async with RegistryTokenServer(tmp_path, public=public, users={user: password}) as server:
        yield server


@pytest.fixture
async def registry(tokens, tmp_path):
    port = free_port()
    config = tmp_path / "registry.yml"
    tokens.registry_config(config, port=port, data_dir=tmp_path / "registry-data")
    assert REGISTRY is not None
    async with serve_registry(REGISTRY, config, port) as url:
        yield url, config.with_suffix(".log")


async def _push(tmp_path: Path, host: str, repository: str, data: bytes) -> list[str]:
    layout = tmp_path / f"image-{repository.replace('/', '-')}"
    digests = oci_layout(layout, data)
    await run_command(SKOPEO, "copy", "--dest-tls-verify=false", "--dest-creds", CREDENTIALS,
                      f"oci:{layout}:v1", f"docker://{host}/{repository}:v1")  # fmt: skip
    return digests


async def _pull(mirror: str, repository: str, out: Path, *creds: str) -> None:
    await run_command(SKOPEO, "copy", "--src-tls-verify=false", *creds,
                      f"docker://{mirror}/{repository}:v1", f"oci:{out}:v1")  # fmt: skip


def _size(image: Path, digest: str) -> int:
    return (image / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat().st_size


def _task(image: Path, digest: str) -> str:
    size = _size(image, digest)
    return task_id_for_content(parse_digest(digest), choose_piece_length(size))


def _assert_blobs(out: Path, digests: list[str]) -> None:
    for digest in digests:
        data = (out / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest


async def _anonymous_token(tokens: RegistryTokenServer, repository: str) -> str:
    query = {"service": "damselfly-test-registry", "scope": f"repository:{repository}:pull"}
    async with aiohttp.ClientSession() as session, session.get(tokens.realm, params=query) as r:
        token: str = (await r.json())["token"]
        return token


async def _blob_through(mirror: str, repository: str, digest: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://{mirror}/v2/{repository}/blobs/{digest}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        return r.status, await r.read()


async def test_public_blobs_with_anonymous_tokens_are_read_once_private_ones_need_access(
    registry, tokens, tmp_path
):
    url, log_path = registry
    host = url.removeprefix("http://")
    public = await _push(tmp_path, host, "test/public", PUBLIC_FILE)
    private = await _push(tmp_path, host, "test/private", PRIVATE_FILE)
    mirror = {"listen": "127.0.0.1:0", "upstream": url}
    env = {"DAMSELFLY_DAEMON_PROXY": json.dumps({"registry_mirrors": [mirror]})}
    async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env) as cluster:
        first, second = (node.ready["proxy"] for node in cluster.peers)
        anonymous_before = tokens.counters["anonymous"]
        for index, node_mirror in enumerate((first, second)):
            out = tmp_path / f"public-{index}"
            await _pull(node_mirror, "test/public", out)
            _assert_blobs(out, public)
        assert tokens.counters["anonymous"] > anonymous_before  # skopeo had anonymous tokens
        for digest in public:
            size = _size(tmp_path / "public-0", digest)
            assert blob_bytes_served(log_path, "test/public", digest) == size, digest
        metrics = await cluster.metrics(cluster.peers[1])
        assert metrics["damselfly_daemon_peer_bytes_total"] >= len(PUBLIC_FILE) // 2

        await _pull(first, "test/private", tmp_path / "private-0", "--src-creds", CREDENTIALS)
        _assert_blobs(tmp_path / "private-0", private)
        anonymous = await _anonymous_token(tokens, "test/private")  # it grants nothing there
        for node_mirror in (first, second):
            for token in (anonymous, None):
                status, body = await _blob_through(node_mirror, "test/private", private[1], token)
                assert status == 401, (node_mirror, token is None)
                assert PRIVATE_FILE[:32] not in body
                assert len(body) < 1000
        with pytest.raises(AssertionError):  # skopeo without credentials is refused too
            await _pull(second, "test/private", tmp_path / "private-refused")
        # The seed may read public blobs (with its own anonymous token; which node reads the
        # registry is the scheduler's choice), never a private one.
        seed_store = cluster.seeds[0].storage_dir / "content"
        held = {p.name for p in seed_store.rglob("*") if p.is_file()}
        assert held <= {_task(tmp_path / "public-0", digest) for digest in public}


async def test_the_http_backend_reads_public_blobs_with_its_own_anonymous_token(
    registry, tokens, tmp_path
):
    """What a seed does for a public blob task: no credentials given, the backend answers the
    registry's challenge with an anonymous token from the realm (once, then cached)."""
    url, _ = registry
    host = url.removeprefix("http://")
    public = await _push(tmp_path, host, "test/public", PUBLIC_FILE)
    private = await _push(tmp_path, host, "test/private", PRIVATE_FILE)
    layer = (tmp_path / "image-test-public" / "blobs" / "sha256" / public[1][7:]).read_bytes()
    async with contextlib.AsyncExitStack() as stack:
        backend = HttpBackend(retry=RetryPolicy(max_attempts=1))
        stack.push_async_callback(backend.aclose)
        blob = parse_url(f"{url}/v2/test/public/blobs/{public[1]}")
        before = tokens.counters["anonymous"]
        assert (await backend.stat(blob, RequestOptions())).content_length == len(layer)
        chunks = [c async for c in backend.get(blob, ByteRange(0, len(layer)), RequestOptions())]
        assert b"".join(chunks) == layer
        assert tokens.counters["anonymous"] == before + 1  # one token for stat and get

        private_blob = parse_url(f"{url}/v2/test/private/blobs/{private[1]}")
        with pytest.raises(SourceAuthError):  # an anonymous token grants nothing there
            await backend.stat(private_blob, RequestOptions())
        own = RequestOptions(headers=(("Authorization", "Bearer not-a-token"),))
        counted = dict(tokens.counters)
        with pytest.raises(SourceAuthError):  # the caller's credentials are never replaced
            await backend.stat(blob, own)
        assert dict(tokens.counters) == counted


@pytest.mark.skipif(
    shutil.which("containerd") is None or shutil.which("ctr") is None,
    reason="containerd not installed",
)
async def test_containerd_with_anonymous_tokens_on_two_nodes_each_blob_read_once(
    registry, tokens, tmp_path
):
    """containerd gets its own anonymous token from the realm (relayed challenge) and sends
    it with every blob GET to the node's mirror (``hosts.toml``); still one read per blob."""
    url, log_path = registry
    host = url.removeprefix("http://")
    public = await _push(tmp_path, host, "test/public", PUBLIC_FILE)
    mirror = {"listen": "127.0.0.1:0", "upstream": url, "namespaces": {host: url}}
    env = {"DAMSELFLY_DAEMON_PROXY": json.dumps({"registry_mirrors": [mirror]})}
    with ContainerdPuller(tmp_path) as puller:
        async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env) as cluster:
            before = tokens.counters["anonymous"]
            for node in cluster.peers:
                mirror_url = f"http://{node.ready['proxy']}"
                await puller.pull(host, mirror_url, f"{host}/test/public:v1", public)
            assert tokens.counters["anonymous"] > before
            for digest in public:
                size = _size(tmp_path / "image-test-public", digest)
                assert blob_bytes_served(log_path, "test/public", digest) == size, digest
