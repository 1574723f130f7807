"""Outputs delivered as hard links to the store's content file (``storage/shared_content.py``):
what is linked is checked first, a file is linked to one output at a time, and the store never
writes into a file an output shares nor counts it as its own.

Piece re-hashes are counted with a pass-through wrapper on ``ContentFile.digest_at``, the
only way delivery and re-verification hash stored bytes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from damselfly.backends.registry import BackendRegistry
from damselfly.core.errors import StorageError
from damselfly.core.urls import parse_url
from damselfly.download.events import CountingObserver
from damselfly.download.file_download import download_file
from damselfly.download.jobs import DownloadContext, FileJob
from damselfly.download.source_fetcher import FetchPolicy
from damselfly.storage import content as content_module
from damselfly.storage import output as output_module
from damselfly.storage.content import ContentFile
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.store import Store, TaskStorage
from damselfly.storage.verification import CorruptContentError
from damselfly.testing.memory_backend import MemoryBackend

TASK_ID = "a7" * 32
PIECE = 64 * 1024
DATA = os.urandom(3 * PIECE - 100)
URL = "https://origin.example/weights.bin"


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    real = ContentFile.digest_at

    def counting(self: ContentFile, offset: int, length: int, *rest: object) -> str:
        ranges.append((offset, length))
        return real(self, offset, length, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(ContentFile, "digest_at", counting)
    return ranges


def open_task(store: Store) -> TaskStorage:
    return store.open_task(TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE)


def fill(store: Store) -> None:
    with open_task(store) as task:
        for number in range(3):
            task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
        task.mark_succeeded()


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 1]))


def test_the_output_is_the_stores_file_checked_in_full(
    tmp_path: Path, hashed: list[tuple[int, int]]
) -> None:
    out = tmp_path / "out" / "weights.bin"
    with Store(tmp_path / "store") as store:
        fill(store)
        hashed.clear()
        method = store.deliver(TASK_ID, out, hard_link=True)
        content = store.content_path(TASK_ID)
    assert method is DeliveryMethod.HARD_LINK
    assert len(hashed) == 3  # what is linked is re-hashed, as a copy is
    assert out.stat().st_ino == content.stat().st_ino
    assert out.stat().st_nlink == 2
    assert out.read_bytes() == DATA


def test_a_write_after_the_fill_is_caught_before_anything_is_linked(tmp_path: Path) -> None:
    out = tmp_path / "weights.bin"
    with Store(tmp_path / "store") as store:
        fill(store)
        content = store.content_path(TASK_ID)
        st = content.stat()
        flip(content, PIECE + 5)
        os.utime(content, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime put back
        with pytest.raises(CorruptContentError) as caught:
            store.deliver(TASK_ID, out, hard_link=True)
        assert caught.value.pieces == [1]
        assert store.held_pieces(TASK_ID) == {0, 2}
        assert content.stat().st_nlink == 1
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_a_second_output_is_a_copy_checked_in_full(
    tmp_path: Path, hashed: list[tuple[int, int]]
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    with Store(tmp_path / "store") as store:
        fill(store)
        assert store.deliver(TASK_ID, first, hard_link=True) is DeliveryMethod.HARD_LINK
        hashed.clear()
        method = store.deliver(TASK_ID, second, hard_link=True)
    assert method is DeliveryMethod.COPY
    assert len(hashed) == 3
    assert second.stat().st_ino != first.stat().st_ino
    assert (first.stat().st_nlink, second.stat().st_nlink) == (2, 1)
    assert second.read_bytes() == DATA


def test_delivering_again_to_the_same_output_keeps_the_link(tmp_path: Path) -> None:
    """A hub cache delivers every run again over its own file (``--overwrite``)."""
    out = tmp_path / "blob"
    with Store(tmp_path / "store") as store:
        fill(store)
        store.deliver(TASK_ID, out, hard_link=True)
        again = store.deliver(TASK_ID, out, overwrite=True, hard_link=True)
        assert again is DeliveryMethod.HARD_LINK
        assert out.stat().st_ino == store.content_path(TASK_ID).stat().st_ino
    assert out.stat().st_nlink == 2


def test_a_link_made_meanwhile_turns_the_delivery_into_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process links the file between the count and our link: no shared output."""
    real_link = os.link
    raced = tmp_path / "raced"

    def racing_link(src: object, dst: object, *args: object, **kw: object) -> None:
        if not raced.exists():
            real_link(src, raced)  # type: ignore[arg-type]
        real_link(src, dst, *args, **kw)  # type: ignore[arg-type]

    out = tmp_path / "out"
    with Store(tmp_path / "store") as store:
        fill(store)
        monkeypatch.setattr(output_module.os, "link", racing_link)
        method = store.deliver(TASK_ID, out, hard_link=True)
        monkeypatch.undo()
        content = store.content_path(TASK_ID)
        assert method is DeliveryMethod.COPY
        assert out.stat().st_ino != content.stat().st_ino
    assert out.read_bytes() == DATA


def test_force_hard_link_shares_the_file_with_a_second_output(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store:
        fill(store)
        store.deliver(TASK_ID, tmp_path / "one", hard_link=True)
        method = store.deliver(TASK_ID, tmp_path / "two", hard_link=True, share=True)
    assert method is DeliveryMethod.HARD_LINK
    assert (tmp_path / "two").stat().st_nlink == 3


def test_a_linked_file_is_no_longer_vouched_for_serving(tmp_path: Path) -> None:
    """The piece server sends what ``vouches_for`` and re-hashes the rest: once an output
    shares the file, the user may write it."""
    with Store(tmp_path / "store") as store, open_task(store) as serving:
        fill(store)
        assert all(serving.vouches_for(n) for n in range(3))
        store.deliver(TASK_ID, tmp_path / "out", hard_link=True)
        assert not any(serving.vouches_for(n) for n in range(3))


def test_a_handle_opened_before_the_link_writes_nothing_into_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Store(tmp_path / "store") as store, open_task(store) as task:
        task.write_piece(0, DATA[:PIECE])
        os.link(task.content_path, out)  # what another request's delivery could do
        before = out.read_bytes()
        with pytest.raises(StorageError, match="also a delivered output"):
            task.write_piece(1, DATA[PIECE : 2 * PIECE])
        with pytest.raises(StorageError, match="also a delivered output"):
            task.write_part(2, 2 * PIECE, [memoryview(DATA[2 * PIECE :])])
    assert out.read_bytes() == before


def test_releasing_space_never_cuts_a_linked_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Store(tmp_path / "store") as store:
        fill(store)
        store.deliver(TASK_ID, out, hard_link=True)
        with open_task(store) as task:
            task.release_space()  # what a failed whole-file check does
        assert out.read_bytes() == DATA
        with open_task(store) as task:  # failed, and shared: the store takes its own copy
            assert os.stat(task.content_path).st_ino != out.stat().st_ino
            task.write_piece(1, DATA[PIECE : 2 * PIECE])
            assert task.finished_pieces() == {1}
    assert out.read_bytes() == DATA
    assert out.stat().st_nlink == 1


def test_an_edited_output_is_copied_and_reverified_even_while_open(tmp_path: Path) -> None:
    """The daemon's piece server keeps handles open: the private copy is re-verified all the
    same, so the user's edit is neither kept as a held piece nor served."""
    out = tmp_path / "out"
    with Store(tmp_path / "store") as store, open_task(store) as serving:
        fill(store)
        store.deliver(TASK_ID, out, hard_link=True)
        flip(out, PIECE + 7)  # the user edits the output (and so the store's file)
        with open_task(store) as task:
            task.drop_piece(0)  # as a failed delivery does
        with open_task(store) as task:
            assert os.stat(task.content_path).st_ino != out.stat().st_ino
            assert task.finished_pieces() == {2}  # piece 1 failed re-verification
            task.write_piece(0, DATA[:PIECE])
            task.write_piece(1, DATA[PIECE : 2 * PIECE])
            task.mark_succeeded()
            assert task.content_path.read_bytes() == DATA
            assert not task.vouches_for(2)  # written into the old file, not this one
        assert not serving.vouches_for(1)
    assert out.read_bytes()[PIECE + 7] != DATA[PIECE + 7]  # the user's edit is theirs


def test_a_private_copy_left_by_a_crash_goes_with_the_next_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Store(tmp_path / "store") as store:
        fill(store)
        store.deliver(TASK_ID, out, hard_link=True)
        content = store.content_path(TASK_ID)
        stale = content.with_name(f".{content.name}.0badc0de.private")
        stale.write_bytes(b"half a copy")
        flip(out, 3)  # the user edits the output: the next open takes a private copy
        with open_task(store) as task:
            assert task.finished_pieces() == {1, 2}
    assert not stale.exists()
    assert [p.name for p in content.parent.iterdir()] == [content.name]


def test_a_linked_file_takes_no_room_and_is_not_evicted_for_room(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Store(tmp_path / "store", quota_bytes=10 * len(DATA)) as store:
        fill(store)
        assert store.usage_bytes() == len(DATA)
        store.deliver(TASK_ID, out, hard_link=True)
        assert store.usage_bytes() == 0  # deleting it would free nothing
        store.collect_garbage(needed_bytes=100 * len(DATA))
        assert store.held_pieces(TASK_ID) == {0, 1, 2}
    assert out.read_bytes() == DATA


def test_a_handle_left_on_the_users_file_after_a_private_copy_writes_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    with Store(tmp_path / "store") as store, open_task(store) as old:
        fill(store)
        store.deliver(TASK_ID, out, hard_link=True)
        flip(out, PIECE + 7)  # the user edits the output
        with open_task(store) as new:  # the store takes its own copy; only `out` names the old
            assert new.finished_pieces() == {0, 2}
        assert not old.still_at_path()
        assert old.shared_with_output()
        before = out.read_bytes()
        with pytest.raises(StorageError, match="also a delivered output"):
            old.write_piece(1, DATA[PIECE : 2 * PIECE])
        old.release_space()
        assert out.read_bytes() == before  # neither written nor cut


def test_a_store_file_replaced_while_linking_turns_the_delivery_into_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process takes a private copy between our count of names and our link."""
    real_link = os.link

    def replaced_first(src: object, dst: object, *args: object, **kw: object) -> None:
        if Path(str(dst)).name.startswith(".out"):
            path = Path(str(src))
            fresh = path.with_name("fresh")
            shutil.copyfile(path, fresh)
            os.replace(fresh, path)
        real_link(src, dst, *args, **kw)  # type: ignore[arg-type]

    out = tmp_path / "out"
    with Store(tmp_path / "store") as store:
        fill(store)
        monkeypatch.setattr(output_module.os, "link", replaced_first)
        method = store.deliver(TASK_ID, out, hard_link=True)
        monkeypatch.undo()
        assert method is DeliveryMethod.COPY
        assert store.content_path(TASK_ID).stat().st_nlink == 1
    assert out.read_bytes() == DATA


def test_the_change_stamp_counts_names_within_one_ctime_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    content = ContentFile.open_read_only(path)
    real_fstat = os.fstat

    def frozen_times(fd: int) -> os.stat_result:
        st = list(real_fstat(fd))
        st[7:10] = [0, 0, 0]  # atime, mtime, ctime (whole seconds) pinned
        return os.stat_result(st, {"st_mtime_ns": 0, "st_ctime_ns": 0, "st_atime_ns": 0})

    monkeypatch.setattr(content_module.os, "fstat", frozen_times)
    try:
        before = content.change_stamp()
        os.link(path, tmp_path / "g")
        assert content.change_stamp() != before
    finally:
        content.close()


# -- through download_file ---------------------------------------------------------------------


async def fetch(tmp_path: Path, store: Store, output: Path, **kw: object) -> DeliveryMethod:
    backend = MemoryBackend()
    backend.put(URL, DATA, etag='"v1"')
    ctx = DownloadContext(
        store=store,
        registry=BackendRegistry({"https": lambda: backend}),
        observer=CountingObserver(),
        policy=FetchPolicy(concurrency=2, retry_delay=0),
    )
    job = FileJob(url=parse_url(URL), output=output, piece_length=PIECE, **kw)  # type: ignore[arg-type]
    result = await download_file(job, ctx)
    assert output.read_bytes() == DATA
    return result.delivery


async def test_a_download_is_linked_then_copies_for_other_outputs(
    tmp_path: Path, hashed: list[tuple[int, int]]
) -> None:
    with Store(tmp_path / "store") as store:
        assert await fetch(tmp_path, store, tmp_path / "a") is DeliveryMethod.HARD_LINK
        assert len(hashed) == 3  # checked where it is linked
        assert await fetch(tmp_path, store, tmp_path / "b") is DeliveryMethod.COPY
        no_link = await fetch(tmp_path, store, tmp_path / "c", hard_link=False)
    assert no_link is DeliveryMethod.COPY
    assert [(tmp_path / n).stat().st_nlink for n in "abc"] == [2, 1, 1]


async def test_another_file_system_gets_a_copy(tmp_path: Path, other_fs_dir: Path) -> None:
    with Store(tmp_path / "store") as store:
        assert await fetch(tmp_path, store, other_fs_dir / "a") is DeliveryMethod.COPY
    assert (other_fs_dir / "a").stat().st_nlink == 1
