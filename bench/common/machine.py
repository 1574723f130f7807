"""What the figures were measured on: kernel, CPUs, memory, tool versions, load."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def machine_info(tools: Mapping[str, str]) -> dict[str, Any]:
    return {
        "uname": _first_line(["uname", "-a"]),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_total_mib": _meminfo_mib("MemTotal"),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "tool_versions": {name: _first_line([path, "--version"]) for name, path in tools.items()},
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (what `uptime` shows)."""
    return [round(value, 2) for value in os.getloadavg()]


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _meminfo_mib(field: str) -> int | None:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key == field:
            return int(value.split()[0]) // 1024  # kB
    return None


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else ""
