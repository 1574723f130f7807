"""Helpers for the tests with Debian's real ``docker-registry``, ``skopeo`` and ``containerd``.

``oci_layout`` builds an image (one gzipped layer holding the given bytes, a config, a
manifest) as an OCI image layout that ``skopeo copy oci:DIR:v1 docker://...`` pushes;
``serve_registry`` runs ``docker-registry serve CONFIG`` until the block ends;
``blob_bytes_served`` reads the body bytes of a blob's GETs from the registry's access log;
``ContainerdPuller`` pulls an image with a real ``containerd`` of its own through the
``hosts.toml`` that ``damselfly containerd-config`` writes for a node's mirror.
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
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

from damselfly.testing.polling import wait_until

COMMAND_TIMEOUT = 60.0  # seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(layout: Path, layer_file: bytes) -> list[str]:
    """An image with one gzipped layer (``weights.bin`` = ``layer_file``), tagged ``v1``;
    returns the digests of its blobs (config, layer)."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("weights.bin")
        info.size = len(layer_file)
        tar.addfile(info, io.BytesIO(layer_file))
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


async def run_command_bytes(*argv: str) -> bytes:
    """The command's stdout; it must exit 0 within ``COMMAND_TIMEOUT``."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout


async def run_command(*argv: str) -> str:
    return (await run_command_bytes(*argv)).decode()


@contextlib.asynccontextmanager
async def serve_registry(registry: str, config: Path, port: int) -> AsyncIterator[str]:
    """``docker-registry serve config`` (listening on ``port``), logging to ``config`` with
    the suffix ``.log``; its URL, once it answers ``/v2/`` (200, or 401 with token auth)."""
    url = f"http://127.0.0.1:{port}"
    with config.with_suffix(".log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            registry, "serve", str(config), stdout=log, stderr=log
        )

    async def answers() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(url + "/v2/") as r:
                return r.status in (200, 401)
        except aiohttp.ClientError:
            return False

    try:
        await wait_until(answers, within=20)
        yield url
    finally:
        process.terminate()
        await process.wait()


def blob_bytes_served(log_path: Path, repository: str, digest: str) -> int:
    """Body bytes of the registry's successful GETs of that blob, from its access log."""
    pattern = re.compile(rf'"GET /v2/{repository}/blobs/{digest} HTTP/1.1" 20[06] (\d+)')
    return sum(int(m[1]) for m in pattern.finditer(log_path.read_text(errors="replace")))


@contextlib.asynccontextmanager
async def run_containerd(containerd: str, directory: Path) -> AsyncIterator[str]:
    """A containerd of its own (root, state, socket under ``directory``); its socket."""
    socket_path = directory / "containerd.sock"
    config = directory / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{directory / "root"}"\nstate = "{directory / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket_path}"\n[ttrpc]\n  address = "{socket_path}.ttrpc"\n'
    )
    with (directory / "containerd.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            containerd, "--config", str(config), stdout=log, stderr=log
        )
    try:
        await wait_until(socket_path.exists, within=20)
        yield str(socket_path)
    finally:
        process.terminate()
        await process.wait()


class ContainerdPuller:
    """``pull``: on one node, ``damselfly containerd-config`` for ``registry_host`` pointing at
    the node's mirror, a fresh containerd, ``ctr images pull --hosts-dir``, and each digest's
    content checked. ``with ContainerdPuller(workdir) as puller: ...``."""

    def __init__(self, workdir: Path) -> None:
        containerd, ctr = shutil.which("containerd"), shutil.which("ctr")
        assert containerd is not None, "containerd is not installed"
        assert ctr is not None, "ctr is not installed"
        self.containerd, self.ctr, self.workdir = containerd, ctr, workdir
        self._short = Path(tempfile.mkdtemp(prefix="ctd", dir="/tmp"))  # short socket paths
        self._pulls = 0

    def __enter__(self) -> ContainerdPuller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self._short, ignore_errors=True)

    async def pull(
        self, registry_host: str, mirror: str, image: str, digests: Sequence[str]
    ) -> None:
        self._pulls += 1
        certs = self.workdir / f"certs-{self._pulls}"
        written = await run_command(sys.executable, "-m", "damselfly.cli.damselfly",
                                    "containerd-config", "--registry", registry_host,
                                    "--mirror", mirror, "--dir", str(certs))  # fmt: skip
        assert registry_host in written
        state = self._short / str(self._pulls)
        state.mkdir()
        async with run_containerd(self.containerd, state) as socket_path:
            ctr = (self.ctr, "--address", socket_path)
            await run_command(*ctr, "images", "pull", "--hosts-dir", str(certs),
                              "--snapshotter", "native", image)  # fmt: skip
            for digest in digests:
                data = await run_command_bytes(*ctr, "content", "get", digest)
                assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
