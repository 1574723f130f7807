"""``dfctl import`` end to end: a scheduler and two real daemons, a loopback Hugging Face hub
that is stopped before the second node downloads. The imported tasks have the ids a hub
download computes; the other node lists and gets the repo by its hub URL, byte-identical,
with no hub and no origin byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

from damselfly.storage.store import Store
from damselfly.testing.cluster import LocalCluster, run_dfctl
from damselfly.testing.hf_hub import HfTestHub, HubRepo

MiB = 1024 * 1024
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
FILES = {
    ".gitattributes": GITATTRIBUTES,
    "config.json": b'{"hidden_size": 8}\n',
    "model.safetensors": os.urandom(2 * MiB + 123),  # LFS by .gitattributes (and on the hub)
    "tokenizer/vocab.txt": os.urandom(300 * 1024),  # plain git file
}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def repo_files(root: Path) -> dict[str, bytes]:
    found = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {path: data for path, data in found.items() if not path.startswith(".cache/")}


async def test_an_imported_repo_reaches_another_node_without_the_hub(tmp_path: Path) -> None:
    repo = HubRepo("acme/tiny", FILES, lfs_threshold=MiB)
    staging = tmp_path / "staging"
    write_tree(staging, FILES)
    hub = HfTestHub([repo])
    await hub.start()
    try:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
        async with LocalCluster(tmp_path, peers=2, seeds=0, env=env) as cluster:
            # what a hub download computes: a standalone dfget into its own store
            reference = await cluster.dfget(
                0, "hf://acme/tiny", tmp_path / "reference", "-r", "--standalone"
            )
            assert reference.code == 0, reference.stderr
            with Store(cluster.workdir / "dfget-store") as store:
                hub_task_ids = {task.task_id for task in store.list_tasks()}
            assert len(hub_task_ids) == len(FILES)
            await hub.aclose()  # no hub from here on

            endpoint = ["-e", str(cluster.peers[0].socket)]
            code, out, err = await run_dfctl(
                *endpoint, "-o", "json", "import", str(staging), "--as", "hf://acme/tiny"
            )
            assert code == 0, err
            imported = json.loads(out)
            assert (imported["files"], imported["bytes"]) == (4, sum(map(len, FILES.values())))
            assert hub_task_ids <= set(imported["task_ids"])  # + the manifest and its pointers

            got = await cluster.dfget(1, "hf://acme/tiny", tmp_path / "got", "-r")
            assert got.code == 0, cluster.logs()
            assert repo_files(tmp_path / "got") == FILES
            metrics = await cluster.metrics(1)
            assert metrics["damselfly_daemon_source_bytes_total"] == 0
            assert metrics["damselfly_daemon_peer_bytes_total"] >= sum(map(len, FILES.values()))

            # a copy made by a hub download (huggingface_hub's local-dir metadata) says its
            # commit: the import then knows the real one
            code, out, err = await run_dfctl(
                *endpoint, "-o", "json", "import", str(tmp_path / "reference"),
                "--as", "hf://acme/tiny@main",
            )  # fmt: skip
            assert code == 0, err
            assert json.loads(out)["commit"] == repo.refs["main"]
            assert json.loads(out)["commit_is_stand_in"] is False
    finally:
        await hub.aclose()


async def test_an_unknown_repo_without_the_hub_fails_with_the_hubs_error(tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}
    async with LocalCluster(tmp_path, peers=1, seeds=1, env=env) as cluster:
        got = await cluster.dfget(0, "hf://acme/none", tmp_path / "none", "-r")
    assert got.seconds < 10, got.seconds  # no wait for a seed the hub is down for too
    assert got.code == 1
    assert len(got.error_lines) == 1, got.stderr
    assert "acme/none" in got.error_lines[0]
    assert not (tmp_path / "none").exists()


async def test_import_refuses_what_is_not_a_repo_url(tmp_path: Path) -> None:
    code, _out, err = await run_dfctl("import", str(tmp_path), "--as", "https://example.org/x")
    assert code == 2
    assert (
        err == "dfctl: error: --as 'https://example.org/x': expected hf://owner/repo[@revision]\n"
    )
