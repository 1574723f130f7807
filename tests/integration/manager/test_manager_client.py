"""transport/manager_client.py against a real manager serving on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.protocol.manager import DynamicConfig, MemberRegistration
from damselfly.testing.manager import ServedManager, serving_manager
from damselfly.transport.manager_client import (
    DynconfigCache,
    ManagerClient,
    ManagerError,
    ManagerLink,
)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[ServedManager]:
    async with serving_manager(f"sqlite:///{tmp_path / 'm.sqlite3'}") as served:
        yield served


@pytest.fixture
async def client(manager: ServedManager) -> AsyncIterator[ManagerClient]:
    found = ManagerClient(manager.url, manager.tokens["member"])
    yield found
    await found.aclose()


async def test_register_keepalive_and_conditional_dynconfig(client: ManagerClient) -> None:
    seed = await client.register(MemberRegistration(role="seed", hostname="s1", port=4000))
    assert seed.alive
    assert await client.keepalive(seed.id) is True
    assert await client.keepalive(seed.id + 100) is False
    config, etag = await client.fetch_dynconfig("peer", "h1")
    assert config is not None
    assert [s.hostname for s in config.seeds] == ["s1"]
    assert etag == f'"{config.version}"'
    again, same = await client.fetch_dynconfig("peer", "h1", etag)
    assert again is None
    assert same == etag


async def test_refusals_carry_the_status_and_detail(manager: ServedManager) -> None:
    anonymous = ManagerClient(manager.url, "")
    try:
        with pytest.raises(ManagerError, match="401: a valid token is required") as caught:
            await anonymous.call("GET", "/members")
        assert caught.value.status == 401
    finally:
        await anonymous.aclose()


async def test_link_persists_the_config_and_survives_an_outage(tmp_path: Path) -> None:
    cache_path = tmp_path / "state" / "dynconfig.json"
    async with serving_manager(f"sqlite:///{tmp_path / 'm.sqlite3'}") as served:
        admin = ManagerClient(served.url, served.tokens["admin"])
        await admin.call("POST", "/blocklist", body={"kind": "repo", "pattern": "hf://o/m"})
        await admin.aclose()
        client = ManagerClient(served.url, served.tokens["member"])
        link = ManagerLink(client, DynconfigCache(cache_path), "peer", "h1")
        assert link.config is None
        assert await link.refresh() is True
        assert await link.refresh() is False  # 304: nothing new
    assert stat.S_IMODE(cache_path.stat().st_mode) == 0o600
    assert await link.refresh() is False  # the manager is gone: the last config stays
    assert link.config is not None
    assert [r.pattern for r in link.config.blocklist] == ["hf://o/m"]
    await client.aclose()
    restarted = ManagerLink(ManagerClient("http://127.0.0.1:9", ""), DynconfigCache(cache_path),
                            "peer", "h1")  # fmt: skip
    assert restarted.config == link.config


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "dynconfig.json"
    path.write_text("{not json")
    assert DynconfigCache(path).load() is None


async def test_run_registers_keeps_alive_and_follows_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    async with serving_manager(url, keepalive_interval=0.05, config_interval=0.05) as served:
        changes: asyncio.Queue[DynamicConfig] = asyncio.Queue()
        client = ManagerClient(served.url, served.tokens["member"])
        link = ManagerLink(client, DynconfigCache(tmp_path / "dyn.json"), "seed", "s1",
                           on_change=changes.put_nowait)  # fmt: skip
        registration = MemberRegistration(role="seed", hostname="s1", port=4000)
        running = asyncio.create_task(link.run(registration))
        admin = ManagerClient(served.url, served.tokens["admin"])
        try:
            first = await asyncio.wait_for(changes.get(), 10)
            while not first.seeds:  # the first poll may come before the registration
                first = await asyncio.wait_for(changes.get(), 10)
            assert [s.hostname for s in first.seeds] == ["s1"]
            await admin.call("DELETE", f"/members/{link.member_id}")  # forgotten: re-registers
            await admin.call("POST", "/blocklist", body={"kind": "tag", "pattern": "t"})
            while True:
                config = await asyncio.wait_for(changes.get(), 10)
                if config.blocklist and config.seeds:
                    break
            assert [r.pattern for r in config.blocklist] == ["t"]
            _status, members, _headers = await admin.call("GET", "/members")
            assert [(m["hostname"], m["alive"]) for m in members] == [("s1", True)]
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await client.aclose()
            await admin.aclose()
