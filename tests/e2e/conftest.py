"""Helpers for running the real ``dfget`` command as a subprocess against local servers."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from damselfly.demo.cluster import Completed


@dataclass
class Dfget:
    store: Path
    env: dict[str, str]

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "damselfly.cli.dfget", *args]

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.argv(*args),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, *args: str, timeout: float = 60) -> Completed:
        started = time.monotonic()
        process = await self.start(*args)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        seconds = time.monotonic() - started
        return Completed(process.returncode, stdout.decode(), stderr.decode(), seconds)


@pytest.fixture
def dfget(tmp_path: Path) -> Dfget:
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFGET_")}
    env["DAMSELFLY_STORAGE_DIR"] = str(store)
    return Dfget(store=store, env=env)
