"""PieceStream: a piece written in parts as it arrives, recorded only once its digest matched,
never over a piece held meanwhile (memory metadata fake)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.core.digests import piece_digest
from damselfly.core.errors import PieceDigestError
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.piece_stream import PieceStream
from damselfly.storage.store import Store, TaskStorage
from damselfly.testing.memory_metadata import MemoryMetadataStore

TASK_ID = "b2" * 32
PIECE = 1024
DATA = bytes(range(256)) * 10 + b"tail"  # 2564 bytes: pieces of 1024, 1024, 516


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store", metadata=MemoryMetadataStore()) as store:
        yield store


@pytest.fixture
def task(store: Store) -> Iterator[TaskStorage]:
    with store.open_task(
        TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
    ) as task:
        yield task


def piece(number: int) -> bytes:
    return DATA[number * PIECE : (number + 1) * PIECE]


def parts(data: bytes, length: int) -> list[list[memoryview]]:
    return [[memoryview(data[i : i + length])] for i in range(0, len(data), length)]


def on_disk(task: TaskStorage, number: int) -> bytes:
    with open(task.content_path, "rb") as file:
        file.seek(number * PIECE)
        return file.read(len(piece(number)))


@pytest.mark.parametrize("number", [0, 2])
def test_a_streamed_piece_is_recorded_like_a_whole_write(task: TaskStorage, number: int) -> None:
    stream = PieceStream(task, number)
    for part in parts(piece(number), 300):
        stream.write(part)
        assert not task.has_piece(number)  # written, not recorded
    meta = stream.finish(piece_digest(piece(number)))
    assert meta == PieceMeta(
        number, number * PIECE, len(piece(number)), piece_digest(piece(number))
    )
    assert task.piece_meta(number) == meta
    assert on_disk(task, number) == piece(number)
    assert task.vouches_for(number)  # served with sendfile, as a whole write is


def test_bytes_that_do_not_match_are_not_recorded(task: TaskStorage) -> None:
    stream = PieceStream(task, 1)
    for part in parts(b"x" * PIECE, 512):
        stream.write(part)
    with pytest.raises(PieceDigestError):
        stream.finish(piece_digest(piece(1)))
    assert not task.has_piece(1)
    assert not task.vouches_for(1)


def test_a_piece_held_meanwhile_is_never_overwritten(task: TaskStorage) -> None:
    stream = PieceStream(task, 0)
    stream.write([memoryview(b"x" * 512)])  # a bad parent's first half
    task.write_piece(0, piece(0))  # the endgame twin, whole and verified
    stream.write([memoryview(b"x" * 512)])  # skipped: the piece is held
    assert on_disk(task, 0) == piece(0)
    with pytest.raises(PieceDigestError):
        stream.finish(piece_digest(piece(0)))
    assert task.has_piece(0)
    assert on_disk(task, 0) == piece(0)


def test_a_good_stream_that_ends_second_returns_the_held_record(task: TaskStorage) -> None:
    stream = PieceStream(task, 1)
    first, second = parts(piece(1), 512)
    stream.write(first)
    held = task.write_piece(1, piece(1))
    stream.write(second)
    assert stream.finish(piece_digest(piece(1))) == held


def test_a_stream_that_skipped_a_part_does_not_record_a_piece_dropped_since(
    task: TaskStorage,
) -> None:
    stream = PieceStream(task, 0)
    first, second = parts(piece(0), 512)
    stream.write(first)
    task.write_piece(0, piece(0))
    stream.write(second)  # skipped: held
    task.drop_piece(0)  # found bad, say: the file's bytes are not vouched for any more
    assert stream.finish(piece_digest(piece(0))) is None
    assert not task.has_piece(0)


def test_more_or_fewer_bytes_than_the_piece_are_refused(task: TaskStorage) -> None:
    stream = PieceStream(task, 2)
    with pytest.raises(ValueError, match="more than 516 bytes"):
        stream.write([memoryview(b"x" * 517)])
    stream.write([memoryview(piece(2)[:100])])
    with pytest.raises(ValueError, match="100 of 516 bytes"):
        stream.finish(piece_digest(piece(2)))
    assert not task.has_piece(2)


def test_twins_mixed_in_the_file_are_caught_when_the_file_is_checked(task: TaskStorage) -> None:
    good, bad = PieceStream(task, 1), PieceStream(task, 1)
    first, second = parts(piece(1), 512)
    good.write(first)
    bad.write([memoryview(b"x" * 512)])  # overwrites the good first half
    good.write(second)
    assert good.finish(piece_digest(piece(1)), check_file=True) is None
    assert not task.has_piece(1)
    good_again = PieceStream(task, 1)
    for part in parts(piece(1), 512):
        good_again.write(part)
    assert good_again.finish(piece_digest(piece(1)), check_file=True) is not None
    assert on_disk(task, 1) == piece(1)


def test_the_origins_piece_is_checked_in_the_file_when_another_stream_wrote_meanwhile(
    task: TaskStorage,
) -> None:
    origin, parent = PieceStream(task, 1), PieceStream(task, 1)
    first, second = parts(piece(1), 512)
    origin.write(first)
    parent.write([memoryview(b"x" * 512)])  # a bad parent's part lands between the origin's
    origin.write(second)
    assert origin.record_as_read() is None  # the file's range does not hold what was read
    assert not task.has_piece(1)
    alone = PieceStream(task, 1)
    for part in parts(piece(1), 512):
        alone.write(part)
    meta = alone.record_as_read()  # nobody else wrote: recorded without a second hash
    assert meta is not None
    assert meta.digest == piece_digest(piece(1))
    assert on_disk(task, 1) == piece(1)


def test_skipped_bytes_are_counted_and_hashed_but_never_recorded(task: TaskStorage) -> None:
    stream = PieceStream(task, 2)
    stream.skip([memoryview(piece(2))])
    assert stream.finish(piece_digest(piece(2))) is None
    bad = PieceStream(task, 2)
    bad.skip([memoryview(b"x" * 516)])
    with pytest.raises(PieceDigestError):
        bad.finish(piece_digest(piece(2)))


def test_another_handle_cannot_record_between_a_parts_check_and_its_write(
    store: Store, task: TaskStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed job's fill (its own handle) records piece 0 with the origin's bytes exactly while
    a parent's bad part for it is about to be written: the record must wait for the write,
    so the verified bytes end up on disk, not the bad ones after them."""
    import threading

    from damselfly.storage.content import ContentFile

    other = store.open_task(
        TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
    )
    real_write = ContentFile.write_chunks_at
    recorded = threading.Event()

    def record_by_the_other_handle_first(self, offset, chunks):  # type: ignore[no-untyped-def]
        if not recorded.is_set():
            recorded.set()
            thread = threading.Thread(target=lambda: other.write_piece(0, piece(0)), daemon=True)
            thread.start()
            thread.join(0.3)  # done at once if the handles' locks are not shared
        return real_write(self, offset, chunks)

    monkeypatch.setattr(ContentFile, "write_chunks_at", record_by_the_other_handle_first)
    stream = PieceStream(task, 0)
    stream.write([memoryview(b"\xff" * PIECE)])  # a bad parent's whole piece, in one part
    monkeypatch.setattr(ContentFile, "write_chunks_at", real_write)
    for _ in range(100):
        if task.has_piece(0):
            break
        threading.Event().wait(0.02)
    assert task.has_piece(0)
    assert on_disk(task, 0) == piece(0)  # the record came after the bad part, not before
    with pytest.raises(PieceDigestError):
        stream.finish(piece_digest(piece(0)))
    other.close()
