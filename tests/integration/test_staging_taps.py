"""Pieces written to a staged output as they arrive (``StagedOutput.tap_part``/``tap_end``,
``PieceStream``'s output taps): on a real store and real files. Tests that deliver
read the output back; the copy from the content file is made to fail where a test says no
piece may need it, so a tap that silently wrote nothing fails the test."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.backends.registry import BackendRegistry
from damselfly.core.digests import piece_digest
from damselfly.core.errors import PieceDigestError
from damselfly.core.urls import parse_url
from damselfly.download.events import CountingObserver
from damselfly.download.file_download import download_file
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.download.staged_delivery import StagedDelivery
from damselfly.storage import file_systems
from damselfly.storage import staging as staging_module
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.piece_stream import PieceStream
from damselfly.storage.staging import StagedOutput
from damselfly.storage.store import Store, TaskStorage
from damselfly.testing.memory_backend import MemoryBackend

TASK_ID = "7c" * 32
PIECE = 64 * 1024
PART = 16 * 1024
DATA = os.urandom(4 * PIECE - 500)  # four pieces, the last one short
URL = "https://origin.test/models/weights.bin"


def piece_bytes(number: int, data: bytes = DATA) -> bytes:
    return data[number * PIECE : (number + 1) * PIECE]


def parts(data: bytes) -> list[memoryview]:
    return [memoryview(data[i : i + PART]) for i in range(0, len(data), PART)]


def stream_piece(task: TaskStorage, number: int, data: bytes | None = None) -> None:
    """Piece ``number`` streamed part by part and recorded, as a parent's would be."""
    stream = PieceStream(task, number)
    for part in parts(piece_bytes(number) if data is None else data):
        stream.write([part])
    stream.finish(piece_digest(piece_bytes(number)))


def forbid_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    def copy_range(*args: object) -> bool:
        raise AssertionError("a piece was copied from the content file")

    monkeypatch.setattr(staging_module, "_copy_range", copy_range)


@contextlib.contextmanager
def tapped_task(tmp_path: Path) -> Iterator[tuple[Store, TaskStorage, StagedOutput]]:
    with Store(tmp_path / "store") as store:
        task = store.open_task(
            TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
        )
        staged = StagedOutput.open(tmp_path / "out.bin", overwrite=False)
        assert staged is not None
        task.add_output_tap(staged)
        try:
            yield store, task, staged
        finally:
            task.remove_output_tap(staged)
            staged.discard()
            task.close()


def deliver(store: Store, task: TaskStorage, staged: StagedOutput) -> bytes:
    task.mark_succeeded()
    assert store.deliver_staged(TASK_ID, staged) is DeliveryMethod.COPY
    return staged.dest.read_bytes()


def test_streamed_pieces_need_no_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tapped_task(tmp_path) as (store, task, staged):
        for number in (2, 0, 3, 1):
            stream_piece(task, number)
        assert staged.checked(TASK_ID) == {0, 1, 2, 3}
        forbid_copies(monkeypatch)
        assert deliver(store, task, staged) == DATA


def test_a_bad_piece_is_not_checked_and_is_copied_from_the_good_one(tmp_path: Path) -> None:
    bad = bytes(len(piece_bytes(1)))
    with tapped_task(tmp_path) as (store, task, staged):
        with pytest.raises(PieceDigestError):
            stream_piece(task, 1, bad)
        assert 1 not in staged.checked(TASK_ID)
        task.write_piece(1, piece_bytes(1))  # the good bytes, from somewhere no tap sees
        for number in (0, 2, 3):
            stream_piece(task, number)
        assert deliver(store, task, staged) == DATA


def test_a_twin_that_does_not_own_the_range_writes_nothing_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two streams of one piece at once, a bad parent's second: the content file ends with
    the bad bytes (last writer of each part) and the piece is fetched again there, but the
    staged range is the first stream's alone and needs no copy."""
    with tapped_task(tmp_path) as (store, task, staged):
        good_twin, bad_twin = PieceStream(task, 0), PieceStream(task, 0)
        for good_part, bad_part in zip(parts(piece_bytes(0)), parts(bytes(PIECE)), strict=True):
            good_twin.write([good_part])
            bad_twin.write([bad_part])
        assert good_twin.finish(piece_digest(piece_bytes(0)), check_file=True) is None
        with pytest.raises(PieceDigestError):
            bad_twin.finish(piece_digest(piece_bytes(0)))
        task.write_piece(0, piece_bytes(0))
        for number in (1, 2, 3):
            stream_piece(task, number)
        forbid_copies(monkeypatch)
        assert deliver(store, task, staged) == DATA


def test_a_bad_owner_leaves_the_piece_to_the_copy(tmp_path: Path) -> None:
    with tapped_task(tmp_path) as (store, task, staged):
        bad_twin, good_twin = PieceStream(task, 0), PieceStream(task, 0)
        for bad_part, good_part in zip(parts(bytes(PIECE)), parts(piece_bytes(0)), strict=True):
            bad_twin.write([bad_part])
            good_twin.write([good_part])
        # the good twin wrote each part last: the content file holds its bytes, recorded
        assert good_twin.finish(piece_digest(piece_bytes(0)), check_file=True) is not None
        with pytest.raises(PieceDigestError):
            bad_twin.finish(piece_digest(piece_bytes(0)))
        assert 0 not in staged.checked(TASK_ID)  # the staged range holds the bad twin's bytes
        for number in (1, 2, 3):
            stream_piece(task, number)
        assert deliver(store, task, staged) == DATA


def test_a_late_twin_cannot_touch_a_checked_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tapped_task(tmp_path) as (store, task, staged):
        for number in range(4):
            stream_piece(task, number)
        late = PieceStream(task, 1)
        for part in parts(bytes(PIECE)):
            late.write([part])
        with pytest.raises(PieceDigestError):
            late.finish(piece_digest(piece_bytes(1)))
        forbid_copies(monkeypatch)
        assert deliver(store, task, staged) == DATA


def test_a_stream_with_a_skipped_part_is_not_checked(tmp_path: Path) -> None:
    with tapped_task(tmp_path) as (store, task, staged):
        stream = PieceStream(task, 2)
        first, second, *rest = parts(piece_bytes(2))
        stream.write([first])
        stream.skip([second])  # hashed, never written: a hole in the staged range
        for part in rest:
            stream.write([part])
        assert stream.finish(piece_digest(piece_bytes(2))) is None  # the store's file: a hole
        assert 2 not in staged.checked(TASK_ID)
        task.write_piece(2, piece_bytes(2))
        for number in (0, 1, 3):
            stream_piece(task, number)
        assert deliver(store, task, staged) == DATA


def test_a_copy_takes_the_range_from_its_owner(tmp_path: Path) -> None:
    """A piece copied while a stream still writes it: the stream's later parts (garbage here)
    never reach the staged file, and its end does not mark the piece."""
    with tapped_task(tmp_path) as (store, task, staged):
        late = PieceStream(task, 3)
        late_parts = parts(bytes(len(piece_bytes(3))))
        late.write([late_parts[0]])
        task.write_piece(3, piece_bytes(3))
        assert staged.copy_pieces(TASK_ID, task.content_path, [task.piece_meta(3)]) == []
        for part in late_parts[1:]:
            late.write([part])
        with pytest.raises(PieceDigestError):
            late.finish(piece_digest(piece_bytes(3)))
        assert 3 in staged.checked(TASK_ID)
        for number in (0, 1, 2):
            stream_piece(task, number)
        assert deliver(store, task, staged) == DATA


def test_nothing_is_written_after_delivery(tmp_path: Path) -> None:
    with tapped_task(tmp_path) as (store, task, staged):
        late = PieceStream(task, 0)  # a twin still running when the file was delivered
        for number in range(4):
            stream_piece(task, number)
        assert deliver(store, task, staged) == DATA
        late.write([memoryview(bytes(PART))])
        assert staged.dest.read_bytes() == DATA


def test_a_stream_without_its_last_part_is_not_checked(tmp_path: Path) -> None:
    """A twin that stops writing when the other starts recording the piece (``skip``) and
    ends anyway: its staged range lacks the last part."""
    with tapped_task(tmp_path) as (store, task, staged):
        stream = PieceStream(task, 1)
        *first, last = parts(piece_bytes(1))
        for part in first:
            stream.write([part])
        stream.skip([last])
        assert stream.finish(piece_digest(piece_bytes(1))) is None
        assert 1 not in staged.checked(TASK_ID)
        task.write_piece(1, piece_bytes(1))
        for number in (0, 2, 3):
            stream_piece(task, number)
        assert deliver(store, task, staged) == DATA


def test_a_stream_dropped_midway_owns_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream cancelled after its first part (its parent went away): the next stream of
    the piece writes the staged range."""
    with tapped_task(tmp_path) as (store, task, staged):
        dropped = PieceStream(task, 2)
        dropped.write([parts(bytes(PIECE))[0]])
        del dropped
        gc.collect()
        for number in range(4):
            stream_piece(task, number)
        forbid_copies(monkeypatch)
        assert deliver(store, task, staged) == DATA


def test_a_twin_that_owns_the_range_but_did_not_record_still_checks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twin that started first wrote the staged range; the other recorded the piece;
    the first learns the digest (``end_taps``, as ``PieceReceiver`` does for HELD)."""
    with tapped_task(tmp_path) as (store, task, staged):
        first, second = PieceStream(task, 0), PieceStream(task, 0)
        for part in parts(piece_bytes(0)):
            first.write([part])
            second.write([part])
        assert second.finish(piece_digest(piece_bytes(0)), check_file=True) is not None
        assert 0 not in staged.checked(TASK_ID)
        first.end_taps(piece_digest(piece_bytes(0)))
        assert 0 in staged.checked(TASK_ID)
        for number in (1, 2, 3):
            stream_piece(task, number)
        forbid_copies(monkeypatch)
        assert deliver(store, task, staged) == DATA


def test_nothing_is_written_after_discard(tmp_path: Path) -> None:
    """A stream still running when the download failed: its parts go nowhere, not to a file
    that got the discarded descriptor's number."""
    with tapped_task(tmp_path) as (_store, task, staged):
        late = PieceStream(task, 3)
        staged.discard()
        other = tmp_path / "other"
        other.write_bytes(b"x" * PIECE)
        with open(other, "r+b") as reused:  # most likely the same descriptor number
            late.write([memoryview(bytes(PART))])
            reused.flush()
        assert other.read_bytes() == b"x" * PIECE


def test_another_task_id_forgets_what_the_taps_wrote(tmp_path: Path) -> None:
    with tapped_task(tmp_path) as (_store, task, staged):
        stream_piece(task, 0)
        assert staged.checked(TASK_ID) == {0}
        assert staged.copy_pieces("8d" * 32, task.content_path, []) == []
        assert staged.checked(TASK_ID) == frozenset()


async def test_a_download_from_the_origin_copies_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole pipeline (origin runs read into part buffers, ``StagedDelivery``): every
    piece reaches the output through the tap."""
    monkeypatch.setattr(staging_module, "copies_bytes", lambda store, output: True)
    backend = MemoryBackend()
    piece_length = 4 * 1024 * 1024  # two 2 MiB parts each at this concurrency: buffers reused
    data = os.urandom(3 * piece_length + 77)
    backend.put(URL, data, etag='"v1"')
    forbid_copies(monkeypatch)
    with Store(tmp_path / "store") as store:
        ctx = DownloadContext(
            store=store,
            registry=BackendRegistry({"https": lambda: backend}),
            observer=CountingObserver(),
            policy=FetchPolicy(concurrency=2, retry_delay=0),
        )
        out = tmp_path / "out" / "weights.bin"
        job = FileJob(url=parse_url(URL), output=out, piece_length=piece_length, hard_link=False)
        result = await download_file(job, ctx)
    assert result.delivery is DeliveryMethod.COPY
    assert out.read_bytes() == data
    assert os.stat(out).st_nlink == 1


async def test_no_tap_where_the_copy_clones_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store and output on one file system that reflinks: the copy path stays (writing the
    output from memory would take the space and the writes a clone does not)."""
    monkeypatch.setattr(file_systems, "mount_type", lambda dev: "xfs")
    with Store(tmp_path / "store") as store:
        task = store.open_task(
            TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
        )
        delivery = StagedDelivery(store, tmp_path / "out.bin", overwrite=False)
        try:
            with delivery.tapping(task):
                assert task.output_taps == ()
            monkeypatch.setattr(file_systems, "mount_type", lambda dev: "ext4")
            with delivery.tapping(task):
                assert len(task.output_taps) == 1
            assert task.output_taps == ()
        finally:
            await delivery.aclose()
            task.close()
