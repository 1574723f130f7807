"""dfctl against a real ``damselfly manager`` process on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@dataclass
class Cluster:
    url: str
    token: str
    env: dict[str, str]

    async def dfctl(self, *args: str, stdin: str = "") -> Ran:
        return await _run([sys.executable, "-m", "damselfly.cli.dfctl", *args], self.env, stdin)


async def _run(argv: list[str], env: dict[str, str], stdin: str = "") -> Ran:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    env.pop("DFCTL_TOKEN", None)
    env.pop("DFCTL_MANAGER", None)
    manager = [sys.executable, "-m", "damselfly.cli.damselfly", "manager",
               "--data-dir", str(tmp_path / "data")]  # fmt: skip
    admin = await _run([*manager, "create-admin", "--name", "ops"], env)
    assert admin.code == 0, admin.stderr
    process = await asyncio.create_subprocess_exec(
        *manager, "--listen", "127.0.0.1:0", env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("manager listening: http="), line
        yield Cluster(f"http://{line.split('=', 1)[1].strip()}", admin.stdout.strip(), env)
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def _logged_in(cluster: Cluster) -> None:
    done = await cluster.dfctl("config", "set", "--manager", cluster.url, "--token-stdin",
                               stdin=cluster.token + "\n")  # fmt: skip
    assert done.code == 0, done.stderr


async def test_blocklist_add_ls_rm_rollback(cluster: Cluster, tmp_path: Path) -> None:
    await _logged_in(cluster)
    path = tmp_path / "config" / "damselfly" / "dfctl.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    added = await cluster.dfctl("-o", "json", "blocklist", "add", "repo", "hf://org/model",
                                "--reason", "CVE-2026-1234", "--until", "2099-12-31")  # fmt: skip
    assert added.code == 0, added.stderr
    rule = json.loads(added.stdout)
    assert (rule["author"], rule["until"]) == ("ops", "2099-12-31T00:00:00Z")
    table = await cluster.dfctl("blocklist", "ls")
    assert "hf://org/model" in table.stdout
    assert "CVE-2026-1234" in table.stdout
    assert (await cluster.dfctl("blocklist", "rm", str(rule["id"]))).code == 0
    listed = await cluster.dfctl("-o", "json", "blocklist", "ls")
    assert json.loads(listed.stdout) == []
    audit = json.loads((await cluster.dfctl("-o", "json", "blocklist", "audit")).stdout)
    assert [entry["action"] for entry in audit] == ["delete", "create"]
    undone = await cluster.dfctl("blocklist", "rollback", str(audit[0]["id"]))
    assert undone.code == 0, undone.stderr
    listed = await cluster.dfctl("-o", "json", "blocklist", "ls")
    assert [r["id"] for r in json.loads(listed.stdout)] == [rule["id"]]


async def test_ratelimit_preheat_jobs_and_peers(cluster: Cluster) -> None:
    await _logged_in(cluster)
    limit = await cluster.dfctl("-o", "json", "ratelimit", "set", "--back-to-source", "100MiB")
    assert json.loads(limit.stdout)["back_to_source_bps"] == 100 * 1024 * 1024
    listed = await cluster.dfctl("ratelimit", "ls")
    assert "100.0 MiB/s" in listed.stdout
    job = await cluster.dfctl("-o", "json", "preheat", "create", "hf://org/model",
                              "--include", "*.json")  # fmt: skip
    created = json.loads(job.stdout)
    assert (created["kind"], created["include"], created["state"]) == (
        "repo",
        ["*.json"],
        "pending",
    )
    status = await cluster.dfctl("-o", "json", "preheat", "status", str(created["id"]))
    assert json.loads(status.stdout)["state"] == "pending"
    jobs = await cluster.dfctl("-o", "json", "jobs", "--state", "pending")
    assert [j["id"] for j in json.loads(jobs.stdout)] == [created["id"]]
    peers = await cluster.dfctl("-o", "json", "peers", "ls")
    assert json.loads(peers.stdout) == []


async def test_errors_are_one_line_with_dfget_exit_codes(cluster: Cluster, tmp_path: Path) -> None:
    unauthenticated = await cluster.dfctl("--manager", cluster.url, "peers", "ls")
    assert unauthenticated.code == 2
    assert unauthenticated.stderr.startswith("dfctl: error: no token")
    await _logged_in(cluster)
    missing = await cluster.dfctl("blocklist", "rm", "99")
    assert (missing.code, missing.stderr) == (
        1,
        "dfctl: error: manager answered 404: no blocklist rule 99\n",
    )
    bad = await cluster.dfctl("blocklist", "add", "repo", "not-a-repo")
    assert bad.code == 2
    assert len(bad.stderr.splitlines()) == 1
    local = await cluster.dfctl("-e", str(tmp_path / "no.sock"), "task", "ls")
    assert local.code == 1
    assert local.stderr.startswith(f"dfctl: error: dfdaemon at {tmp_path / 'no.sock'}: ")
    assert len(local.stderr.splitlines()) == 1
    (tmp_path / "config" / "damselfly" / "dfctl.yaml").chmod(0o644)
    exposed = await cluster.dfctl("peers", "ls")
    assert exposed.code == 2
    assert "readable by others" in exposed.stderr
