"""The real modelscope SDK through the mirror endpoint (``MODELSCOPE_ENDPOINT``) and through
the proxy (``HTTP_PROXY``; the test hub speaks plain HTTP).

Files over 1 MiB take the SDK's parallel ranged path, so the mesh answers ``Range`` requests
(206 + ``Content-Range``) as well as whole files.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from damselfly.config.proxy import HubMirror, ProxyRule, ProxySettings
from damselfly.daemon.proxy.service import ProxyService
from damselfly.daemon.proxy.upstream import DirectFetcher
from damselfly.testing.hub_clients import run_modelscope_sdk
from damselfly.testing.ms_hub import MsRepo, MsTestHub
from damselfly.testing.proxy import RecordingMeshFetcher

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("modelscope") is None, reason="the modelscope SDK is not installed"
)

BIG = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(70_000))  # 2.1 MiB
TINY = {"config.json": b'{"hidden_size": 8}\n', "weights/big.bin": BIG}
SECRET = {"model.bin": b"private bytes"}
TOKEN = "ms-proxy-secret-token"

CHILD = """
import json, sys
from modelscope.hub.snapshot_download import snapshot_download
out = {"tiny": snapshot_download("acme/tiny"), "secret": snapshot_download("acme/secret")}
sys.stdout.write("RESULT " + json.dumps(out) + "\\n")
"""


@pytest.fixture
async def hub():
    repos = {"acme/tiny": MsRepo(TINY), "acme/secret": MsRepo(SECRET, private=True)}
    async with MsTestHub(repos, token=TOKEN) as test_hub:
        yield test_hub


@pytest.fixture
async def proxy(hub, tmp_path):
    settings = ProxySettings(
        listen="127.0.0.1:0",
        proxies=[ProxyRule(regx=f"^{hub.endpoint}/", name="modelscope")],
        mirrors=[HubMirror(listen="127.0.0.1:0", upstream=hub.endpoint, hub="modelscope")],
    )
    service = ProxyService(settings, data_dir=tmp_path / "daemon")
    service.use_mesh(RecordingMeshFetcher(DirectFetcher(service.upstream)))
    async with service:
        yield service


async def _run_sdk(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    result: dict[str, str] = await run_modelscope_sdk(CHILD, tmp_path, endpoint, TOKEN, **extra)
    return result


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _check(result: dict[str, str], service: ProxyService) -> None:
    assert _tree(Path(result["tiny"])) == TINY
    assert _tree(Path(result["secret"])) == SECRET
    mesh = service.forwarder.mesh
    assert mesh.bytes_served == sum(map(len, TINY.values())) + len(SECRET["model.bin"])
    assert any(record.byte_range is not None for record in mesh.records)  # the ranged path
    assert all("FilePath=" in record.url for record in mesh.records)
    assert TOKEN not in repr(mesh.records)


@pytest.mark.slow
async def test_modelscope_sdk_through_the_mirror_endpoint(hub, proxy, tmp_path):
    mirror = f"http://127.0.0.1:{proxy.mirrors[0].port}"
    _check(await _run_sdk(tmp_path, mirror), proxy)


@pytest.mark.slow
async def test_modelscope_sdk_through_the_proxy(hub, proxy, tmp_path):
    address = f"http://127.0.0.1:{proxy.proxy.port}"
    result = await _run_sdk(tmp_path, hub.endpoint, HTTP_PROXY=address, http_proxy=address)
    _check(result, proxy)
    assert ("modelscope", "mesh") in proxy.statistics.requests
