"""dfget behind a real forward proxy (``ForwardProxy``, started by the test): the hub and its
CDN are reached only through it, over plain HTTP (absolute-form requests) and over TLS
(``CONNECT`` tunnels to ``TlsHfTestHub``); ``NO_PROXY`` and the daemon's own proxy address
(127.0.0.1:65001) make it go direct."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from damselfly.demo.hub_repos import HubRepo
from damselfly.testing.forward_proxy import ForwardProxy
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.proxy import TlsHfTestHub

WEIGHTS = hashlib.sha256(b"proxy").digest() * 40_000  # LFS: served by the CDN host
FILES = {"config.json": b"{}\n", "model.safetensors": WEIGHTS}
REPO = HubRepo("acme/tiny", FILES, lfs_threshold=1024 * 1024)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as forward:
        yield forward


@pytest.fixture
def hub_dfget(dfget, tmp_path):
    proxy_names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    for name in list(dfget.env):
        if name.upper() in proxy_names or name.startswith(("HF_", "HUGGING", "DAMSELFLY_ORIG")):
            del dfget.env[name]
    dfget.env["HOME"] = str(tmp_path / "home")
    return dfget


async def fetch(dfget, tmp_path, endpoint: str, name: str):
    dfget.env["HF_ENDPOINT"] = endpoint
    out = tmp_path / name
    args = ("hf://acme/tiny", "-r", "-O", str(out), "--standalone", "--no-progress")
    done = await dfget.run(*args)
    assert done.code == 0, done.stderr
    assert (out / "model.safetensors").read_bytes() == WEIGHTS


async def test_plain_http_hub_only_through_the_proxy(hub_dfget, tmp_path, proxy):
    async with HfTestHub([REPO]) as hub:
        hub_dfget.env["HTTP_PROXY"] = proxy.url
        await fetch(hub_dfget, tmp_path, hub.endpoint, "a")
        hosts = {url.split("/")[2] for url in proxy.forwarded}
        assert hosts == {hub.origin.split("/")[2], hub.cdn.base_url.split("/")[2]}
        seen = len(proxy.forwarded)
        hub_dfget.env["NO_PROXY"] = "127.0.0.1"
        await fetch(hub_dfget, tmp_path, hub.endpoint, "b")
        assert len(proxy.forwarded) == seen


async def test_tls_hub_through_connect_and_never_the_daemons_own_proxy(hub_dfget, tmp_path, proxy):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    hub_dfget.env["SSL_CERT_FILE"] = str(ca_file)
    async with TlsHfTestHub([REPO], ssl_context=context) as hub:
        hub_dfget.env["HTTPS_PROXY"] = proxy.url
        await fetch(hub_dfget, tmp_path, hub.endpoint, "a")
        assert set(proxy.connects) == {hub.origin.split("/")[2], hub.cdn.base_url.split("/")[2]}
        assert proxy.forwarded == []
        tunnels = len(proxy.connects)
        hub_dfget.env["HTTPS_PROXY"] = "http://127.0.0.1:65001"  # the daemon's own: skipped
        await fetch(hub_dfget, tmp_path, hub.endpoint, "b")
        assert len(proxy.connects) == tunnels


async def test_daemon_behind_the_proxy_serves_damselfly_download(tmp_path, proxy):
    run_dir = Path(tempfile.mkdtemp(prefix="dfd-", dir="/tmp"))  # short socket path
    socket_path = run_dir / "dfdaemon.sock"
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env = {k: v for k, v in env.items() if not k.startswith(("HF_", "HUGGING", "DFGET"))}
    daemon_env = {**env, "HOME": str(tmp_path / "daemon-home"), "HTTP_PROXY": proxy.url}
    async with HfTestHub([REPO]) as hub:
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "damselfly.testing.local_api_server",
            "--socket", str(socket_path), "--storage-dir", str(tmp_path / "daemon-store"),
            stdout=asyncio.subprocess.PIPE, env=daemon_env,
        )  # fmt: skip
        try:
            assert daemon.stdout is not None
            await asyncio.wait_for(daemon.stdout.readline(), 20)
            user_env = {**env, "HOME": str(tmp_path / "home"), "HF_ENDPOINT": hub.endpoint}
            user_env["HF_HUB_CACHE"] = str(tmp_path / "cache")
            done = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "damselfly.cli.damselfly", "download", "acme/tiny",
                "-e", str(socket_path), "-q", env=user_env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(done.communicate(), 60)
            assert done.returncode == 0, stderr.decode()
        finally:
            daemon.send_signal(signal.SIGTERM)
            await asyncio.wait_for(daemon.wait(), 20)
            shutil.rmtree(run_dir, ignore_errors=True)
    snapshot = Path(stdout.decode().strip())
    assert (snapshot / "model.safetensors").read_bytes() == WEIGHTS
    hosts = {url.split("/")[2] for url in proxy.forwarded}  # the daemon went to the origin
    assert hosts == {hub.origin.split("/")[2], hub.cdn.base_url.split("/")[2]}
    assert any((tmp_path / "daemon-store").rglob("*")), "the daemon's store holds the pieces"
