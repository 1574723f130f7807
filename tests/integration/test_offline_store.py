"""Offline, the Python API answers from the piece store what the Hugging Face cache lost.

A snapshot downloaded once (cache + piece store), then broken as an interrupted or pruned
cache is (a blob gone, a whole snapshot folder gone): with ``HF_HUB_OFFLINE=1`` the files come
back from the piece store, byte for byte, without a request; with another, empty piece store
the answer is huggingface_hub's (``IncompleteSnapshotError``, ``LocalEntryNotFoundError``).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import damselfly
from damselfly.api.hf_compat import CacheMissError, IncompleteSnapshotError
from damselfly.demo.hub_repos import HubRepo
from damselfly.testing.hf_hub import HfTestHub

WEIGHTS = hashlib.sha256(b"offline-store").digest() * 40_000  # 1.28 MB: LFS
FILES = {"config.json": b'{"a": 1}\n', "model.safetensors": WEIGHTS, "sub/notes.txt": b"n\n"}
REPO = HubRepo("acme/tiny", FILES, lfs_threshold=1024 * 1024)


@pytest.fixture
async def hub() -> AsyncIterator[HfTestHub]:
    async with HfTestHub([REPO]) as test_hub:
        yield test_hub


@pytest.fixture
async def downloaded(hub, tmp_path, monkeypatch) -> Path:
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    folder = await asyncio.to_thread(
        damselfly.snapshot_download, "acme/tiny", endpoint=hub.endpoint,
        cache_dir=tmp_path / "cache", storage_dir=tmp_path / "store",
    )  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return Path(folder)


def snapshot(tmp_path: Path, store: str = "store", **kwargs) -> str:
    return str(
        damselfly.snapshot_download(
            "acme/tiny", cache_dir=tmp_path / "cache", storage_dir=tmp_path / store, **kwargs
        )
    )


def repo_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


async def test_lost_blobs_come_back_from_the_piece_store(hub, downloaded, tmp_path):
    blobs = downloaded.parent.parent / "blobs"
    for blob in blobs.iterdir():
        blob.unlink()
    requests = len(hub.stats.log)
    with pytest.raises(IncompleteSnapshotError):
        await asyncio.to_thread(snapshot, tmp_path, store="empty-store")
    assert await asyncio.to_thread(snapshot, tmp_path) == str(downloaded)
    assert repo_files(downloaded) == FILES
    assert len(hub.stats.log) == requests


async def test_a_lost_snapshot_and_a_single_file_come_back(hub, downloaded, tmp_path):
    shutil.rmtree(downloaded)
    requests = len(hub.stats.log)
    with pytest.raises(CacheMissError):
        await asyncio.to_thread(snapshot, tmp_path, store="empty-store")
    path = await asyncio.to_thread(
        damselfly.hf_hub_download, "acme/tiny", "model.safetensors",
        cache_dir=tmp_path / "cache", storage_dir=tmp_path / "store",
    )  # fmt: skip
    assert Path(path).read_bytes() == WEIGHTS
    assert path == str(downloaded / "model.safetensors")
    assert await asyncio.to_thread(snapshot, tmp_path, allow_patterns="*.json") == str(downloaded)
    assert repo_files(downloaded) == {
        "config.json": FILES["config.json"],
        **{"model.safetensors": WEIGHTS},
    }
    assert await asyncio.to_thread(snapshot, tmp_path) == str(downloaded)
    assert repo_files(downloaded) == FILES
    assert len(hub.stats.log) == requests


async def test_a_store_whose_content_no_longer_matches_restores_nothing(hub, downloaded, tmp_path):
    store = tmp_path / "store"
    for content in (
        p for p in store.rglob("*") if p.is_file() and p.stat().st_size == len(WEIGHTS)
    ):
        content.write_bytes(bytes(len(WEIGHTS)))  # the pieces no longer match their digests
    (downloaded.parent.parent / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()).unlink()
    with pytest.raises(IncompleteSnapshotError):
        await asyncio.to_thread(snapshot, tmp_path)
    assert not (downloaded / "model.safetensors").exists()
