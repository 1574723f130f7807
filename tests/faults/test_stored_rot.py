"""Bytes that rot in the store are never delivered (issue 12, item 3): a piece flipped in a
stored file with its mtime put back is found when the file is next delivered, fetched again
(one piece from the origin, not the file) and the output is byte-identical; a file delivered
as a copy does not change with the store; a user's edit of a hard-linked output stays theirs
while the daemon fetches the edited piece again for the next output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fault_helpers import MiB, flip_piece_keeping_mtime

from damselfly.testing.cluster import LocalCluster
from damselfly.testing.origin import OriginServer

PIECE = ("--piece-length", "1MiB", "--no-progress")


@pytest.fixture
async def origin():
    async with OriginServer() as server:
        yield server


async def test_standalone_rot_is_fetched_again_not_delivered(tmp_path, origin, dfget) -> None:
    data = os.urandom(6 * MiB)
    url = origin.put("/f.bin", data)
    first = await dfget.run(url, "-O", str(tmp_path / "one"), *PIECE, "--standalone")
    assert first.code == 0, first.stderr
    flip_piece_keeping_mtime(dfget.store, 2)
    origin.reset_stats()
    second = await dfget.run(url, "-O", str(tmp_path / "two"), *PIECE, "--standalone")
    assert second.code == 0, second.stderr
    assert (tmp_path / "two").read_bytes() == data
    assert origin.bytes_served_for("/f.bin") == MiB  # the bad piece, not the file


async def test_corrupting_the_store_does_not_change_a_copied_output(
    tmp_path, origin, dfget
) -> None:
    data = os.urandom(3 * MiB)
    url = origin.put("/f.bin", data)
    out = tmp_path / "out"
    done = await dfget.run(url, "-O", str(out), *PIECE, "--standalone", "--no-hard-link")
    assert done.code == 0, done.stderr
    assert out.stat().st_nlink == 1  # a copy (or reflink), not a link into the store
    flip_piece_keeping_mtime(dfget.store, 1)
    assert out.read_bytes() == data


async def test_rot_in_a_daemons_store_is_fetched_again(tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    async with LocalCluster(tmp_path, peers=1, seeds=0, origin_files={"/f.bin": data}) as cluster:
        url = cluster.origin.url("/f.bin")
        first = await cluster.dfget(0, url, tmp_path / "one", *PIECE)
        assert first.code == 0, first.stderr
        store_dir = cluster.peers[0].storage_dir
        assert store_dir is not None
        flip_piece_keeping_mtime(store_dir, 4)
        cluster.origin.reset_stats()
        second = await cluster.dfget(0, url, tmp_path / "two", *PIECE)
    assert second.code == 0, second.stderr
    assert (tmp_path / "two").read_bytes() == data
    assert cluster.origin.bytes_served_for("/f.bin") <= MiB


async def test_an_edited_linked_output_stays_the_users_through_the_daemon(tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    async with LocalCluster(tmp_path, peers=1, seeds=0, origin_files={"/f.bin": data}) as cluster:
        url = cluster.origin.url("/f.bin")
        first = await cluster.dfget(0, url, tmp_path / "one", *PIECE)
        assert first.code == 0, first.stderr
        one = tmp_path / "one"
        assert one.stat().st_nlink == 2  # the daemon's store file is the output
        with open(one, "r+b") as f:  # the user edits their output (mtime moves)
            f.seek(3 * MiB + 9)
            f.write(bytes([data[3 * MiB + 9] ^ 1]))
        edited = one.read_bytes()
        cluster.origin.reset_stats()
        second = await cluster.dfget(0, url, tmp_path / "two", *PIECE)
        assert second.code == 0, second.stderr
        assert (tmp_path / "two").read_bytes() == data
        assert one.read_bytes() == edited  # never repaired behind the user's back
        assert cluster.origin.bytes_served_for("/f.bin") <= MiB  # the edited piece only
