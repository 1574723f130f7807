"""damselfly.modelscope as a drop-in for the modelscope SDK: the same script run once with
``modelscope.hub`` and once with ``damselfly.modelscope`` (child processes, clean
environments, their own caches) against ``MsTestHub``: same return values, same files, same
exception classes caught (the SDK's ``requests`` ``HTTPError`` with its status, its
``CacheNotFound``); then ``local_files_only=True`` answers from each cache."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import socket
import sys
from pathlib import Path

import pytest

from damselfly.testing.ms_hub import MsRepo, MsTestHub

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("modelscope") is None, reason="no modelscope"),
    pytest.mark.slow,
]

BIG = hashlib.sha256(b"ms").digest() * 70_000  # 2.2 MB
TINY = {"config.json": b'{"a": 1}\n', "weights/big.bin": BIG, "sub/x.txt": b"x\n"}
TAGGED = {"config.json": b'{"a": 0}\n'}
SECRET = {"model.bin": b"private"}
TOKEN = "ms-dropin-token"

CHILD = r"""
import builtins, json, os, sys
if sys.argv[1] == "modelscope":
    from modelscope.hub.snapshot_download import snapshot_download
    from modelscope.hub.file_download import model_file_download
else:
    from damselfly.modelscope import snapshot_download, model_file_download
import requests.exceptions, modelscope_hub.errors
NAMES = ["FileNotFoundError", "PermissionError", "ConnectionError", "ValueError", "OSError"]
THEIRS = {"HTTPError": requests.exceptions.HTTPError,
          "CacheNotFound": modelscope_hub.errors.CacheNotFound,
          "NetworkError": modelscope_hub.errors.NetworkError}
def kinds(error):
    found = [n for n, c in THEIRS.items() if isinstance(error, c)]
    status = getattr(getattr(error, "response", None), "status_code", None)
    return found + ([status] if status else [])
out = {}
for name, call in json.loads(sys.argv[2]).items():
    fn = snapshot_download if call.pop("fn") == "snapshot" else model_file_download
    try:
        out[name] = {"value": fn(**call)}
    except Exception as error:
        out[name] = {"caught": kinds(error)}
print("RESULT " + json.dumps(out).replace(os.environ["ROOT"], "<root>"))
"""

ONLINE = {
    "snapshot": {"fn": "snapshot", "model_id": "acme/tiny"},
    "tag": {"fn": "snapshot", "model_id": "acme/tiny", "revision": "v1.0"},
    "file": {
        "fn": "file",
        "model_id": "acme/tiny",
        "file_path": "weights/big.bin",
        "revision": "master",
    },
    "secret": {"fn": "snapshot", "repo_id": "acme/secret", "token": TOKEN},
    "patterns": {
        "fn": "snapshot",
        "model_id": "acme/tiny",
        "allow_patterns": ["*.json", "sub/*"],
        "local_dir": "<root>/ld",
    },
}
ONLINE["no_repo"] = {"fn": "snapshot", "model_id": "acme/nope"}
ONLINE["no_file"] = {
    "fn": "file",
    "model_id": "acme/tiny",
    "file_path": "nope.txt",
    "revision": "master",
}
ONLINE["no_access"] = {"fn": "snapshot", "model_id": "acme/secret"}
CACHED = {
    "not_cached": {"fn": "snapshot", "model_id": "acme/other", "local_files_only": True},
    "snapshot": {**ONLINE["snapshot"], "local_files_only": True},
    "file": {**ONLINE["file"], "local_files_only": True},
}

HUB_DOWN = {"snapshot": ONLINE["snapshot"], "file": ONLINE["file"]}


async def run_script(module: str, root: Path, endpoint: str, calls: dict) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(root / "home"),
        "ROOT": str(root),
        "LANG": "C.UTF-8",
        "MODELSCOPE_ENDPOINT": endpoint,
        "MODELSCOPE_CACHE": str(root / "cache"),
        "DAMSELFLY_STORAGE_DIR": str(root / "store"),
    }
    root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(calls).replace("<root>", str(root))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, module, text, env=env, cwd=root,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(child.communicate(), 90)
    assert child.returncode == 0, stderr.decode(errors="replace")[-3000:]
    line = next(x for x in stdout.decode().splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def files_below(root: Path) -> dict[str, bytes]:
    found = (p for p in root.rglob("*") if p.is_file())
    kept = (p for p in found if ".lock" not in p.relative_to(root).parts[:1])
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in kept}


async def test_same_script_same_results(tmp_path):
    repos = {"acme/tiny": MsRepo(TINY, tags={"v1.0": TAGGED}), "acme/secret": MsRepo(SECRET)}
    repos["acme/secret"] = MsRepo(SECRET, private=True)
    async with MsTestHub(repos, token=TOKEN) as hub:
        sdk, ours = tmp_path / "sdk", tmp_path / "ds"
        got = [
            await run_script(name, root, hub.endpoint, ONLINE)
            for name, root in (("modelscope", sdk), ("damselfly", ours))
        ]
        assert got[1] == got[0]
        assert got[0]["snapshot"] == {"value": "<root>/cache/models/acme--tiny/snapshots/master"}
        cached = [
            await run_script(name, root, hub.endpoint, CACHED)
            for name, root in (("modelscope", sdk), ("damselfly", ours))
        ]
        assert cached[1] == cached[0]
        assert cached[0]["file"]["value"].endswith("/snapshots/master/weights/big.bin")
    with socket.socket() as probe:  # the hub is down: its port closed
        probe.bind(("127.0.0.1", 0))
        down_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    down = [
        await run_script(name, root, down_url, HUB_DOWN)
        for name, root in (("modelscope", sdk), ("damselfly", ours))
    ]
    assert down[1] == down[0]
    assert down[0]["snapshot"] == {"caught": ["NetworkError"]}  # the SDK falls back per file only
    assert files_below(ours / "cache") == files_below(sdk / "cache")
    assert files_below(ours / "ld") == files_below(sdk / "ld")
