"""The OCI registry mirror with Debian's real ``docker-registry`` and ``skopeo``.

The test builds an OCI image layout (a random layer, a config, a manifest), pushes it to a
``docker-registry`` on a loopback port with ``skopeo copy``, then pulls it twice through the
mirror (a ``ProxyService`` whose content goes through ``EngineFetcher`` into a store): both
pulls give the same blobs, and the registry served each blob's bytes once (its access log;
the mesh reads a blob in piece ranges).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import re
import shutil
import socket
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator
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
from damselfly.testing.polling import wait_until

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(
    REGISTRY is None or SKOPEO is None, reason="docker-registry and skopeo not installed"
)
LAYER_FILE = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(200_000))  # 6.4 MB


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _oci_layout(layout: Path) -> list[str]:
    """An image with one gzipped layer; returns the digests of its blobs."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("weights.bin")
        info.size = len(LAYER_FILE)
        tar.addfile(info, io.BytesIO(LAYER_FILE))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    diff_id = hashlib.sha256(tar_bytes.getvalue()).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
    }).encode()  # fmt: skip
    config_ref = {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(layout, config)}
    layer_ref = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(layout, layer)}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_ref, "layers": [layer_ref],
    }).encode()  # fmt: skip
    manifest_ref = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **_blob(layout, manifest),
                    "annotations": {"org.opencontainers.image.ref.name": "v1"}}  # fmt: skip
    (layout / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [manifest_ref]})
    )
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return [str(config_ref["digest"]), str(layer_ref["digest"])]


async def _run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return stdout.decode()


@pytest.fixture
async def registry(tmp_path):
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry-data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log_path = tmp_path / "registry.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            REGISTRY, "serve", str(config), stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"

    async def answers() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(url + "/v2/") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_until(answers, within=20)
        yield url, log_path
    finally:
        process.terminate()
        await process.wait()


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
    """Body bytes of the registry's GETs of that blob, from its access log."""
    pattern = re.compile(rf'"GET /v2/test/img/blobs/{digest} HTTP/1.1" 20[06] (\d+)')
    return sum(int(m[1]) for m in pattern.finditer(log_path.read_text(errors="replace")))


async def test_skopeo_pulls_through_the_mirror_each_blob_read_once(registry, mirror, tmp_path):
    url, log_path = registry
    service, mesh = mirror
    layout = tmp_path / "image"
    digests = _oci_layout(layout)
    host = url.removeprefix("http://")
    await _run(SKOPEO, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
               f"docker://{host}/test/img:v1")  # fmt: skip
    mirror_host = service.registry_addresses[0]
    pulled = []
    for index in range(2):
        out = tmp_path / f"pulled-{index}"
        await _run(SKOPEO, "copy", "--src-tls-verify=false",
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


@contextlib.asynccontextmanager
async def _containerd(directory: Path) -> AsyncIterator[str]:
    """A containerd of its own (root, state, socket under ``directory``); its socket."""
    socket_path = directory / "containerd.sock"
    config = directory / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{directory / "root"}"\nstate = "{directory / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket_path}"\n[ttrpc]\n  address = "{socket_path}.ttrpc"\n'
    )
    assert CONTAINERD is not None
    with (directory / "containerd.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            CONTAINERD, "--config", str(config), stdout=log, stderr=log
        )
    try:
        await wait_until(socket_path.exists, within=20)
        yield str(socket_path)
    finally:
        process.terminate()
        await process.wait()


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
    digests = _oci_layout(layout)
    await _run(SKOPEO, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
               f"docker://{host}/test/img:v1")  # fmt: skip
    mirror = {"listen": "127.0.0.1:0", "upstream": url, "namespaces": {host: url}}
    env = {"DAMSELFLY_DAEMON_PROXY": json.dumps({"registry_mirrors": [mirror]})}
    short = Path(tempfile.mkdtemp(prefix="ctd", dir="/tmp"))  # unix socket paths are short
    try:
        async with LocalCluster(tmp_path / "mesh", peers=2, seeds=1, env=env) as cluster:
            for index, node in enumerate(cluster.peers):
                certs = tmp_path / f"certs-{index}"
                written = await _run(sys.executable, "-m", "damselfly.cli.damselfly",
                                     "containerd-config", "--registry", host,
                                     "--mirror", f"http://{node.ready['proxy']}",
                                     "--dir", str(certs))  # fmt: skip
                assert host in written
                (short / str(index)).mkdir()
                async with _containerd(short / str(index)) as socket_path:
                    ctr = (CTR, "--address", socket_path)
                    await _run(*ctr, "images", "pull", "--hosts-dir", str(certs),
                               "--snapshotter", "native", f"{host}/test/img:v1")  # fmt: skip
                    for digest in digests:
                        data = await _run_bytes(*ctr, "content", "get", digest)
                        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
            for digest in digests:
                size = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).stat()
                assert _blob_bytes_served(log_path, digest) == size.st_size, digest
            metrics = await cluster.metrics(cluster.peers[1])
            assert metrics["damselfly_daemon_peer_bytes_total"] >= len(LAYER_FILE) // 2
    finally:
        shutil.rmtree(short, ignore_errors=True)


async def _run_bytes(*argv: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return stdout
