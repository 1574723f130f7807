"""damselfly as a drop-in for huggingface_hub: the same script, run once with
``huggingface_hub`` and once with ``damselfly`` in its place (child processes, clean
environments, each with its own cache), against ``HfTestHub``: same return values, same
files, same exception classes caught; then again with ``HF_HUB_OFFLINE=1`` and with the hub
down (its endpoint a closed port), both answering from what each one cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import damselfly
from damselfly.demo.hub_repos import HubRepo
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.olah import OlahServer, build_mirror_repo, olah_available

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
)

WEIGHTS = hashlib.sha256(b"dropin").digest() * 40_000  # 1.28 MB: LFS, served by the CDN
FILES = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": WEIGHTS,
    "sub/dir/deep.bin": WEIGHTS[::-1],
    "sub/notes.txt": b"notes\n",
}
TOKEN = "hf_dropin_token_0123456789"
REPOS = [
    HubRepo("acme/tiny", FILES, lfs_threshold=1024 * 1024, tags={"v1": "main"}),
    HubRepo("acme/data", {"train.csv": b"a,b\n"}, repo_type="datasets"),
    HubRepo("acme/gated", {"a.txt": b"g"}, gated=True, allowed_tokens={TOKEN}),
]

CHILD = r"""
import builtins, importlib, json, os, sys
import huggingface_hub.errors as E
api = importlib.import_module(sys.argv[1])
NAMES = ["RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
         "RemoteEntryNotFoundError", "GatedRepoError", "LocalEntryNotFoundError",
         "IncompleteSnapshotError",
         "HfHubHTTPError", "DryRunError", "OSError", "ValueError"]
def kinds(error):
    return [n for n in NAMES if isinstance(error, getattr(E, n, None) or getattr(builtins, n))]
FIELDS = ("commit_hash", "file_size", "filename", "local_path", "is_cached", "will_download")
def plain(value):
    if isinstance(value, list):
        return sorted((plain(v) for v in value), key=lambda v: v[3])
    if hasattr(value, "will_download"):
        return [type(value).__name__] + [getattr(value, f) for f in FIELDS]
    return value
out = {}
for name, call in json.loads(sys.argv[2]).items():
    fn = getattr(api, call.pop("fn"))
    try:
        out[name] = {"value": plain(fn(**call))}
    except Exception as error:
        out[name] = {"caught": kinds(error)}
print(json.dumps(out).replace(os.environ["ROOT"], "<root>"))
"""

ONLINE = {
    "snapshot": {"fn": "snapshot_download", "repo_id": "acme/tiny"},
    "tag": {"fn": "snapshot_download", "repo_id": "acme/tiny", "revision": "v1"},
    "file": {"fn": "hf_hub_download", "repo_id": "acme/tiny", "filename": "config.json"},
    "subfolder": {
        "fn": "hf_hub_download",
        "repo_id": "acme/tiny",
        "filename": "deep.bin",
        "subfolder": "sub/dir",
        "local_dir": "<root>/local",
    },
    "patterns": {
        "fn": "snapshot_download",
        "repo_id": "acme/tiny",
        "allow_patterns": ["sub/*"],
        "ignore_patterns": "*.bin",
        "local_dir": "<root>/patterns",
    },
    "dry_run": {"fn": "snapshot_download", "repo_id": "acme/tiny", "dry_run": True},
    "dry_run_file": {
        "fn": "hf_hub_download",
        "repo_id": "acme/data",
        "filename": "train.csv",
        "repo_type": "dataset",
        "dry_run": True,
    },
    "no_repo": {"fn": "snapshot_download", "repo_id": "acme/nope"},
    "no_file": {"fn": "hf_hub_download", "repo_id": "acme/tiny", "filename": "missing.bin"},
    "no_revision": {"fn": "snapshot_download", "repo_id": "acme/tiny", "revision": "v9"},
    "gated": {"fn": "hf_hub_download", "repo_id": "acme/gated", "filename": "a.txt"},
    "gated_ok": {
        "fn": "hf_hub_download",
        "repo_id": "acme/gated",
        "filename": "a.txt",
        "token": TOKEN,
    },
    "local_only_missing": {
        "fn": "snapshot_download",
        "repo_id": "acme/data",
        "repo_type": "dataset",
        "local_files_only": True,
    },
    "local_only_cached": {
        "fn": "hf_hub_download",
        "repo_id": "acme/tiny",
        "filename": "config.json",
        "local_files_only": True,
    },
    "force": {
        "fn": "hf_hub_download",
        "repo_id": "acme/tiny",
        "filename": "config.json",
        "force_download": True,
        "headers": {"X-Test": "1"},
        "user_agent": {"suite": "dropin"},
        "library_name": "tests",
        "etag_timeout": 5,
    },
}
CACHED = {
    "snapshot": ONLINE["snapshot"],
    "tag": ONLINE["tag"],
    "file": ONLINE["file"],
    "subfolder": ONLINE["subfolder"],
    "local_dir": {"fn": "snapshot_download", "repo_id": "acme/tiny", "local_dir": "<root>/local"},
    "not_cached": {"fn": "snapshot_download", "repo_id": "acme/data", "repo_type": "dataset"},
    "file_not_cached": {"fn": "hf_hub_download", "repo_id": "acme/tiny", "filename": "nope.txt"},
    "dry_run": ONLINE["dry_run"],
}

INCOMPLETE = {
    "whole": ONLINE["snapshot"],
    "selected": {"fn": "snapshot_download", "repo_id": "acme/tiny", "allow_patterns": "*.json"},
    "file": ONLINE["file"],
}


@pytest.fixture
async def hub() -> AsyncIterator[HfTestHub]:
    async with HfTestHub(REPOS) as test_hub:
        yield test_hub


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def run_script(module: str, root: Path, endpoint: str, calls: dict, **env: str) -> dict:
    text = json.dumps(calls).replace("<root>", str(root))
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "ROOT": str(root),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_CACHE": str(root / "cache"),
        "DAMSELFLY_STORAGE_DIR": str(root / "store"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, module, text, env=child_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, stderr.decode()[-3000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def tree_bytes(root: Path) -> dict[str, bytes]:
    found = (p for p in root.rglob("*") if p.is_file() and "home" not in p.parts)
    kept = (p for p in found if "store" not in p.relative_to(root).parts[:1])
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(kept)}


def without_tree_cache(files: dict[str, bytes]) -> dict[str, bytes]:
    """huggingface_hub 2.x leaves lock files (``.locks/``) and a ``CACHEDIR.TAG``; damselfly
    does not. Local-dir metadata holds a timestamp. Each commit's listing (``trees/``) is
    compared: both write it, byte for byte the same."""
    skipped = ("/.cache/huggingface/download/", "/.locks/", "/CACHEDIR.TAG")
    return {k: v for k, v in files.items() if not any(s in f"/{k}" for s in skipped)}


async def test_same_script_same_results_online_offline_and_hub_down(hub, tmp_path):
    theirs, ours = tmp_path / "hf", tmp_path / "ds"
    results = [
        await run_script(name, root, hub.endpoint, ONLINE)
        for name, root in (("huggingface_hub", theirs), ("damselfly", ours))
    ]
    assert results[1] == results[0]
    assert results[0]["no_repo"]["caught"][0] == "RepositoryNotFoundError"
    assert without_tree_cache(tree_bytes(ours)) == without_tree_cache(tree_bytes(theirs))
    trees = sorted(k.split("/")[0] for k in tree_bytes(ours) if "/trees/" in k)
    assert trees == ["cache", "patterns"]  # the cache's, and the local dir's of a snapshot

    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": closed_port_url()}):
        endpoint = env.pop("HF_ENDPOINT", hub.endpoint)
        offline = [
            await run_script(name, root, endpoint, CACHED, **env)
            for name, root in (("huggingface_hub", theirs), ("damselfly", ours))
        ]
        assert offline[1] == offline[0], env
        assert offline[0]["snapshot"] == results[0]["snapshot"]
        assert "LocalEntryNotFoundError" in offline[0]["not_cached"]["caught"]

    for root in (theirs, ours):  # as an interrupted download leaves a snapshot
        snapshot = Path(results[0]["snapshot"]["value"].replace("<root>", str(root)))
        (snapshot / "sub" / "notes.txt").unlink()
    offline = {"HF_HUB_OFFLINE": "1", "DAMSELFLY_STORAGE_DIR": str(tmp_path / "empty-store")}
    partial = [
        await run_script(name, root, hub.endpoint, INCOMPLETE, **offline)
        for name, root in (("huggingface_hub", theirs), ("damselfly", ours))
    ]
    assert partial[1] == partial[0]
    assert "IncompleteSnapshotError" in partial[0]["whole"]["caught"]
    assert partial[0]["selected"] == results[0]["snapshot"]
    # Beyond huggingface_hub: with the piece store that holds the file, it comes back.
    restored = await run_script("damselfly", ours, hub.endpoint, INCOMPLETE, HF_HUB_OFFLINE="1")
    assert restored["whole"] == results[0]["snapshot"]


@pytest.mark.parametrize("name", ["snapshot_download", "hf_hub_download"])
def test_signature_takes_every_huggingface_hub_parameter(name):
    import huggingface_hub

    theirs = inspect.signature(getattr(huggingface_hub, name)).parameters
    ours = inspect.signature(getattr(damselfly, name)).parameters
    for param in theirs.values():
        assert param.name in ours, f"huggingface_hub's {name} takes {param.name}"
        mine = ours[param.name]
        assert (mine.kind, mine.default) == (param.kind, param.default), param.name
    extra = [p for p in ours.values() if p.name not in theirs]
    assert all(p.kind is p.KEYWORD_ONLY and p.default is None for p in extra)
    assert list(ours)[: len(theirs)] == list(theirs)


OLAH_CALLS = {
    "snapshot": {"fn": "snapshot_download", "repo_id": "acme/tiny"},
    "file": {"fn": "hf_hub_download", "repo_id": "acme/tiny", "filename": "sub/notes.txt"},
    "patterns": {
        "fn": "snapshot_download",
        "repo_id": "acme/tiny",
        "allow_patterns": "*.json",
        "local_dir": "<root>/patterns",
    },
}
# Not compared on olah: a missing file. olah answers a HEAD of it at a branch with 401
# RepoNotFound and at a commit with 404 EntryNotFound, and which one each client gets depends
# on what olah and the client cached before (HfTestHub answers as the Hub does: tests above).


@pytest.mark.slow
@pytest.mark.skipif(not olah_available(), reason="olah (PyPI) or git not installed")
async def test_same_script_same_results_against_olah(tmp_path):
    """The same script against a real olah mirror: same values and files; then offline, both
    answer from what they cached."""
    mirrors, work = tmp_path / "mirrors", tmp_path / "olah"
    work.mkdir()
    build_mirror_repo(mirrors, "acme/tiny", FILES, lfs_threshold=1024 * 1024)
    theirs, ours = tmp_path / "hf", tmp_path / "ds"
    async with OlahServer(mirrors, work) as olah:
        results = [
            await run_script(name, root, olah.endpoint, OLAH_CALLS)
            for name, root in (("huggingface_hub", theirs), ("damselfly", ours))
        ]
    assert results[1] == results[0]
    assert without_tree_cache(tree_bytes(ours)) == without_tree_cache(tree_bytes(theirs))
    snapshot = Path(results[0]["snapshot"]["value"].replace("<root>", str(ours)))
    assert {p: (snapshot / p).read_bytes() for p in FILES} == FILES
    calls = {k: OLAH_CALLS[k] for k in ("snapshot", "file")}
    offline = [
        await run_script(name, root, closed_port_url(), calls, HF_HUB_OFFLINE="1")
        for name, root in (("huggingface_hub", theirs), ("damselfly", ours))
    ]
    assert offline[1] == offline[0] == {k: results[0][k] for k in calls}
