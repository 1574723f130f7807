"""``damselfly download`` next to the real ``hf download``, and dfget's hub habits.

Both commands run as child processes with their own HOME and cache against ``HfTestHub``:
same stdout (paths with the root replaced), same files; then with ``HF_HUB_OFFLINE=1`` and
with the hub down, both answer from their caches. dfget: ``--include``, "use -r" for a repo
URL, a single hub file without ``-O`` into the hub cache, offline and hub-down fallback.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.demo.cluster import Completed
from damselfly.demo.hub_repos import HubRepo
from damselfly.testing.hf_hub import HfTestHub

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub not installed"
)

WEIGHTS = hashlib.sha256(b"cli").digest() * 40_000
FILES = {
    "config.json": b'{"a": 1}\n',
    "model.safetensors": WEIGHTS,
    "sub/notes.txt": b"notes\n",
    "sub/more.json": b"{}\n",
}
HF = str(Path(sys.executable).parent / "hf")


@pytest.fixture
async def hub() -> AsyncIterator[HfTestHub]:
    repos = [HubRepo("acme/tiny", FILES, lfs_threshold=1024 * 1024)]
    async with HfTestHub(repos) as test_hub:
        yield test_hub


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def run(argv: list[str], root: Path, endpoint: str, **extra: str) -> Completed:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "HF_HUB_CACHE": str(root / "cache"),
        "HF_ENDPOINT": endpoint,
        "DAMSELFLY_STORAGE_DIR": str(root / "store"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **extra,
    }
    root.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    text = stdout.decode().replace(str(root), "<root>")
    return Completed(process.returncode, text, stderr.decode(), 0.0)


def ours(*args: str) -> list[str]:
    return [sys.executable, "-m", "damselfly.cli.damselfly", "download", "--standalone", *args]


def dfget(*args: str) -> list[str]:
    return [sys.executable, "-m", "damselfly.cli.dfget", "--standalone", "--no-progress", *args]


def theirs(*args: str) -> list[str]:
    return [HF, "download", *args]


def files_below(root: Path) -> dict[str, bytes]:
    found = (p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts)
    kept = (p for p in found if ".locks" not in p.parts and p.name != "CACHEDIR.TAG")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(kept)}


COMMANDS = [
    ("acme/tiny", "-q"),
    ("acme/tiny", "config.json", "--format", "agent"),
    ("acme/tiny", "--include", "*.json", "--exclude", "sub/*", "--local-dir", "ld", "-q"),
    ("acme/tiny", "sub/notes.txt", "--local-dir", "one", "--quiet"),
    ("acme/tiny", "config.json", "sub/", "--revision", "main", "--json"),
]


async def test_same_output_and_files_as_hf_download(hub, tmp_path):
    for args in COMMANDS:
        got = [
            await run(make(*args), tmp_path / name, hub.endpoint)
            for name, make in (("hf", theirs), ("ds", ours))
        ]
        assert got[0].code == 0, got[0].stderr
        assert (got[1].code, got[1].stdout) == (0, got[0].stdout), (args, got[1].stderr)
    assert files_below(tmp_path / "ds" / "ld") == files_below(tmp_path / "hf" / "ld")
    ours_cache = files_below(tmp_path / "ds" / "cache")
    assert ours_cache == files_below(tmp_path / "hf" / "cache")  # trees/<commit>.json too
    assert any("/trees/" in path for path in ours_cache)


async def test_dry_run_prints_what_hf_prints(hub, tmp_path):
    await run(theirs("acme/tiny", "config.json"), tmp_path / "hf", hub.endpoint)
    await run(ours("acme/tiny", "config.json"), tmp_path / "ds", hub.endpoint)
    for fmt in ("human", "agent", "json"):
        args = ("acme/tiny", "--dry-run", "--format", fmt)
        hf = await run(theirs(*args), tmp_path / "hf", hub.endpoint)
        ds = await run(ours(*args), tmp_path / "ds", hub.endpoint)
        assert hf.code == 0, hf.stderr
        assert (ds.code, ds.stdout) == (0, hf.stdout), ds.stderr
        assert "Will download 3 files (out of 4)" in hf.stdout or fmt == "json"


async def test_offline_and_hub_down_answer_from_the_cache(hub, tmp_path):
    args = ("acme/tiny", "-q")
    online = await run(ours(*args), tmp_path / "ds", hub.endpoint)
    assert online.code == 0, online.stderr
    offline = await run(ours(*args), tmp_path / "ds", hub.endpoint, HF_HUB_OFFLINE="1")
    assert (offline.code, offline.stdout) == (0, online.stdout), offline.stderr
    down = await run(ours(*args), tmp_path / "ds", closed_port_url())
    assert (down.code, down.stdout) == (0, online.stdout), down.stderr
    assert "warning" in down.stderr
    assert "using the cached copy" in down.stderr
    missing = await run(ours("acme/other", "-q"), tmp_path / "ds", hub.endpoint, HF_HUB_OFFLINE="1")
    assert missing.code == 1
    assert "HF_HUB_OFFLINE" in missing.stderr
    assert "Traceback" not in missing.stderr


async def test_recursive_offline_uses_the_cached_listing_as_hf_download_does(hub, tmp_path):
    """The listing cached at download time (``trees/<commit>.json``) tells a complete snapshot
    from one missing a file: offline, ``-r`` answers the first and refuses the second, as
    ``hf download`` does, for exactly what the patterns select (with an empty piece store;
    the one that holds the file puts it back)."""
    for name, make in (("hf", theirs), ("ds", ours)):
        online = await run(make("acme/tiny", "-q"), tmp_path / name, hub.endpoint)
        assert online.code == 0, online.stderr
    root = tmp_path / "ds"
    snapshot = await run(dfget("hf://acme/tiny", "-r"), root, hub.endpoint, HF_HUB_OFFLINE="1")
    assert (snapshot.code, snapshot.stdout) == (0, online.stdout), snapshot.stderr
    sub = await run(dfget("hf://acme/tiny/sub", "-r"), root, hub.endpoint, HF_HUB_OFFLINE="1")
    assert (sub.code, sub.stdout) == (0, online.stdout.strip() + "/sub\n"), sub.stderr
    for name in ("hf", "ds"):
        folder = Path(online.stdout.strip().replace("<root>", str(tmp_path / name)))
        (folder / "sub" / "notes.txt").unlink()  # as an interrupted download leaves it
    empty = {"DAMSELFLY_STORAGE_DIR": str(tmp_path / "empty-store")}
    for args in (("acme/tiny", "-q"), ("acme/tiny", "--include", "*.json", "-q")):
        got = [
            await run(make(*args), tmp_path / name, hub.endpoint, HF_HUB_OFFLINE="1", **empty)
            for name, make in (("hf", theirs), ("ds", ours))
        ]
        assert (got[1].code == 0, got[1].stdout) == (got[0].code == 0, got[0].stdout), args
    assert got[1].code == 0  # *.json: nothing selected is missing
    whole = await run(ours("acme/tiny", "-q"), root, closed_port_url(), **empty)
    assert whole.code == 1
    assert "incomplete" in whole.stderr
    assert "sub/notes.txt" in whole.stderr
    assert "Traceback" not in whole.stderr
    offline = {"HF_HUB_OFFLINE": "1", **empty}
    part = await run(dfget("hf://acme/tiny/sub", "-r"), root, hub.endpoint, **offline)
    assert part.code == 1
    assert "1 file(s) missing (sub/notes.txt)" in part.stderr
    back = await run(dfget("hf://acme/tiny/sub", "-r"), root, closed_port_url())
    assert (back.code, back.stdout) == (0, sub.stdout), back.stderr
    folder = Path(online.stdout.strip().replace("<root>", str(root)))
    assert (folder / "sub" / "notes.txt").read_bytes() == FILES["sub/notes.txt"]


async def test_dfget_hub_habits(hub, tmp_path):
    root = tmp_path / "d"
    repo = await run(dfget("hf://acme/tiny"), root, hub.endpoint)
    assert repo.code == 2
    assert "use -r" in repo.stderr
    one = await run(dfget("hf://acme/tiny/sub/notes.txt"), root, hub.endpoint)
    assert one.code == 0, one.stderr
    assert Path(one.stdout.strip().replace("<root>", str(root))).read_bytes() == b"notes\n"
    assert "/cache/models--acme--tiny/snapshots/" in one.stdout
    picked = await run(
        dfget("hf://acme/tiny", "-r", "--include", "*.json", "-O", "out"), root, hub.endpoint
    )
    assert picked.code == 0, picked.stderr
    assert sorted(files_below(root / "out")) == ["config.json", "sub/more.json"]
    offline = await run(
        dfget("hf://acme/tiny/sub/notes.txt"), root, hub.endpoint, HF_HUB_OFFLINE="1"
    )
    assert (offline.code, offline.stdout) == (0, one.stdout), offline.stderr
    down = await run(dfget("hf://acme/tiny/sub/notes.txt"), root, closed_port_url())
    assert (down.code, down.stdout) == (0, one.stdout), down.stderr
    assert "dfget: warning:" in down.stderr
    gone = await run(dfget("hf://acme/tiny/config.json"), root, closed_port_url())
    assert gone.code == 1
    assert "not in the local cache" in gone.stderr
