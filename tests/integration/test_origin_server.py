"""The test origin itself: ranges, directory serving, counters, and the command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from damselfly.testing.origin import UNSATISFIABLE, Behaviour, OriginServer, parse_range_header

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 1)),
        ("bytes=10-19", (10, 10)),
        ("bytes=10-", (10, 90)),
        ("bytes=-5", (95, 5)),
        ("bytes=-500", (0, 100)),
        ("bytes=90-500", (90, 10)),
        ("bytes=100-", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=0-1,5-6", None),  # multi-range: whole body
        ("bytes=5-1", None),
        ("bytes=a-b", None),
        ("items=0-1", None),
    ],
)
def test_parse_range_header(header: str | None, expected: object) -> None:
    assert parse_range_header(header, 100) == expected


@pytest.fixture
async def client():
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def fetch(client, url: str, method: str = "GET", **headers: str):
    async with client.request(method, url, headers=headers, allow_redirects=False) as response:
        return response.status, response.headers, await response.read()


@pytest.mark.parametrize("source", ["memory", "directory"])
async def test_serves_files_ranges_and_counts_bytes(tmp_path: Path, client, source: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(DATA)
    files = {"/d/f.bin": DATA} if source == "memory" else None
    root = tmp_path if source == "directory" else None
    async with OriginServer(root=root, files=files) as origin:
        url = origin.url("/d/f.bin")
        status, headers, body = await fetch(client, url, "HEAD")
        assert (status, headers["Content-Length"], body) == (200, str(len(DATA)), b"")
        assert headers["Accept-Ranges"] == "bytes"
        status, ranged_headers, body = await fetch(client, url, Range="bytes=100-199")
        assert (status, body) == (206, DATA[100:200])
        assert ranged_headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
        assert ranged_headers["ETag"] == headers["ETag"]
        status, _, body = await fetch(client, url)
        assert (status, body) == (200, DATA)
        status, headers, _ = await fetch(client, url, Range=f"bytes={len(DATA)}-")
        assert (status, headers["Content-Range"]) == (416, f"bytes */{len(DATA)}")
        assert (await fetch(client, origin.url("/d/missing")))[0] == 404
        assert origin.bytes_served_for("/d/f.bin") == 100 + len(DATA)
        assert origin.request_count("/d/f.bin") == 4
        assert origin.request_count(method="HEAD") == 1


async def test_directory_traversal_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (tmp_path / "root").mkdir()
    async with OriginServer(root=tmp_path / "root") as origin:
        reader, writer = await asyncio.open_connection("127.0.0.1", origin.port)
        writer.write(b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 404")
    assert b"secret" not in answer.split(b"\r\n\r\n", 1)[1]


async def test_behaviours_apply_per_path_and_globally(client) -> None:
    async with OriginServer(files={"/a": b"aaa", "/b": b"bbb"}) as origin:
        origin.set_behaviour(Behaviour(fail_first=1, fail_status=429, retry_after="3"), "/a")
        origin.set_behaviour(Behaviour(require_token="t"))
        status, headers, _ = await fetch(client, origin.url("/a"))
        assert (status, headers["Retry-After"]) == (429, "3")
        assert (await fetch(client, origin.url("/a")))[0] == 200  # failed once only
        assert (await fetch(client, origin.url("/b")))[0] == 401
        assert (await fetch(client, origin.url("/b"), Authorization="Bearer t"))[2] == b"bbb"
        origin.clear_behaviours()
        assert (await fetch(client, origin.url("/b")))[0] == 200
        origin.reset_stats()
        assert (origin.request_count(), origin.bytes_served) == (0, 0)


async def test_throttled_body_takes_its_time(client) -> None:
    async with OriginServer(files={"/slow": b"x" * 20_000}) as origin:
        origin.set_behaviour(Behaviour(rate=100_000), "/slow")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await fetch(client, origin.url("/slow")))[2] == b"x" * 20_000
        assert loop.time() - started >= 0.15  # 20 kB at 100 kB/s


async def test_command_line_serves_a_directory(tmp_path: Path, client) -> None:
    (tmp_path / "model.bin").write_bytes(DATA)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "damselfly.testing.origin",
        "--root",
        str(tmp_path),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith(f"serving {tmp_path} at http://127.0.0.1:")
        base = line.split(" at ", 1)[1].strip()
        status, _, body = await fetch(client, f"{base}/model.bin", Range="bytes=1-2")
        assert (status, body) == (206, DATA[1:3])
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
