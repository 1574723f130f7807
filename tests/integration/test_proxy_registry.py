"""The OCI registry mirror with Debian's real ``docker-registry`` and ``skopeo``.

The test builds an OCI image layout (a random layer, a config, a manifest), pushes it to a
``docker-registry`` on a loopback port with ``skopeo copy``, then pulls it twice through the
mirror (a ``ProxyService`` whose content goes through ``EngineFetcher`` into a store): both
pulls give the same blobs, and the registry served each blob's bytes once (its access log;
the mesh reads a blob in piece ranges).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from damselfly.config.proxy import ProxySettings, RegistryMirror
from damselfly.daemon.proxy.engine_fetcher import EngineFetcher
from damselfly.daemon.proxy.service import ProxyService
from damselfly.daemon.proxy.upstream import DirectFetcher
from damselfly.download.jobs import SourceFiller
from damselfly.storage.store import Store
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.oci_registry import (
    ContainerdPuller,
    blob_bytes_served,
    free_port,
    oci_layout,
    run_command,
    serve_registry,
)

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(
    REGISTRY is None or SKOPEO is None, reason="docker-registry and skopeo not installed"
)
LAYER_FILE = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(200_000))  # 6.4 MB


@pytest.fixture
async def registry(tmp_path):
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry-data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    assert REGISTRY is not None
    async with serve_registry(REGISTRY, config, port) as url:
        yield url, config.with_suffix(".log")


@pytest.fixture
async def mirror(registry, tmp_path):
    url, _ = registry
    settings = ProxySettings(
        enabled=False, registry_mirrors=[RegistryMirror(listen="127.0.0.1:0", upstream=url)]
    )
    with Store(tmp_path / "store") as store:
        service = ProxyService(settings, data_dir=tmp_path / "daemon")
        async with EngineFetcher(store, SourceFiller(), DirectFetcher(service.upstream)) as mesh:
            service.use_mesh(mesh)
            async with service:
                yield service, mesh


def _blob_bytes_served(log_path: Path, digest: str) -> int:
    return blob_bytes_served(log_path, "test/img", digest)


async def test_skopeo_pulls_through_the_mirror_each_blob_read_once(registry, mirror, tmp_path):
    url, log_path = registry
    service, mesh = mirror
    layout = tmp_path / "image"
    digests = oci_layout(layout, LAYER_FILE)
    host = url.removeprefix("http://")
    await run_command(SKOPEO, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
               f"docker://{host}/test/img:v1")  # fmt: skip
    mirror_host = service.registry_addresses[0]
    pulled = []
    for index in range(2):
        out = tmp_path / f"pulled-{index}"
        await run_command(SKOPEO, "copy", "--src-tls-verify=false",
                   f"docker://{mirror_host}/test/img:v1", f"oci:{out}:v1")  # fmt: skip
        pulled.append(out)
    for digest in digests:
        hex_digest = digest.removeprefix("sha256:")
        for out in pulled:
            data = (out / "blobs" / "sha256" / hex_digest).read_bytes()
            assert hashlib.sha256(data).hexdigest() == hex_digest
        size = len((pulled[0] / "blobs" / "sha256" / hex_digest).read_bytes())
        assert _blob_bytes_served(log_path, digest) == size, digest  # second pull: the store
    assert mesh.outcomes["mesh"] >= 2 * len(digests)


async def test_ns_picks_the_registry_and_errors_are_relayed(mirror):
    service, _ = mirror
    base = f"http://{service.registry_addresses[0]}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v2/") as response:
            assert response.status == 200
        async with session.get(f"{base}/v2/none/manifests/v1") as response:
            assert response.status == 404  # the registry's own answer
            assert "UNKNOWN" in await response.text()
        async with session.get(f"{base}/v2/?ns=bad%20host") as response:
            assert response.status == 400
        async with session.delete(f"{base}/v2/x/manifests/v1") as response:
            assert response.status == 405


CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")


@pytest.mark.skipif(CONTAINERD is None or CTR is None, reason="containerd not installed")
async def test_containerd_on_two_nodes_pulls_through_hosts_toml_each_blob_read_once(
    registry, tmp_path
):
    """Two real dfdaemons (scheduler, seed) with their proxies; on each node a real
    containerd pulls through ``hosts.toml`` written by ``damselfly containerd-config``
    pointing at that node's proxy port (which answers ``/v2/`` as the registry mirror)."""
    url, log_path = registry
    host = url.removeprefix("http://")
    layout = tmp_path / "image"
    digests = oci_layout(layout, LAYER_FILE)
    await run_command(SKOPEO, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
               f"docker://{host}/test/img:v1")  # fmt: skip
    mirror = {"listen": "127.0.0.1:0", "upstream": url, "namespaces": {host: url}}
    env = {"DAMSELFLY_DAEMON_PROXY": json.dumps({"registry_mirrors": [mirror]})}
    with ContainerdPuller(tmp_path) as puller:
        async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env) as cluster:
            for node in cluster.peers:
                mirror_url = f"http://{node.ready['proxy']}"
                await puller.pull(host, mirror_url, f"{host}/test/img:v1", digests)
            for digest in digests:
                size = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat()
                assert _blob_bytes_served(log_path, digest) == size.st_size, digest
            metrics = await cluster.metrics(cluster.peers[1])
            assert metrics["damselfly_daemon_peer_bytes_total"] >= len(LAYER_FILE) // 2
