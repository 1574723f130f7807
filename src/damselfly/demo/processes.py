"""Child-process plumbing for ``ProcessCluster``: start-up lines, stopping, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

POLL_INTERVAL = 0.02
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; keep a margin


def parse_metrics(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def stop_process(process: asyncio.subprocess.Process, sig: int, grace: float) -> None:
    """Send ``sig``, wait up to ``grace`` seconds, then SIGKILL and wait. Never raises."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    if sig != signal.SIGKILL:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without damselfly/dfget settings, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DFGET_", "DAMSELFLY_"))}
    return {**base, **extra}


def module_argv(name: str) -> list[str]:
    return [sys.executable, "-m", name]


def socket_dir_for(workdir: Path) -> Path:
    """Unix socket paths are short: under the workdir when it fits, else a private /tmp dir."""
    inside = workdir / "sockets"
    if len(str(inside / "scheduler-00.sock")) <= MAX_SOCKET_PATH:
        inside.mkdir(parents=True, exist_ok=True)
        return inside
    return Path(tempfile.mkdtemp(prefix="dfc-", dir="/tmp"))  # private, mode 0700


def read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as source:
            source.seek(offset)
            return source.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def ready_fields(text: str) -> dict[str, str]:
    """``key=value`` tokens of a ready line."""
    pairs = (token.partition("=") for token in text.split())
    return {key: value for key, sep, value in pairs if sep}


async def until_counted(
    metrics: Callable[[], Awaitable[dict[str, float]]], hosts: int, seeds: int, deadline: float
) -> None:
    """Poll a scheduler's metrics until it counts ``hosts`` hosts and ``seeds`` seeds taking
    jobs, or ``deadline`` (``time.monotonic()``) passes: a cluster whose nodes cannot register
    goes on as it would have. Never raises."""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            known = await metrics()
            enough_hosts = known.get("damselfly_scheduler_hosts", 0) >= hosts
            if enough_hosts and known.get("damselfly_scheduler_seeds", 0) >= seeds:
                return
        await asyncio.sleep(POLL_INTERVAL)
