"""``make bench-manager``: the manager on SQLite under its members' load (issue 14's target:
>= 500 keepalives/s, dynamic-config median <= 10 ms with 1,000 registered daemons).

Starts ``damselfly manager`` as a process on loopback with an empty SQLite database, registers
``--daemons`` members (plus a few schedulers and seeds), then for ``--seconds`` sends
keepalives from ``--concurrency`` connections and counts the answers per second, then times
``--dynconfig-calls`` dynamic-config calls one after the other, full (200) and conditional
(304). Prints one JSON document (machine, load, figures) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.common.arguments import positive_int, run_guarded
from bench.common.machine import load_average, machine_info
from bench.common.workspace import BenchError

PROG = "bench-manager"
API = "/api/v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--daemons", type=positive_int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="keepalive phase length")
    parser.add_argument("--concurrency", type=positive_int, default=16)
    parser.add_argument("--dynconfig-calls", type=positive_int, default=500)
    args = parser.parse_args(argv)
    return run_guarded(PROG, lambda: asyncio.run(_bench(args)), on_interrupt="nothing kept")


async def _bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-manager-") as workdir:
        async with (
            _manager(Path(workdir)) as (url, admin_token, pid),
            aiohttp.ClientSession() as http,
        ):
            member = await _member_token(http, url, admin_token)
            headers = {"Authorization": f"Bearer {member}"}
            ids = await _register(http, url, headers, args.daemons, args.concurrency)
            cpu_before = _cpu_seconds(pid)
            keepalives, sent = await _keepalives(http, url, headers, ids, args)
            keepalive_cpu = _cpu_seconds(pid) - cpu_before
            cpu_before = _cpu_seconds(pid)
            dynconfig = await _dynconfig(http, url, headers, args.dynconfig_calls)
            dynconfig["manager_cpu_ms_per_call"] = _ms((_cpu_seconds(pid) - cpu_before)
                                                       / args.dynconfig_calls)  # fmt: skip
    report = {"machine": machine_info({}), "load_average": load_average(),
              "daemons": args.daemons, "concurrency": args.concurrency,
              "keepalives_per_second": keepalives,
              # load-independent: keepalives per second of the manager's own CPU time (what
              # one dedicated core would sustain)
              "keepalives_per_manager_cpu_second": round(sent / max(keepalive_cpu, 1e-9), 1),
              "dynconfig_ms": dynconfig}  # fmt: skip
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


@asynccontextmanager
async def _manager(workdir: Path) -> AsyncIterator[tuple[str, str, int]]:
    base = [sys.executable, "-m", "damselfly.cli.damselfly", "manager",
            "--data-dir", str(workdir), "--log-level", "warn"]  # fmt: skip
    admin = subprocess.run([*base, "create-admin", "--name", "bench"], capture_output=True,
                           text=True, check=False)  # fmt: skip
    if admin.returncode != 0:
        raise BenchError(f"create-admin: {admin.stderr.strip()}")
    process = await asyncio.create_subprocess_exec(
        *base, "--listen", "127.0.0.1:0", stdout=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if "http=" not in line:
            raise BenchError(f"the manager did not start: {line!r}")
        yield f"http://{line.split('http=', 1)[1].strip()}", admin.stdout.strip(), process.pid
    finally:
        process.terminate()
        await process.wait()


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as response:
        if response.status >= 400:
            raise BenchError(f"{method} {url}: {response.status} {await response.text()}")
        return await response.json() if response.status in (200, 201) else None


async def _member_token(http: aiohttp.ClientSession, url: str, admin: str) -> str:
    headers = {"Authorization": f"Bearer {admin}"}
    await _call(http, "POST", f"{url}{API}/users", json={"name": "nodes", "role": "member"},
                headers=headers)  # fmt: skip
    created = await _call(http, "POST", f"{url}{API}/tokens", json={"user": "nodes"},
                          headers=headers)  # fmt: skip
    return str(created["token"])


async def _register(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], daemons: int, width: int
) -> list[int]:
    roles = ["scheduler"] * 3 + ["seed"] * 5 + ["peer"] * daemons
    names = (f"{role}-{n}" for n, role in enumerate(roles))
    pending = [{"role": role, "hostname": name, "ip": "10.0.0.1", "port": 4000}
               for role, name in zip(roles, names, strict=True)]  # fmt: skip
    ids: list[int] = []
    semaphore = asyncio.Semaphore(width)

    async def one(body: dict[str, Any]) -> None:
        async with semaphore:
            member = await _call(http, "POST", f"{url}{API}/members", json=body, headers=headers)
            ids.append(member["id"])

    await asyncio.gather(*(one(body) for body in pending))
    return ids


async def _keepalives(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], ids: list[int], args: Any
) -> tuple[float, int]:
    deadline = time.monotonic() + args.seconds
    cycle = itertools.cycle(ids)
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await _call(http, "POST", f"{url}{API}/members/{next(cycle)}/keepalive",
                        headers=headers)  # fmt: skip
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return round(done / (time.monotonic() - started), 1), done


async def _dynconfig(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], calls: int
) -> dict[str, float]:
    full: list[float] = []
    conditional: list[float] = []
    etag = ""
    for n in range(calls):
        asked = {**headers, "If-None-Match": etag} if n % 2 and etag else headers
        started = time.perf_counter()
        async with http.get(f"{url}{API}/dynconfig?role=peer&host=peer-9", headers=asked) as r:
            await r.read()
            etag = r.headers.get("ETag", etag)
            (conditional if r.status == 304 else full).append(time.perf_counter() - started)
    return {"full_median": _ms(statistics.median(full)), "full_p95": _ms(_p95(full)),
            "not_modified_median": _ms(statistics.median(conditional or [0.0]))}  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


if __name__ == "__main__":
    sys.exit(main())
