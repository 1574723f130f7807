"""Failures seen through a real dfdaemon read like standalone ones (issue 12, items 2 and 4):
one line, no exception class names; a daemon killed mid-download is finished by dfget itself;
a full store fails one download and heals for the next."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from fault_helpers import LEAKS, MiB, assert_all_delivered, one_error_line

from damselfly.storage.store import Store
from damselfly.testing.cluster import LocalCluster
from damselfly.testing.origin import Behaviour
from damselfly.testing.polling import wait_until

PIECE = ("--piece-length", "1MiB", "--no-progress")
QUOTA = 24 * MiB
ON_SMALL_DISK = {"DAMSELFLY_DAEMON_STORAGE_QUOTA": str(QUOTA)}


def one_daemon(tmp_path: Path, **settings: object) -> LocalCluster:
    return LocalCluster(tmp_path, peers=1, seeds=0, **settings)  # type: ignore[arg-type]


async def test_daemon_killed_mid_download_dfget_finishes_alone(tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    async with one_daemon(tmp_path, origin_files={"/f.bin": data}) as cluster:
        cluster.origin.set_behaviour(Behaviour(rate=2 * MiB), "/f.bin")
        out = tmp_path / "out.bin"
        run = asyncio.create_task(cluster.dfget(0, cluster.origin.url("/f.bin"), out, *PIECE))
        await wait_until(lambda: cluster.origin.bytes_served >= MiB, within=30, interval=0.02)
        await cluster.kill(cluster.peers[0], signal.SIGKILL)
        cluster.origin.clear_behaviours()
        done = await run
    assert done.code == 0, done.stderr
    assert out.read_bytes() == data
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dfget: warning: dfdaemon went away mid-download ("), lines[0]
    assert lines[0].endswith("); finishing without it")
    assert not LEAKS.search(lines[0])


async def test_daemon_killed_with_back_to_source_disabled_says_so(tmp_path: Path) -> None:
    files = {"/f.bin": os.urandom(4 * MiB)}
    async with LocalCluster(tmp_path, peers=1, seeds=1, origin_files=files) as cluster:
        cluster.origin.set_behaviour(Behaviour(rate=MiB), "/f.bin")  # the seed reads it
        argv = (*PIECE, "--disable-back-to-source")
        run = asyncio.create_task(cluster.dfget(0, cluster.origin.url("/f.bin"), "o", *argv))
        await wait_until(lambda: cluster.origin.bytes_served > 0, within=30, interval=0.02)
        await cluster.kill(cluster.peers[0], signal.SIGKILL)
        done = await run
    assert done.code == 1
    assert "dfdaemon went away mid-download" in one_error_line(done)
    assert "--disable-back-to-source" in done.stderr


async def test_a_download_too_big_for_the_store_fails_and_the_next_one_works(
    tmp_path: Path, small_disk: Path
) -> None:
    files = {"/big.bin": os.urandom(40 * MiB), "/small.bin": os.urandom(4 * MiB)}
    async with one_daemon(tmp_path, origin_files=files, env=ON_SMALL_DISK) as cluster:
        big = await cluster.dfget(0, cluster.origin.url("/big.bin"), tmp_path / "big", *PIECE)
        small_out = tmp_path / "small"
        small = await cluster.dfget(0, cluster.origin.url("/small.bin"), small_out, *PIECE)
    assert big.code == 1
    assert f"no space for {40 * MiB} bytes in {small_disk} (free " in one_error_line(big)
    assert cluster.origin.bytes_served_for("/big.bin") == 0  # refused before fetching
    assert small.code == 0, small.stderr
    assert small_out.read_bytes() == files["/small.bin"]


async def test_a_disk_filled_mid_download_fails_one_line_and_heals(
    tmp_path: Path, small_disk: Path
) -> None:
    files = {"/f.bin": os.urandom(16 * MiB), "/next.bin": os.urandom(4 * MiB)}
    async with one_daemon(tmp_path, origin_files=files, env=ON_SMALL_DISK) as cluster:
        cluster.origin.set_behaviour(Behaviour(rate=4 * MiB), "/f.bin")
        url = cluster.origin.url("/f.bin")
        run = asyncio.create_task(cluster.dfget(0, url, tmp_path / "f", *PIECE))
        await wait_until(lambda: cluster.origin.bytes_served >= 2 * MiB, within=30, interval=0.02)
        filler = small_disk / "filler"  # another writer takes what is left of the disk
        fill_up(filler)
        failed = await run
        filler.unlink()
        next_out = tmp_path / "next"
        healed = await cluster.dfget(0, cluster.origin.url("/next.bin"), next_out, *PIECE)
        with Store(small_disk) as store:
            usage = store.usage_bytes()
    assert failed.code == 1
    assert "no space" in one_error_line(failed)
    assert healed.code == 0, healed.stderr + cluster.logs()
    assert next_out.read_bytes() == files["/next.bin"]
    assert usage <= QUOTA


async def test_origin_resets_through_the_daemon_are_one_line(tmp_path: Path) -> None:
    async with one_daemon(tmp_path, origin_files={"/f.bin": os.urandom(4 * MiB)}) as cluster:
        cluster.origin.set_behaviour(Behaviour(short_body=1000))
        url = cluster.origin.url("/f.bin")
        done = await cluster.dfget(0, url, tmp_path / "f", *PIECE, "--origin-retries", "1")
    assert done.code == 1
    assert url in one_error_line(done)


async def test_an_over_long_host_label_is_a_usage_error_through_the_daemon(tmp_path: Path) -> None:
    url = f"http://{'a' * 300}.example/f.bin"
    async with one_daemon(tmp_path) as cluster:
        done = await cluster.dfget(0, url, tmp_path / "f")
    assert done.code == 2
    assert "host" in one_error_line(done)


def fill_up(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(256 * 1024))
    except OSError:
        pass  # full
    finally:
        os.close(fd)


async def test_more_dfget_than_the_users_download_slots_wait_for_one(tmp_path: Path) -> None:
    """Three dfget at once on a daemon that runs one download per user: the other two wait
    for the slot (they used to fail with "1 downloads of this user are running already")."""
    data = os.urandom(2 * MiB)
    one_slot = {"DAMSELFLY_DAEMON_LOCAL_API_CALLS_PER_CALLER": "1"}
    async with one_daemon(tmp_path, origin_files={"/f.bin": data}, env=one_slot) as cluster:
        cluster.origin.set_behaviour(Behaviour(rate=2 * MiB), "/f.bin")
        url = cluster.origin.url("/f.bin")
        outs = [tmp_path / f"out-{i}" for i in range(3)]
        runs = await asyncio.gather(*(cluster.dfget(0, url, out, *PIECE) for out in outs))
        served = cluster.origin.bytes_served_for("/f.bin")
    assert_all_delivered(list(runs), outs, data)
    assert served == len(data)  # the first run filled the store; the others reused it
