"""An origin that replaces the file mid-download never yields a file of two versions.

Real ``OriginServer`` on loopback, real ``HttpBackend`` and store; the origin swaps the file
after some bytes went out, with every mix of validators. The download either delivers the new
version whole (one restart) or fails with ``SourceChangedError``; never a splice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from damselfly.backends.base import RequestOptions, SourceVersion
from damselfly.backends.file import FileBackend
from damselfly.backends.http import HttpBackend, RetryPolicy
from damselfly.backends.registry import BackendRegistry
from damselfly.core.errors import SourceChangedError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import parse_url
from damselfly.download.events import CountingObserver
from damselfly.download.file_download import SOURCE_VERSION_PARAM, download_file, fill_file
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.storage.store import Store
from damselfly.testing.memory_backend import MemoryBackend
from damselfly.testing.origin import OriginServer

PIECE = 64 * 1024
LENGTH = 32 * PIECE
FAST_RETRY = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.01, jitter=0.0)


@pytest.fixture
async def origin() -> AsyncIterator[OriginServer]:
    async with OriginServer() as server:
        yield server


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[DownloadContext]:
    backend = HttpBackend(retry=FAST_RETRY)
    registry = BackendRegistry({"http": lambda: backend})
    # small requests, so that many of them go out before and after the swap
    policy = FetchPolicy(concurrency=4, retry_delay=0, max_request_length=2 * PIECE)
    with Store(tmp_path / "store") as store:
        yield DownloadContext(store, registry, CountingObserver(), policy)
    await backend.aclose()


def job(tmp_path: Path, url: str) -> FileJob:
    return FileJob(url=parse_url(url), output=tmp_path / "out.bin", piece_length=PIECE)


VARIANTS = {
    "etag, same length": dict(etag=True, dated=True, new_length=LENGTH),
    "etag, new length": dict(etag=True, dated=True, new_length=LENGTH + 3 * PIECE + 5),
    "date only": dict(etag=False, dated=True, new_length=LENGTH),
    "no validator, same length": dict(etag=False, dated=False, new_length=LENGTH),
    "no validator, new length": dict(etag=False, dated=False, new_length=LENGTH - 7),
}


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=list(VARIANTS))
async def test_a_changed_origin_gives_one_whole_version(tmp_path, origin, ctx, variant):
    old, new = os.urandom(LENGTH), os.urandom(variant["new_length"])
    validators = dict(etag=variant["etag"], dated=variant["dated"])
    url = origin.put("/f.bin", old, **validators)
    origin.replace_after("/f.bin", 6 * PIECE, new, **validators)
    await download_file(job(tmp_path, url), ctx)
    delivered = (tmp_path / "out.bin").read_bytes()
    if variant["etag"] or variant["dated"]:
        assert delivered == new  # restarted once from the new version
    else:  # no validator: one stream, which is one version whole
        assert delivered in (old, new)


async def test_validated_reads_carry_if_range(tmp_path, origin, ctx):
    data = os.urandom(LENGTH)
    url = origin.put("/f.bin", data)
    await download_file(job(tmp_path, url), ctx)
    ranged = [r for r in origin.requests if r.method == "GET" and r.header("Range")]
    assert len(ranged) > 1
    assert {r.header("If-Range") for r in ranged} == {etag_of(data)}


class _ChangingBackend(MemoryBackend):
    """Replaces the object at the third read after each stat, ``changes`` times."""

    def __init__(self, changes: int) -> None:
        super().__init__(chunk_length=PIECE)
        self.changes = changes
        self._reads = 0

    async def stat(self, url, options):
        self._reads = 0
        return await super().stat(url, options)

    async def get(self, url, byte_range, options):
        self._reads += 1
        if self._reads == 3 and self.changes:
            self.changes -= 1
            self.put(url, os.urandom(LENGTH))
        async for chunk in super().get(url, byte_range, options):
            yield chunk


@pytest.mark.parametrize("changes", [1, 2])
async def test_one_restart_then_one_line(tmp_path, changes):
    backend = _ChangingBackend(changes)
    url = backend.put("https://origin.test/f.bin", os.urandom(LENGTH))
    policy = FetchPolicy(concurrency=1, retry_delay=0, max_request_length=2 * PIECE)
    registry = BackendRegistry({"https": lambda: backend})
    with Store(tmp_path / "store") as store:
        ctx = DownloadContext(store, registry, CountingObserver(), policy)
        if changes == 1:
            await download_file(job(tmp_path, url.redacted()), ctx)
            latest = backend.objects[url.redacted()].data
            assert (tmp_path / "out.bin").read_bytes() == latest
            return
        with pytest.raises(SourceChangedError) as caught:
            await download_file(job(tmp_path, url.redacted()), ctx)
    message = str(caught.value)
    assert message.startswith(f"{url.redacted()}: changed at the origin during the download")
    assert "\n" not in message
    assert not (tmp_path / "out.bin").exists()
    assert backend.call_count("stat") == 2  # restarted once, not more


@pytest.mark.parametrize(
    ("expected", "header"),
    [
        (SourceVersion(etag='"v1"', content_length=LENGTH), "ETag"),
        (SourceVersion(last_modified="Mon, 01 Jan 2001 00:00:00 GMT"), "Last-Modified"),
        (SourceVersion(content_length=LENGTH + 1), "length"),
    ],
)
async def test_backend_refuses_another_version(origin, expected, header):
    url = parse_url(origin.put("/f.bin", os.urandom(LENGTH)))
    backend = HttpBackend(retry=FAST_RETRY)
    options = RequestOptions().expecting(expected)
    try:
        with pytest.raises(SourceChangedError, match=header):
            async for _ in backend.get(url, ByteRange(PIECE, PIECE), options):
                pass
        with pytest.raises(SourceChangedError):
            async for _ in backend.get(url, None, options):
                pass
    finally:
        await backend.aclose()


async def test_backend_accepts_the_same_version(origin):
    data = os.urandom(LENGTH)
    url = parse_url(origin.put("/f.bin", data))
    backend = HttpBackend(retry=FAST_RETRY)
    try:
        stat = await backend.stat(url, RequestOptions())
        options = RequestOptions().expecting(stat.version)
        chunks = [c async for c in backend.get(url, ByteRange(PIECE, PIECE), options)]
    finally:
        await backend.aclose()
    assert b"".join(chunks) == data[PIECE : 2 * PIECE]


def etag_of(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


class _NoValidatorBackend(MemoryBackend):
    """An origin with no validators whose first body breaks off, then serves a new file."""

    def __init__(self) -> None:
        super().__init__(chunk_length=PIECE)
        self.new = os.urandom(LENGTH)

    async def get(self, url, byte_range, options):
        try:
            async for chunk in super().get(url, byte_range, options):
                yield chunk
        finally:
            self.put(url, self.new, no_validator=True)


async def test_no_validator_reread_compares_held_pieces(tmp_path):
    backend = _NoValidatorBackend()
    url = backend.put(
        "https://origin.test/f.bin", os.urandom(LENGTH), no_validator=True, truncate_at=LENGTH // 2
    )
    registry = BackendRegistry({"https": lambda: backend})
    with Store(tmp_path / "store") as store:
        ctx = DownloadContext(store, registry, CountingObserver(), FetchPolicy(retry_delay=0))
        await download_file(job(tmp_path, url.redacted()), ctx)
    assert (tmp_path / "out.bin").read_bytes() == backend.new
    ranged = [c for c in backend.calls if c.operation == "get" and c.byte_range is not None]
    assert ranged == []  # nothing to check ranges against: one stream
    assert backend.call_count("stat") == 2  # the change was seen, and the download restarted


async def test_a_seed_never_fills_a_task_from_another_version(tmp_path):
    """A seed's job names the version its task id stands for; the origin has moved on."""
    backend = MemoryBackend()
    url = backend.put("https://origin.test/f.bin", os.urandom(LENGTH), etag='"v2"')
    seed_job = FileJob(
        url=url,
        output=Path("/nonexistent"),
        options=RequestOptions(params=((SOURCE_VERSION_PARAM, '"v1"'),)),
        piece_length=PIECE,
        task_id="b" * 64,
    )
    registry = BackendRegistry({"https": lambda: backend})
    with Store(tmp_path / "store") as store:
        ctx = DownloadContext(store, registry, CountingObserver(), FetchPolicy(retry_delay=0))
        with pytest.raises(SourceChangedError):
            await fill_file(seed_job, ctx)
        assert store.get_task("b" * 64) is None
    assert backend.call_count("get") == 0


async def test_a_local_file_rewritten_since_stat_is_another_version(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(LENGTH))
    backend = FileBackend()
    url = parse_url(source.as_uri())
    stat = await backend.stat(url, RequestOptions())
    options = RequestOptions().expecting(stat.version)
    assert len(b"".join([c async for c in backend.get(url, ByteRange(0, PIECE), options)])) == PIECE
    os.utime(source, ns=(0, stat_mtime_ns(source) + 1_000_000_000))
    with pytest.raises(SourceChangedError, match="ETag"):
        async for _ in backend.get(url, ByteRange(0, PIECE), options):
            pass


def stat_mtime_ns(path: Path) -> int:
    return path.stat().st_mtime_ns
