"""The download pipeline (stat -> task -> pieces -> digest -> delivery) on a real store, with
the in-memory backend as origin."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import pytest

from damselfly.backends.base import Entry, RequestOptions
from damselfly.backends.registry import BackendRegistry
from damselfly.core.digests import Digest
from damselfly.core.errors import (
    FileDigestError,
    OutputError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceUnreachableError,
)
from damselfly.core.urls import parse_url
from damselfly.download.events import CountingObserver
from damselfly.download.file_download import download_file
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.download.source_fetcher import FetchPolicy, plan_runs
from damselfly.download.tree_download import TreeJob, download_tree
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.store import Store
from damselfly.testing.memory_backend import MemoryBackend

PIECE = 64 * 1024
URL = "https://origin.test/models/weights.bin"


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store") as store:
        yield store


@pytest.fixture
def ctx(backend: MemoryBackend, store: Store) -> DownloadContext:
    registry = BackendRegistry({"https": lambda: backend, "s3": lambda: backend})
    policy = FetchPolicy(concurrency=4, retry_delay=0)
    return DownloadContext(
        store=store, registry=registry, observer=CountingObserver(), policy=policy
    )


def job(tmp_path: Path, url: str = URL, name: str = "out.bin", **kw) -> FileJob:
    return FileJob(url=parse_url(url), output=tmp_path / "out" / name, piece_length=PIECE, **kw)


async def test_multi_piece_download_is_byte_identical(tmp_path, backend, ctx):
    data = os.urandom(10 * PIECE + 123)
    backend.put(URL, data, etag='"v1"')
    result = await download_file(job(tmp_path), ctx)
    assert (tmp_path / "out" / "out.bin").read_bytes() == data
    assert result.source_bytes == len(data)
    assert result.reused_bytes == 0
    assert result.delivery is DeliveryMethod.HARD_LINK  # same file system: the store's file
    assert ctx.observer.received_bytes == len(data)
    # consecutive pieces share a range request: 11 pieces, 4 workers -> runs of 2
    assert backend.call_count("get") == len(plan_runs(range(11), PIECE, ctx.policy)) == 6


async def test_second_download_is_served_from_the_store(tmp_path, backend, ctx):
    data = os.urandom(3 * PIECE)
    backend.put(URL, data, etag='"v1"')
    await download_file(job(tmp_path), ctx)
    gets = backend.call_count("get")
    result = await download_file(job(tmp_path, name="again.bin"), ctx)
    assert backend.call_count("get") == gets
    assert result.source_bytes == 0
    assert result.reused_bytes == len(data)
    assert (tmp_path / "out" / "again.bin").read_bytes() == data


async def test_changed_etag_is_a_new_task(tmp_path, backend, ctx):
    backend.put(URL, b"a" * PIECE, etag='"v1"')
    first = await download_file(job(tmp_path), ctx)
    backend.put(URL, b"b" * PIECE, etag='"v2"')
    second = await download_file(job(tmp_path, name="new.bin"), ctx)
    assert first.task_id != second.task_id
    assert (tmp_path / "out" / "new.bin").read_bytes() == b"b" * PIECE


async def test_failed_download_resumes_from_verified_pieces(tmp_path, backend, ctx):
    data = os.urandom(8 * PIECE)
    backend.put(URL, data, etag='"v1"', truncate_at=5 * PIECE + 10)
    with pytest.raises(SourceProtocolError, match="expected"):
        await download_file(job(tmp_path), ctx)
    assert not (tmp_path / "out" / "out.bin").exists()
    backend.put(URL, data, etag='"v1"')
    backend.bytes_served.clear()
    result = await download_file(job(tmp_path), ctx)
    assert 0 < result.reused_bytes <= 5 * PIECE  # pieces in flight at the failure may be lost
    assert backend.bytes_served[URL] == len(data) - result.reused_bytes
    assert (tmp_path / "out" / "out.bin").read_bytes() == data


async def test_origin_ignoring_ranges_falls_back_to_one_stream(tmp_path, backend, ctx):
    data = os.urandom(5 * PIECE + 7)
    backend.put(URL, data, ignore_ranges=True)
    result = await download_file(job(tmp_path), ctx)
    assert (tmp_path / "out" / "out.bin").read_bytes() == data
    assert result.source_bytes == len(data)


async def test_transient_errors_are_retried_per_piece(tmp_path, backend, ctx):
    data = os.urandom(2 * PIECE)
    backend.put(URL, data)
    backend.fail(URL, SourceUnreachableError(URL, "connection reset"), times=1)
    with pytest.raises(SourceUnreachableError):  # stat itself is not retried here
        await download_file(job(tmp_path), ctx)
    stat_calls = backend.call_count("stat")
    backend.put(URL, data)
    await download_file(job(tmp_path), ctx)
    assert backend.call_count("stat") == stat_calls + 1
    assert (tmp_path / "out" / "out.bin").read_bytes() == data


async def test_piece_body_error_retries_the_piece(tmp_path, backend, ctx, monkeypatch):
    data = os.urandom(3 * PIECE)
    backend.put(URL, data)
    original_get = backend.get
    broken = {"left": 2}

    async def flaky_get(url, byte_range, options):
        if broken["left"] and byte_range is not None and byte_range.start == PIECE:
            broken["left"] -= 1
            yield data[PIECE : PIECE + 10]
            raise SourceProtocolError(URL, "connection closed early")
        async for chunk in original_get(url, byte_range, options):
            yield chunk

    monkeypatch.setattr(backend, "get", flaky_get)
    await download_file(job(tmp_path), ctx)
    assert broken["left"] == 0
    assert (tmp_path / "out" / "out.bin").read_bytes() == data


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "crc32"])
async def test_correct_digest_passes(tmp_path, backend, ctx, algorithm):
    data = os.urandom(4 * PIECE + 1)
    backend.put(URL, data)
    hexdigest = (
        f"{zlib.crc32(data):08x}"
        if algorithm == "crc32"
        else hashlib.new(algorithm, data).hexdigest()
    )
    await download_file(job(tmp_path, expected_digest=Digest(algorithm, hexdigest)), ctx)
    assert (tmp_path / "out" / "out.bin").read_bytes() == data


async def test_wrong_digest_fails_and_keeps_nothing(tmp_path, backend, ctx, store):
    data = os.urandom(4 * PIECE)
    backend.put(URL, data)
    wrong = Digest("sha256", hashlib.sha256(b"other").hexdigest())
    with pytest.raises(FileDigestError, match="digest mismatch") as caught:
        await download_file(job(tmp_path, expected_digest=wrong), ctx)
    assert URL in str(caught.value)
    assert not (tmp_path / "out" / "out.bin").exists()
    assert list((tmp_path / "out").glob("*")) == []
    task = store.open_task(
        caught.value and _only_task_id(store), url=URL, content_length=len(data), piece_length=PIECE
    )
    with task:
        assert task.finished_pieces() == frozenset()


def _only_task_id(store: Store) -> str:
    (meta,) = store.list_tasks()
    return meta.task_id


async def test_origin_digest_names_the_task_by_content(tmp_path, backend, ctx):
    data = os.urandom(2 * PIECE)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    backend.put(URL, data, content_digest=digest)
    mirror = "https://mirror.test/elsewhere/weights.bin"
    backend.put(mirror, data, content_digest=digest)
    first = await download_file(job(tmp_path), ctx)
    second = await download_file(job(tmp_path, url=mirror, name="mirror.bin"), ctx)
    assert first.task_id == second.task_id
    assert second.source_bytes == 0


async def test_existing_output_is_refused_before_any_request(tmp_path, backend, ctx):
    backend.put(URL, b"x" * 10)
    target = tmp_path / "out" / "out.bin"
    target.parent.mkdir()
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        await download_file(job(tmp_path), ctx)
    assert backend.calls == []
    assert target.read_bytes() == b"precious"
    await download_file(job(tmp_path, overwrite=True), ctx)
    assert target.read_bytes() == b"x" * 10


async def test_listing_length_must_match_origin(tmp_path, backend, ctx):
    backend.put(URL, b"x" * 100)
    with pytest.raises(SourceProtocolError, match="listing says 99 bytes"):
        await download_file(job(tmp_path, expected_length=99), ctx)


async def test_missing_object(tmp_path, ctx):
    with pytest.raises(SourceNotFoundError):
        await download_file(job(tmp_path), ctx)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


async def test_empty_file(tmp_path, backend, ctx):
    backend.put(URL, b"")
    await download_file(job(tmp_path), ctx)
    assert (tmp_path / "out" / "out.bin").read_bytes() == b""


async def test_tree_download_with_globs(tmp_path, backend, ctx):
    files = {
        "config.json": b"{}",
        "model.safetensors": os.urandom(3 * PIECE),
        "onnx/model.onnx": b"onnx",
        "README.md": b"# hi",
    }
    for path, data in files.items():
        backend.put(f"s3://bucket/repo/{path}", data)
    tree = TreeJob(
        template=FileJob(
            url=parse_url("s3://bucket/repo/"), output=tmp_path / "dst", piece_length=PIECE
        ),
        include=("*.json", "*.safetensors", "onnx/"),
        exclude=("*.onnx",),
    )
    results = await download_tree(tree, ctx)
    assert sorted(r.job.name for r in results) == ["config.json", "model.safetensors"]
    for path in ("config.json", "model.safetensors"):
        assert (tmp_path / "dst" / path).read_bytes() == files[path]
    assert not (tmp_path / "dst" / "onnx").exists()


class _HostileListing(MemoryBackend):
    async def list(self, url, options: RequestOptions):
        return [
            Entry(parse_url("s3://bucket/repo/ok"), "ok", 1),
            Entry(parse_url("s3://bucket/x"), "../../etc/cron.d/evil", 1),
        ]


async def test_tree_download_rejects_hostile_listing(tmp_path, store):
    backend = _HostileListing()
    registry = BackendRegistry({"s3": lambda: backend})
    ctx = DownloadContext(store=store, registry=registry, observer=CountingObserver())
    tree = TreeJob(template=FileJob(url=parse_url("s3://bucket/repo/"), output=tmp_path / "dst"))
    with pytest.raises(SourceProtocolError, match="unsafe path"):
        await download_tree(tree, ctx)
    assert backend.call_count("get") == 0
