"""An origin that misbehaves, through real daemons (issue 12, item 7): 429 with Retry-After
(waited for, and never longer than the retry policy's cap), ``Range`` ignored (correct bytes,
the file read about once, not once per piece), the file replaced while a seed reads it with
peers downloading from that seed (every node ends with one version, or one line), and 5
(50 in ``faults_long``) dfget at once on one daemon (one origin read, all byte-identical, no
descriptor leaked)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from fault_helpers import MiB, assert_all_delivered, one_error_line

from damselfly.testing.cluster import LocalCluster, Node
from damselfly.testing.origin import Behaviour
from damselfly.testing.polling import wait_until

ARGS = ("--piece-length", "1MiB", "--no-progress")
FAST = {"DAMSELFLY_DAEMON_ANNOUNCE_INTERVAL": "1"}
CHANGED = "changed at the origin during the download"


async def test_429_with_retry_after_is_waited_for_then_the_download_succeeds(
    tmp_path: Path,
) -> None:
    data = os.urandom(4 * MiB)
    async with LocalCluster(tmp_path, peers=1, seeds=0, origin_files={"/f.bin": data}) as cluster:
        limited = Behaviour(fail_first=2, fail_status=429, retry_after="2")
        cluster.origin.set_behaviour(limited, "/f.bin")
        url = cluster.origin.url("/f.bin")
        done = await cluster.dfget(0, url, tmp_path / "out", *ARGS)
        answered = cluster.origin.request_count("/f.bin")
    assert done.code == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == data
    assert answered >= 3  # two 429s, then the real answers
    # two waits of Retry-After (2 s each), not the policy's own shorter backoff (0.5 s, 1 s)
    assert 4 <= done.seconds < 20, done.seconds


@pytest.mark.faults_long
async def test_a_huge_retry_after_is_capped_by_the_retry_policy(tmp_path: Path) -> None:
    data = os.urandom(MiB)
    async with LocalCluster(tmp_path, peers=1, seeds=0, origin_files={"/f.bin": data}) as cluster:
        limited = Behaviour(fail_first=1, fail_status=429, retry_after="3600")
        cluster.origin.set_behaviour(limited, "/f.bin")
        done = await cluster.dfget(0, cluster.origin.url("/f.bin"), tmp_path / "out", *ARGS)
    assert done.code == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == data
    assert done.seconds < 45, done.seconds  # RetryPolicy.max_delay (30 s), not an hour


async def test_an_origin_ignoring_range_is_read_about_once_through_the_mesh(
    tmp_path: Path,
) -> None:
    data = os.urandom(16 * MiB)
    files = {"/f.bin": data}
    async with LocalCluster(tmp_path, peers=2, seeds=1, origin_files=files, env=FAST) as cluster:
        cluster.origin.set_behaviour(Behaviour(ignore_range=True), "/f.bin")
        url = cluster.origin.url("/f.bin")
        outs = [tmp_path / "out-0", tmp_path / "out-1"]
        runs = await asyncio.gather(
            *(cluster.dfget(i, url, out, *ARGS) for i, out in enumerate(outs))
        )
        served = cluster.origin.bytes_served_for("/f.bin")
        logs = cluster.logs()
    assert_all_delivered(list(runs), outs, data, logs)
    # one whole read (measured: 16.0 MiB), never one whole body per piece (16 x)
    assert served <= 1.5 * len(data), f"origin served {served / MiB:.1f} MiB\n{logs}"


async def test_a_file_replaced_while_the_seed_reads_it_never_reaches_a_peer_spliced(
    tmp_path: Path,
) -> None:
    """Three peers download from the seed while the origin swaps the file after 6 MiB: each
    ends with one whole version (the new one, after a restart) or one line."""
    length = 16 * MiB
    old, new = os.urandom(length), os.urandom(length)
    files = {"/f.bin": old}
    async with LocalCluster(tmp_path, peers=3, seeds=1, origin_files=files, env=FAST) as cluster:
        cluster.origin.set_behaviour(Behaviour(rate=4 * MiB), "/f.bin")
        url = cluster.origin.url("/f.bin")
        cluster.origin.replace_after("/f.bin", 6 * MiB, new)
        outs = [tmp_path / f"out-{i}" for i in range(3)]
        runs = await asyncio.gather(
            *(cluster.dfget(i, url, out, *ARGS) for i, out in enumerate(outs))
        )
        logs = cluster.logs()
        seed_log = cluster.seeds[0].stderr_text()
    assert CHANGED in seed_log, logs  # the seed did meet the change mid-task
    for run, out in zip(runs, outs, strict=True):
        if run.code == 0:
            assert out.read_bytes() == new, f"a file of two versions or the old one\n{logs}"
            continue
        lines = run.stderr.strip().splitlines()
        assert run.code == 1, run.stderr + logs
        assert len(lines) == 1, run.stderr
        assert CHANGED in lines[0], run.stderr
        assert not out.exists()
    assert any(run.code == 0 for run in runs), logs  # a restart on the new version works


def open_descriptors(node: Node) -> int:
    assert node.process is not None
    return len(os.listdir(f"/proc/{node.process.pid}/fd"))


@pytest.mark.parametrize(
    "count",
    [
        5,
        # real processes on a shared 2-core machine: minutes, not seconds
        pytest.param(50, marks=[pytest.mark.faults_long, pytest.mark.timeout(900)]),
    ],
)
async def test_many_dfget_at_once_on_one_daemon_read_the_origin_once(
    tmp_path: Path, count: int
) -> None:
    data = os.urandom(8 * MiB)
    files = {"/f.bin": data}
    async with LocalCluster(
        tmp_path, peers=1, seeds=0, origin_files=files, dfget_timeout=300
    ) as cluster:
        cluster.origin.set_behaviour(Behaviour(rate=4 * MiB), "/f.bin")  # ~1 s: they overlap
        url = cluster.origin.url("/f.bin")
        node = cluster.peers[0]
        warm = await cluster.dfget(node, cluster.origin.put("/warm", b"w"), tmp_path / "warm")
        assert warm.code == 0, warm.stderr
        before = open_descriptors(node)
        outs = [tmp_path / f"out-{i}" for i in range(count)]
        runs = await asyncio.gather(*(cluster.dfget(node, url, out, *ARGS) for out in outs))
        served = cluster.origin.bytes_served_for("/f.bin")
        logs = cluster.logs()
        # no descriptor leaked (the task's content file may stay open: the upload cache)
        await wait_until(lambda: open_descriptors(node) <= before + 5, within=10)
    assert_all_delivered(list(runs), outs, data, logs)
    assert served == len(data), f"origin served {served / MiB:.1f} MiB"


async def test_origin_5xx_through_the_daemon_transient_succeeds_persistent_is_one_line(
    tmp_path: Path,
) -> None:
    files = {"/flaky.bin": os.urandom(2 * MiB), "/down.bin": os.urandom(MiB)}
    async with LocalCluster(tmp_path, peers=1, seeds=0, origin_files=files) as cluster:
        cluster.origin.set_behaviour(Behaviour(fail_first=2, fail_status=502), "/flaky.bin")
        cluster.origin.set_behaviour(Behaviour(status=503), "/down.bin")
        flaky = await cluster.dfget(0, cluster.origin.url("/flaky.bin"), tmp_path / "a", *ARGS)
        down_url = cluster.origin.url("/down.bin")
        down = await cluster.dfget(0, down_url, tmp_path / "b", *ARGS, "--origin-retries", "1")
    assert flaky.code == 0, flaky.stderr
    assert (tmp_path / "a").read_bytes() == files["/flaky.bin"]
    assert down.code == 1
    line = one_error_line(down)
    assert down_url in line, line
    assert "503" in line, line
    assert not (tmp_path / "b").exists()
