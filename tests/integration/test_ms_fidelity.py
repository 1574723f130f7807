"""Fidelity of MsTestHub: the real ``modelscope`` SDK downloads from it, byte for byte.

The SDK runs in a child process with a clean environment (no proxies, HOME and
MODELSCOPE_CACHE in a temp dir), pointed at the hub with MODELSCOPE_ENDPOINT. The test also
pins the cache layout the SDK writes, which damselfly's ModelScope cache writer must match.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

from damselfly.testing.hub_clients import run_modelscope_sdk
from damselfly.testing.ms_hub import MsRepo, MsTestHub

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("modelscope") is None, reason="the modelscope SDK is not installed"
)


def pseudo_random(length: int, seed: bytes) -> bytes:
    blocks = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(length // 32 + 1))
    return b"".join(blocks)[:length]


BIG = pseudo_random(2 * 1024 * 1024 + 123, b"big")  # > 1 MiB: the SDK's ranged path below
TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "README.md": b"# tiny\n",
    "weights/big.bin": BIG,
    "sub/dir/x.txt": b"nested\n",
    "docs/read me \u00fc.txt": b"quoted name\n",
}
TAGGED = {"config.json": b'{"hidden_size": 4}\n', "README.md": b"# old\n"}
SECRET = {"model.bin": b"private bytes"}
DATASET = {f"data/part-{i:03d}.csv": f"row,{i}\n".encode() for i in range(205)}  # 2 pages
TOKEN = "ms-fidelity-token"

CHILD = """
import json, sys
from modelscope.hub.snapshot_download import snapshot_download, dataset_snapshot_download
from modelscope.hub.file_download import model_file_download
out = {
    "snapshot": snapshot_download("acme/tiny"),
    "snapshot_tag": snapshot_download("acme/tiny", revision="v1.0"),
    "file": model_file_download("acme/tiny", "weights/big.bin", revision="master"),
    "file_default_revision": model_file_download("acme/tiny", "config.json"),
    "private": snapshot_download("acme/secret"),
    "dataset": dataset_snapshot_download("acme/ds"),
}
sys.stdout.write("RESULT " + json.dumps(out) + "\\n")
"""


async def run_sdk(hub: MsTestHub, tmp_path: Path) -> dict[str, str]:
    result: dict[str, str] = await run_modelscope_sdk(CHILD, tmp_path, hub.endpoint, TOKEN)
    return result


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
async def test_the_real_sdk_downloads_byte_identical_files(tmp_path: Path) -> None:
    repos = {
        "acme/tiny": MsRepo(TINY, tags={"v1.0": TAGGED}),
        "acme/secret": MsRepo(SECRET, private=True),
    }
    async with MsTestHub(repos, datasets={"acme/ds": DATASET}, token=TOKEN) as hub:
        result = await run_sdk(hub, tmp_path)

    cache = tmp_path / "cache"
    snapshots = cache / "models" / "acme--tiny" / "snapshots"
    assert result["snapshot"] == str(snapshots / "master")
    assert tree(snapshots / "master") == TINY
    assert result["snapshot_tag"] == str(snapshots / "v1.0")
    assert tree(snapshots / "v1.0") == TAGGED
    assert result["file"] == str(snapshots / "master" / "weights" / "big.bin")
    # Without a revision, model_file_download takes the newest tag older than the SDK release.
    assert result["file_default_revision"] == str(snapshots / "v1.0" / "config.json")
    assert result["private"] == str(cache / "models" / "acme--secret" / "snapshots" / "master")
    assert tree(Path(result["private"])) == SECRET
    assert result["dataset"] == str(cache / "datasets" / "acme--ds" / "snapshots" / "master")
    assert tree(Path(result["dataset"])) == DATASET

    check_cache_layout(cache)
    check_requests(hub)


def check_cache_layout(cache: Path) -> None:
    """Plain files under {type}s/{owner}--{name}/snapshots/{revision}/, locks, nothing else."""
    expected = {f"models/acme--tiny/snapshots/master/{p}" for p in TINY}
    expected |= {f"models/acme--tiny/snapshots/v1.0/{p}" for p in TAGGED}
    expected |= {f"models/acme--secret/snapshots/master/{p}" for p in SECRET}
    expected |= {f"datasets/acme--ds/snapshots/master/{p}" for p in DATASET}
    files = {p.relative_to(cache).as_posix() for p in cache.rglob("*") if not p.is_dir()}
    locks = {f for f in files if f.startswith(".lock/")}
    assert files - locks == expected
    assert all(re.fullmatch(r"\.lock/file_[0-9a-f]{64}\.lock", f) for f in locks), locks
    assert not any(p.is_symlink() for p in cache.rglob("*"))


def check_requests(hub: MsTestHub) -> None:
    listings = [r.path_qs for r in hub.requests_for("files")]
    assert "/api/v1/models/acme/tiny/repo/files?Revision=master&Recursive=True" in listings
    assert "/api/v1/models/acme/tiny/repo/files?Revision=v1.0&Recursive=True" in listings
    pages = [r.path_qs for r in hub.requests_for("tree")]
    assert pages == [
        f"/api/v1/datasets/acme/ds/repo/tree?Revision=master&Recursive=True"
        f"&PageNumber={n}&PageSize=200"
        for n in (1, 2)
    ]
    files = {r.path_qs for r in hub.requests_for("file")}
    assert "/api/v1/models/acme/tiny/repo?Revision=master&FilePath=docs%2Fread+me+%C3%BC.txt" in (
        files
    )
    big = "/api/v1/models/acme/tiny/repo?Revision=master&FilePath=weights%2Fbig.bin"
    ranges = sorted(r.range or "" for r in hub.requests_for("file") if r.path_qs == big)
    assert ranges == ["bytes=0-1048575", "bytes=1048576-2097151", "bytes=2097152-2097274"]
    assert hub.counters["revisions"] == 1  # model_file_download without a revision
    assert hub.counters["acceleration"] >= 1  # the SDK's region probe
    assert hub.counters["unknown"] == 0
    for request in hub.requests:
        # The token goes out as cookie m_session_id, plus a Bearer header on API calls
        # (the region probe carries only the cookie).
        bearer = None if request.route == "acceleration" else f"Bearer {TOKEN}"
        assert (request.route, request.authorization, request.session_cookie) == (
            request.route,
            bearer,
            TOKEN,
        )
