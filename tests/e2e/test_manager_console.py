"""The console in headless Chromium (Debian's, driven by Playwright): log in with a token, add
and roll back a blocklist rule, watch a preheat job finish. Screenshots are kept as artifacts
in ``$DAMSELFLY_TEST_ARTIFACTS/console`` (default: the test's temporary directory)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from damselfly.testing.manager import ServedManager, serving_manager
from damselfly.transport.manager_client import ManagerClient

CHROMIUM = "/usr/bin/chromium"
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
    async with serving_manager(f"sqlite:///{tmp_path / 'm.sqlite3'}") as served:
        yield served


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


async def test_blocklist_rollback_and_preheat_in_the_console(
    page: Any, manager: ServedManager, artifacts: Path
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

    await page.fill("#job-url", "hf://org/model")
    await page.fill("#job-include", "*.json")
    await page.click("#job-form button")
    job_row = page.locator("#jobs tbody tr", has_text="hf://org/model")
    await job_row.locator("td.pending").wait_for()
    await _seed_finishes_the_job(manager, job_id=int(await job_row.get_attribute("data-id")))
    await job_row.locator("td.succeeded").wait_for()  # the page polls every 2 s
    await page.locator("#members tbody tr", has_text="seed-1").wait_for()
    await page.screenshot(path=artifacts / "4-preheat-succeeded.png", full_page=True)
    assert (artifacts / "4-preheat-succeeded.png").stat().st_size > 0


async def _seed_finishes_the_job(manager: ServedManager, job_id: int) -> None:
    seed = ManagerClient(manager.url, manager.tokens["member"])
    try:
        _status, member, _headers = await seed.call(
            "POST", "/members", body={"role": "seed", "hostname": "seed-1"}
        )
        _status, job, _headers = await seed.call(
            "POST", "/preheat/claim", body={"member_id": member["id"]}
        )
        assert job["id"] == job_id
        files = [{"url": "hf://org/model/config.json", "length": 612, "completed_length": 612,
                  "state": "succeeded"}]  # fmt: skip
        report = {"member_id": member["id"], "state": "succeeded", "files": files}
        await seed.call("POST", f"/preheat/{job_id}/report", body=report)
    finally:
        await seed.aclose()
