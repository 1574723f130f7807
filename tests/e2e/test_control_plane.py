"""The control plane end to end: a real manager, scheduler, seed and two daemons (processes),
dfctl and dfget as commands. Blocklist enforced within the config interval, rollback,
manager outage, daemon restart with the cached config; a back-to-source limit measured at
the origin."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from damselfly.testing.cluster import LocalCluster, Node, run_dfctl, wait_until
from damselfly.testing.manager import serving_manager

CONFIG_INTERVAL = 0.5  # seconds: the manager's config_interval in these tests
FILE = os.urandom(256 * 1024)


@dataclass
class Plane:
    cluster: LocalCluster
    manager_url: str
    admin_token: str
    stack: AsyncExitStack  # closing it stops the manager

    async def dfctl(self, *args: str) -> tuple[int, str, str]:
        env = {**os.environ, "DFCTL_MANAGER": self.manager_url, "DFCTL_TOKEN": self.admin_token,
               "XDG_CONFIG_HOME": str(self.cluster.workdir / "dfctl")}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "damselfly.cli.dfctl", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def dfctl_json(self, *args: str) -> object:
        code, out, err = await self.dfctl("-o", "json", *args)
        assert code == 0, err
        return json.loads(out)


def cached_rule_ids(node: Node) -> set[int]:
    assert node.storage_dir is not None
    return cached_rules_at(node.storage_dir / "dynconfig.json")


def rules_anywhere(cluster: LocalCluster, scheduler_cache: Path) -> set[int]:
    """The rules cached by the scheduler (its cache file) or any daemon."""
    found = cached_rules_at(scheduler_cache)
    for node in (*cluster.seeds, *cluster.peers):
        found |= cached_rule_ids(node)
    return found


def cached_rules_at(path: Path) -> set[int]:
    if not path.exists():
        return set()
    return {rule["id"] for rule in json.loads(path.read_text())["blocklist"]}


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    async with AsyncExitStack() as outer:
        stack = await outer.enter_async_context(AsyncExitStack())
        manager = await stack.enter_async_context(
            serving_manager(
                f"sqlite:///{tmp_path / 'manager.sqlite3'}",
                config_interval=CONFIG_INTERVAL,
                keepalive_interval=CONFIG_INTERVAL,
            )
        )
        env = {
            "DAMSELFLY_DAEMON_MANAGER__URL": manager.url,
            "DAMSELFLY_SCHEDULER_MANAGER__URL": manager.url,
            "DAMSELFLY_SCHEDULER_MANAGER__CACHE_FILE": str(tmp_path / "scheduler.json"),
            "DAMSELFLY_MANAGER_TOKEN": manager.tokens["member"],
        }
        cluster = LocalCluster(
            tmp_path, peers=2, seeds=1, env=env, origin_files={"/f.bin": FILE, "/g.bin": FILE}
        )
        await outer.enter_async_context(cluster)
        yield Plane(cluster, manager.url, manager.tokens["admin"], stack)


async def test_blocklist_rollback_outage_and_restart(plane: Plane, tmp_path: Path) -> None:
    cluster = plane.cluster
    url = cluster.origin.url("/f.bin")
    rule = await plane.dfctl_json(
        "blocklist", "add", "url", f"{cluster.origin.base_url}/f*",
        "--reason", "CVE-2026-1234", "--until", "2026-12-31",
    )  # fmt: skip
    assert isinstance(rule, dict)
    added = time.monotonic()
    await wait_until(
        lambda: rule["id"] in cached_rule_ids(cluster.peers[0]), within=10, interval=0.05
    )
    assert time.monotonic() - added < 4 * CONFIG_INTERVAL + 2

    out = tmp_path / "out.bin"
    blocked = await cluster.dfget(0, url, out)
    assert blocked.code == 1, cluster.logs()
    assert blocked.error_lines == [
        f"dfget: error: {url} is blocked by rule {rule['id']} (CVE-2026-1234, until 2026-12-31)"
    ]
    assert not out.exists()
    long_url = f"{url}?v={'a' * 5000}"  # the message quotes it cut, on one line
    blocked = await cluster.dfget(0, long_url, out)
    assert blocked.code == 1, cluster.logs()
    assert len(blocked.error_lines) == 1, blocked.stderr
    assert f"... is blocked by rule {rule['id']} (CVE-2026-1234" in blocked.error_lines[0]
    assert len(blocked.error_lines[0]) < 400
    assert not out.exists()
    assert cluster.origin.bytes_served_for("/f.bin") == 0

    audit = await plane.dfctl_json("blocklist", "audit")
    assert isinstance(audit, list)
    creation = next(e for e in audit if e["action"] == "create")
    code, _out, err = await plane.dfctl("blocklist", "rollback", str(creation["id"]))
    assert code == 0, err
    # every node that checks the rule (dfget hands its download over within ~0.1 s of the
    # peer's cache changing; the seed's and the scheduler's may change later)
    scheduler_cache = tmp_path / "scheduler.json"
    await wait_until(lambda: not rules_anywhere(cluster, scheduler_cache), within=10, interval=0.05)
    done = await cluster.dfget(0, url, out)
    assert done.code == 0, done.stderr
    assert out.read_bytes() == FILE

    # a second rule, then the manager goes away: downloads go on, the rule stays
    second = await plane.dfctl_json("blocklist", "add", "url", f"{cluster.origin.base_url}/g*")
    assert isinstance(second, dict)
    await wait_until(
        lambda: second["id"] in cached_rule_ids(cluster.peers[1]), within=10, interval=0.05
    )
    await plane.stack.aclose()
    again = await cluster.dfget(1, url, tmp_path / "again.bin")
    assert again.code == 0, again.stderr
    assert (tmp_path / "again.bin").read_bytes() == FILE
    await cluster.restart(cluster.peers[1])
    refused = await cluster.dfget(1, cluster.origin.url("/g.bin"), tmp_path / "g.bin")
    assert refused.code == 1
    assert f"is blocked by rule {second['id']}" in refused.stderr
    assert not (tmp_path / "g.bin").exists()


BIG = os.urandom(3 * 1024 * 1024)
LIMIT_BPS = 1024 * 1024  # 1 MiB/s


def cached_limit(node: Node) -> int | None:
    assert node.storage_dir is not None
    path = node.storage_dir / "dynconfig.json"
    if not path.exists():
        return None
    cluster_limits = json.loads(path.read_text())["rate_limits"]["cluster"] or {}
    value = cluster_limits.get("back_to_source_bps")
    return int(value) if value is not None else None


async def test_back_to_source_limit_holds_at_the_origin(plane: Plane, tmp_path: Path) -> None:
    cluster = plane.cluster
    cluster.origin.put("/big.bin", BIG)
    code, _out, err = await plane.dfctl("ratelimit", "set", "--back-to-source", "1MiB")
    assert code == 0, err
    for node in [*cluster.seeds, *cluster.peers]:
        await wait_until(lambda n=node: cached_limit(n) == LIMIT_BPS, within=10, interval=0.05)

    # The origin's rate over the transfer: its body bytes, from the moment the first request
    # reached it to the moment the last of them was consumed (kernel socket buffers let the
    # origin's own write calls run ahead of the reader by a few MiB on loopback).
    first_request: list[float] = []

    async def watch_origin() -> None:
        while cluster.origin.request_count("/big.bin", "GET") == 0:
            await asyncio.sleep(0.005)
        first_request.append(time.monotonic())

    watcher = asyncio.create_task(watch_origin())
    try:
        done = await cluster.dfget(0, cluster.origin.url("/big.bin"), tmp_path / "big.bin")
    finally:
        watcher.cancel()
    finished = time.monotonic()
    assert done.code == 0, done.stderr
    assert (tmp_path / "big.bin").read_bytes() == BIG
    served = cluster.origin.bytes_served_for("/big.bin")
    assert served >= len(BIG)
    rate = served / (finished - first_request[0])
    assert rate <= 1.1 * LIMIT_BPS, f"origin served {rate / LIMIT_BPS:.2f} x the limit"
    assert rate >= 0.5 * LIMIT_BPS, f"origin served only {rate / LIMIT_BPS:.2f} x the limit"


async def test_the_scheduler_refuses_a_blocked_task(plane: Plane, tmp_path: Path) -> None:
    """A daemon that knows no manager is still stopped: RegisterPeer is refused."""
    cluster = plane.cluster
    unmanaged = await cluster.add_daemon(env={"DAMSELFLY_DAEMON_MANAGER__URL": ""})
    rule = await plane.dfctl_json(
        "blocklist", "add", "url", cluster.origin.url("/g.bin"), "--reason", "leak"
    )
    assert isinstance(rule, dict)
    scheduler_cache = tmp_path / "scheduler.json"

    def scheduler_knows() -> bool:
        if not scheduler_cache.exists():
            return False
        return rule["id"] in {r["id"] for r in json.loads(scheduler_cache.read_text())["blocklist"]}

    await wait_until(scheduler_knows, within=10, interval=0.05)
    out = tmp_path / "g.bin"
    refused = await cluster.dfget(unmanaged, cluster.origin.url("/g.bin"), out)
    assert refused.code == 1, refused.stderr
    # the daemon stated the file (its length names the task) before it registered: the
    # progress line says so, the error is the last line, and no body byte moved
    assert refused.error_lines[-1] == (
        f"dfget: error: {cluster.origin.url('/g.bin')} is blocked by rule {rule['id']} (leak)"
    )
    assert not out.exists()
    assert cluster.origin.bytes_served_for("/g.bin") == 0


async def test_a_preheated_file_costs_a_peer_no_origin_byte(plane: Plane, tmp_path: Path) -> None:
    cluster = plane.cluster
    url = cluster.origin.url("/f.bin")
    job = await plane.dfctl_json("preheat", "create", url)
    assert isinstance(job, dict)

    async def finished() -> bool:
        status = await plane.dfctl_json("preheat", "status", str(job["id"]))
        assert isinstance(status, dict)
        assert status["state"] != "failed", status
        return bool(status["state"] == "succeeded")

    await wait_until(finished, within=30, interval=0.25)
    status = await plane.dfctl_json("preheat", "status", str(job["id"]))
    assert isinstance(status, dict)
    assert [(f["state"], f["completed_length"]) for f in status["files"]] == [
        ("succeeded", len(FILE))
    ]
    served = cluster.origin.bytes_served_for("/f.bin")
    assert served >= len(FILE)

    done = await cluster.dfget(1, url, tmp_path / "f.bin")
    assert done.code == 0, done.stderr
    assert (tmp_path / "f.bin").read_bytes() == FILE
    metrics = await cluster.metrics(cluster.peers[1])
    assert metrics["damselfly_daemon_source_bytes_total"] == 0
    assert metrics["damselfly_daemon_peer_bytes_total"] == len(FILE)
    assert cluster.origin.bytes_served_for("/f.bin") == served


async def test_a_blocked_repo_is_not_imported(plane: Plane, tmp_path: Path) -> None:
    cluster = plane.cluster
    rule = await plane.dfctl_json(
        "blocklist", "add", "repo", "hf://acme/blocked", "--reason", "leak"
    )
    assert isinstance(rule, dict)
    await wait_until(
        lambda: rule["id"] in cached_rule_ids(cluster.peers[0]), within=10, interval=0.05
    )
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "config.json").write_bytes(b"{}")
    socket = str(cluster.peers[0].socket)
    code, _out, err = await run_dfctl(
        "-e", socket, "import", str(tmp_path / "copy"), "--as", "hf://acme/blocked"
    )
    assert code == 1
    assert err == (
        "dfctl: error: dfdaemon answered 403: "
        f"hf://acme/blocked is blocked by rule {rule['id']} (leak)\n"
    )
    code, out, err = await run_dfctl("-e", socket, "-o", "json", "task", "ls")
    assert code == 0, err
    assert json.loads(out) == []
