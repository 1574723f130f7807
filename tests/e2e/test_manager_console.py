"""The console in headless Chromium (Debian's, driven by Playwright): log in with a token, add
and roll back a blocklist rule, watch a preheat job run by a real seed finish, and see the
rollout charts move when a peer then downloads the file. Screenshots are kept as artifacts
in ``$DAMSELFLY_TEST_ARTIFACTS/console`` (default: the test's temporary directory)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from damselfly.testing.cluster import LocalCluster
from damselfly.testing.manager import ServedManager, serving_manager

CHROMIUM = "/usr/bin/chromium"
FILE = os.urandom(512 * 1024)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian chromium absent (apt-get install chromium)"
)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("DAMSELFLY_TEST_ARTIFACTS")
    path = (Path(root) if root else tmp_path) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[ServedManager]:
    async with serving_manager(
        f"sqlite:///{tmp_path / 'm.sqlite3'}", config_interval=0.5, keepalive_interval=0.5
    ) as served:
        yield served


async def members_cluster(tmp_path: Path, manager: ServedManager) -> LocalCluster:
    """A scheduler, a seed and a peer polling ``manager`` (enter it with ``async with``)."""
    env = {"DAMSELFLY_DAEMON_MANAGER__URL": manager.url,
           "DAMSELFLY_MANAGER_TOKEN": manager.tokens["member"]}  # fmt: skip
    return LocalCluster(tmp_path, peers=1, seeds=1, env=env, origin_files={"/m.bin": FILE})


@pytest.fixture
async def page(manager: ServedManager) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            found = await browser.new_page()
            found.set_default_timeout(20_000)
            await found.goto(f"{manager.url}/console/")
            yield found
        finally:
            await browser.close()


async def test_a_refused_token_says_so(page: Any) -> None:
    await page.fill("#token", "dfm_wrong")
    await page.click("#login-form button")
    await page.wait_for_selector("#error:has-text('401')")
    assert await page.is_visible("#login")


async def test_blocklist_rollback_preheat_and_rollout_in_the_console(
    page: Any, manager: ServedManager, artifacts: Path, tmp_path: Path
) -> None:
    await page.fill("#token", manager.tokens["admin"])
    await page.click("#login-form button")
    await page.wait_for_selector("#app", state="visible")
    assert await page.text_content("#who") == "logged in as root (admin)"
    await page.screenshot(path=artifacts / "1-logged-in.png")

    await page.fill("#rule-pattern", "hf://org/model")
    await page.fill("#rule-reason", "CVE-2026-1234")
    await page.click("#rule-form button")
    rule_row = page.locator("#rules tbody tr", has_text="hf://org/model")
    await rule_row.wait_for()
    await page.screenshot(path=artifacts / "2-rule-added.png")
    await rule_row.locator("button", has_text="Remove").click()
    await rule_row.wait_for(state="detached")
    deletion = page.locator("#audit tbody tr", has_text="delete")
    await deletion.locator("button", has_text="Roll back").click()
    await page.locator("#rules tbody tr", has_text="CVE-2026-1234").wait_for()
    assert await page.locator("#audit tbody tr", has_text="rollback").count() == 1
    await page.screenshot(path=artifacts / "3-rule-rolled-back.png")

    async with await members_cluster(tmp_path, manager) as cluster:
        url = cluster.origin.url("/m.bin")
        await page.fill("#job-url", url)
        await page.click("#job-form button")
        job_row = page.locator("#jobs tbody tr", has_text=url)
        await job_row.wait_for()
        await job_row.locator("td.succeeded").wait_for(timeout=60_000)  # the seed ran it
        await page.locator("#members tbody tr", has_text="seed").first.wait_for()
        await page.screenshot(path=artifacts / "4-preheat-succeeded.png", full_page=True)

        done = await cluster.dfget(0, url, tmp_path / "m.bin")
        assert done.code == 0, done.stderr
        peers = page.locator("#charts [data-chart=bytes] .legend-1")
        await page.wait_for_function(
            "() => Number(document.querySelector('#charts [data-chart=bytes] .legend-1')"
            f"?.dataset.latest) >= {len(FILE)}",
            timeout=30_000,
        )
        assert "peers:" in (await peers.text_content() or "")
        assert await page.locator("#charts svg polyline").count() == 6
    await page.screenshot(path=artifacts / "5-rollout-charts.png", full_page=True)
    assert (artifacts / "5-rollout-charts.png").stat().st_size > 0
