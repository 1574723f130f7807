"""``damselfly.snapshot_download`` / ``damselfly.hf_hub_download`` against ``HfTestHub``.

The API is synchronous, and the hub runs in this test's event loop, so every call goes through
``asyncio.to_thread`` (a thread without a loop: the API runs its own). One test calls it from a
thread whose loop is running, the notebook case. The real ``huggingface_hub`` (a child process,
clean environment) says which paths it would have returned and loads our cache offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import damselfly
from damselfly.core.errors import (
    InvalidUrlError,
    SourceAuthError,
    SourceNotFoundError,
    UsageError,
)
from damselfly.demo.hub_repos import HubRepo
from damselfly.testing.hf_hub import HfTestHub

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
)

WEIGHTS = hashlib.sha256(b"api").digest() * 40_000  # 1.28 MB: LFS (served by the CDN)
TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": WEIGHTS,
    "sub/dir/deep.bin": WEIGHTS[::-1],
    "sub/notes.txt": b"notes\n",
}
PR = {"config.json": b'{"hidden_size": 2}\n'}
DATA = {"data/train.csv": b"a,b\n1,2\n"}
TOKEN = "hf_api_secret_0123456789"
REPO = HubRepo("acme/tiny", TINY, branches={"refs/pr/1": PR}, lfs_threshold=1024 * 1024)
COMMIT, PR_COMMIT = REPO.refs["main"], REPO.refs["refs/pr/1"]

CHILD = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
results = {}
for name, call in json.loads(sys.argv[1]).items():
    fn = snapshot_download if call.pop("fn") == "snapshot" else hf_hub_download
    results[name] = fn(**call)
print(json.dumps(results))
"""


@pytest.fixture
async def hub(monkeypatch, tmp_path) -> AsyncIterator[HfTestHub]:
    repos = [
        REPO,
        HubRepo("acme/data", DATA, repo_type="datasets"),
        HubRepo("acme/private", {"a.txt": b"secret"}, private=True, allowed_tokens={TOKEN}),
    ]
    async with HfTestHub(repos) as test_hub:
        for name in list(os.environ):
            if name.startswith(("HF_", "HUGGING")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("HF_ENDPOINT", test_hub.endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("DAMSELFLY_STORAGE_DIR", str(tmp_path / "store"))
        yield test_hub


async def call(fn, *args, **kwargs) -> str:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def huggingface_hub(tmp_path: Path, endpoint: str, calls: dict, **env: str) -> dict:
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "child-home"),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        json.dumps(calls),
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def tree_bytes(root: Path) -> dict[str, bytes]:
    files = (p for p in root.rglob("*") if p.is_file())
    found = (p for p in files if ".cache" not in p.relative_to(root).parts)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(found)}


async def test_paths_are_huggingface_hubs_and_load_offline(hub, tmp_path):
    ours = tmp_path / "cache"
    snapshot = await call(damselfly.snapshot_download, "acme/tiny")
    deep = await call(damselfly.hf_hub_download, "acme/tiny", "deep.bin", subfolder="sub/dir")
    pr = await call(damselfly.hf_hub_download, "acme/tiny", "config.json", revision="refs/pr/1")
    data = await call(damselfly.snapshot_download, "acme/data", repo_type="dataset")

    theirs = tmp_path / "theirs"
    calls = {
        "snapshot": {"fn": "snapshot", "repo_id": "acme/tiny"},
        "deep": {"fn": "file", "repo_id": "acme/tiny", "filename": "deep.bin"},
        "pr": {"fn": "file", "repo_id": "acme/tiny", "filename": "config.json"},
        "data": {"fn": "snapshot", "repo_id": "acme/data", "repo_type": "dataset"},
    }
    calls["deep"]["subfolder"] = "sub/dir"
    calls["pr"]["revision"] = "refs/pr/1"
    expected = await huggingface_hub(tmp_path, hub.endpoint, calls, HF_HUB_CACHE=str(theirs))
    assert_same_place(snapshot, ours, expected["snapshot"], theirs)
    assert_same_place(deep, ours, expected["deep"], theirs)
    assert_same_place(pr, ours, expected["pr"], theirs)
    assert_same_place(data, ours, expected["data"], theirs)
    assert snapshot == str(ours.resolve() / "models--acme--tiny/snapshots" / COMMIT)
    assert tree_bytes(Path(snapshot)) == TINY
    assert Path(pr).read_bytes() == PR["config.json"]
    assert tree_bytes(Path(data)) == DATA

    before = len(hub.stats.log)
    offline = await huggingface_hub(
        tmp_path, hub.endpoint, calls, HF_HUB_CACHE=str(ours), HF_HUB_OFFLINE="1"
    )
    assert (offline["snapshot"], offline["deep"], offline["pr"]) == (snapshot, deep, pr)
    assert len(hub.stats.log) == before


def assert_same_place(ours: str, our_cache: Path, theirs: str, their_cache: Path) -> None:
    assert Path(ours).relative_to(our_cache.resolve()) == Path(theirs).relative_to(
        their_cache.resolve()
    )


async def test_local_dir_and_patterns_like_huggingface_hub(hub, tmp_path):
    local = tmp_path / "local"
    got = await call(
        damselfly.snapshot_download,
        "acme/tiny",
        local_dir=local,
        allow_patterns=["*.json", "sub/"],
        ignore_patterns="*.txt",
    )
    one = await call(damselfly.hf_hub_download, "acme/tiny", "sub/notes.txt", local_dir=local)
    ref = tmp_path / "ref"
    calls = {
        "got": {
            "fn": "snapshot",
            "repo_id": "acme/tiny",
            "local_dir": str(ref),
            "allow_patterns": ["*.json", "sub/"],
            "ignore_patterns": "*.txt",
        },
        "one": {"fn": "file", "repo_id": "acme/tiny", "filename": "sub/notes.txt"},
    }
    calls["one"]["local_dir"] = str(ref)
    theirs = await huggingface_hub(tmp_path, hub.endpoint, calls)
    assert (got, one) == (str(local.resolve()), str(local.resolve() / "sub/notes.txt"))
    assert (theirs["got"], theirs["one"]) == (str(ref.resolve()), str(ref / "sub/notes.txt"))
    assert tree_bytes(local) == tree_bytes(ref)
    assert set(tree_bytes(local)) == {"config.json", "sub/dir/deep.bin", "sub/notes.txt"}
    metadata = local / ".cache/huggingface/download/sub/notes.txt.metadata"
    assert metadata.read_text().splitlines()[0] == COMMIT

    deep_hits, small_gets = (
        hub.stats.cdn_hits["sub/dir/deep.bin"],
        hub.stats.requests["GET /resolve"],
    )
    again = await call(damselfly.snapshot_download, "acme/tiny", local_dir=local)
    assert again == str(local.resolve())
    assert tree_bytes(local) == TINY
    assert hub.stats.cdn_hits["sub/dir/deep.bin"] == deep_hits  # already there: kept
    assert hub.stats.cdn_hits["model.safetensors"] == 1  # the one new LFS file
    assert hub.stats.requests["GET /resolve"] == small_gets  # small files: all current


async def test_nothing_matched_still_returns_the_snapshot_folder(hub, tmp_path):
    got = await call(damselfly.snapshot_download, "acme/tiny", allow_patterns="*.nothing")
    assert got == str((tmp_path / "cache").resolve() / "models--acme--tiny/snapshots" / COMMIT)
    assert (tmp_path / "cache/models--acme--tiny/refs/main").read_text() == COMMIT


async def test_tokens_explicit_from_env_and_refused(hub, tmp_path, monkeypatch):
    got = await call(damselfly.hf_hub_download, "acme/private", "a.txt", token=TOKEN)
    assert Path(got).read_bytes() == b"secret"
    with pytest.raises(SourceNotFoundError, match="set --hf-token or HF_TOKEN"):
        await call(damselfly.snapshot_download, "acme/private", cache_dir=tmp_path / "c2")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert Path(await call(damselfly.snapshot_download, "acme/private")).is_dir()
    empty = tmp_path / "c3"  # with the snapshot cached, huggingface_hub answers from the cache
    with pytest.raises(FileNotFoundError):  # token=False: sent none, though HF_TOKEN is set
        await call(damselfly.snapshot_download, "acme/private", token=False, cache_dir=empty)
    with pytest.raises(SourceAuthError):
        await call(damselfly.snapshot_download, "acme/private", token="hf_wrong", cache_dir=empty)
    cached = await call(damselfly.snapshot_download, "acme/private", token=False)
    assert Path(cached, "a.txt").read_bytes() == b"secret"
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UsageError, match="no token found"):
        await call(damselfly.snapshot_download, "acme/tiny", token=True)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "error", "words"),
    [
        ("snapshot_download", ("acme/nope",), {}, FileNotFoundError, "acme/nope"),
        ("hf_hub_download", ("acme/tiny", "missing.bin"), {}, FileNotFoundError, "missing.bin"),
        ("snapshot_download", ("acme/tiny",), {"revision": "v9"}, FileNotFoundError, "v9"),
        ("snapshot_download", ("gpt2",), {}, ValueError, "owner"),
        ("snapshot_download", ("acme/tiny",), {"repo_type": "bucket"}, ValueError, "bucket"),
        ("hf_hub_download", ("acme/tiny", "../x"), {}, InvalidUrlError, "segments"),
    ],
)
async def test_errors_are_typed_and_subclass_builtins(
    hub, tmp_path, fn, args, kwargs, error, words
):
    with pytest.raises(error, match=words):
        await call(getattr(damselfly, fn), *args, **kwargs)
    assert not (tmp_path / "cache").exists()


async def test_called_inside_a_running_event_loop(hub, tmp_path):
    async def notebook_cell() -> str:
        return damselfly.hf_hub_download("acme/tiny", "config.json")  # blocking, like hf's

    got = await asyncio.to_thread(asyncio.run, notebook_cell())
    assert Path(got).read_bytes() == TINY["config.json"]


def test_import_damselfly_stays_light():
    heavy = "{'damselfly.api', 'aiohttp'}"
    code = f"import damselfly, sys; print(sorted(m for m in sys.modules if m in {heavy}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert damselfly.snapshot_download.__module__ == "damselfly.api.hf"
    with pytest.raises(AttributeError):
        _ = damselfly.no_such_name


class RecordingBar:
    """A tqdm stand-in: what the API draws."""

    made: list[RecordingBar] = []

    def __init__(self, *args, **kwargs) -> None:
        self.total = kwargs.get("total")
        self.n = kwargs.get("initial", 0)
        self.closed = False
        RecordingBar.made.append(self)

    def update(self, n: int = 1) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


async def test_progress_through_tqdm_class_and_disabled_by_env(hub, tmp_path, monkeypatch, capfd):
    RecordingBar.made.clear()
    await call(damselfly.snapshot_download, "acme/tiny", tqdm_class=RecordingBar)
    (bar,) = RecordingBar.made
    total = sum(len(v) for v in TINY.values())
    assert (bar.total, bar.n, bar.closed) == (total, total, True)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    capfd.readouterr()
    await call(damselfly.hf_hub_download, "acme/tiny", "config.json", force_download=True)
    assert capfd.readouterr().err == ""
