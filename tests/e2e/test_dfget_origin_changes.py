"""A file replaced at the origin mid-download, with the real dfget: standalone, through a
daemon, and on a second node fed from the first. Never exit 0 with bytes of two versions:
either the new version whole, or one line saying the file changed at the origin."""

from __future__ import annotations

import os

import pytest

from damselfly.testing.cluster import LocalCluster
from damselfly.testing.origin import OriginServer

MiB = 1024 * 1024
LENGTH = 16 * MiB
CHANGED = "changed at the origin during the download"

VARIANTS = {
    "etag, same length": dict(etag=True, dated=True, new_length=LENGTH),
    "etag, new length": dict(etag=True, dated=True, new_length=LENGTH + MiB + 3),
    "date only": dict(etag=False, dated=True, new_length=LENGTH),
    "no validator": dict(etag=False, dated=False, new_length=LENGTH),
}


def assert_one_version(code: int, stderr: str, output, old: bytes, new: bytes) -> None:
    if code == 0:
        assert output.read_bytes() in (old, new), "a file of two versions"
        return
    assert code == 1, stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1, stderr
    assert CHANGED in errors[0], stderr
    assert not output.exists()


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=list(VARIANTS))
async def test_standalone_dfget_never_splices(tmp_path, dfget, variant):
    old, new = os.urandom(LENGTH), os.urandom(variant["new_length"])
    validators = dict(etag=variant["etag"], dated=variant["dated"])
    async with OriginServer() as origin:
        url = origin.put("/f.bin", old, **validators)
        origin.replace_after("/f.bin", 3 * MiB, new, **validators)
        out = tmp_path / "out.bin"
        done = await dfget.run(url, "-O", str(out), "--standalone", "--piece-length", "1MiB")
    assert_one_version(done.code, done.stderr, out, old, new)
    if variant["etag"] or variant["dated"]:
        assert done.code == 0, done.stderr
        assert out.read_bytes() == new  # one restart from the new version


async def test_standalone_dfget_changed_twice_fails_on_one_line(tmp_path, dfget):
    async with OriginServer() as origin:
        url = origin.put("/f.bin", os.urandom(LENGTH))
        origin.replace_after("/f.bin", 3 * MiB, os.urandom(LENGTH))
        origin.replace_after("/f.bin", 3 * MiB, os.urandom(LENGTH))  # after the restart's HEAD
        out = tmp_path / "out.bin"
        done = await dfget.run(url, "-O", str(out), "--standalone", "--piece-length", "1MiB")
    assert done.code == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"dfget: error: {url}: {CHANGED} (again, after a restart)"
    assert not out.exists()


@pytest.mark.slow
async def test_through_the_mesh_no_node_gets_two_versions(tmp_path):
    old, new = os.urandom(LENGTH), os.urandom(LENGTH)
    async with LocalCluster(tmp_path / "c", peers=2, origin_files={"/f.bin": old}) as cluster:
        url = cluster.origin.url("/f.bin")
        cluster.origin.replace_after("/f.bin", 3 * MiB, new)
        first, second = tmp_path / "first.bin", tmp_path / "second.bin"
        done = await cluster.dfget(0, url, first, "--piece-length", "1MiB")
        assert_one_version(done.code, done.stderr, first, old, new)
        assert done.code == 0, f"{done.stderr}\n{cluster.logs()}"
        assert first.read_bytes() == new
        done = await cluster.dfget(1, url, second, "--piece-length", "1MiB")
        assert done.code == 0, f"{done.stderr}\n{cluster.logs()}"
        assert second.read_bytes() == new
