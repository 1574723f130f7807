"""A download's output staged piece by piece (``storage/staging.py``, ``Store.deliver_staged``):
on real files, the store's SQLite metadata, and a process killed mid-download."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.core.errors import OutputError
from damselfly.download.staged_delivery import StagedDelivery
from damselfly.storage import staging as staging_module
from damselfly.storage.metadata import PieceMeta
from damselfly.storage.output import DeliveryMethod
from damselfly.storage.staging import StagedOutput
from damselfly.storage.store import Store, TaskStorage
from damselfly.storage.verification import CorruptContentError

TASK_ID = "5a" * 32
PIECE = 64 * 1024
DATA = os.urandom(5 * PIECE - 1000)  # five pieces, the last one short


def complete_task(store: Store) -> TaskStorage:
    task = store.open_task(TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE)
    for number in range(task.piece_count):
        task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
    task.mark_succeeded()
    return task


def meta(task: TaskStorage, number: int) -> PieceMeta:
    found = task.piece_meta(number)
    assert found is not None
    return found


def metas(task: TaskStorage, *numbers: int) -> list[PieceMeta]:
    return [meta(task, n) for n in numbers]


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@contextlib.contextmanager
def staging(out: Path, *, overwrite: bool = False) -> Iterator[StagedOutput]:
    staged = StagedOutput.open(out, overwrite=overwrite)
    assert staged is not None
    try:
        yield staged
    finally:
        staged.discard()


def test_pieces_staged_early_then_the_rest_at_delivery(tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.bin"
    out.parent.mkdir()
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        with staging(out) as staged:
            assert staged.copy_pieces(TASK_ID, task.content_path, metas(task, 0, 3)) == []
            assert staged.checked(TASK_ID) == {0, 3}
            assert list(out.parent.iterdir()) == []  # unnamed until delivered
            assert store.deliver_staged(TASK_ID, staged) is DeliveryMethod.COPY
        assert out.read_bytes() == DATA
        assert [p.name for p in out.parent.iterdir()] == ["model.bin"]
        assert os.stat(out).st_nlink == 1  # a copy: nothing shared with the store
        assert os.stat(out).st_ino != os.stat(task.content_path).st_ino


def test_what_was_checked_is_what_is_handed_out(tmp_path: Path) -> None:
    """The store's file changing after a piece was staged and checked does not reach the
    output: the staged bytes are the verified ones."""
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        with staging(out) as staged:
            staged.copy_pieces(TASK_ID, task.content_path, metas(task, 1))
            flip(task.content_path, PIECE + 5)  # rot after the piece was staged
            store.deliver_staged(TASK_ID, staged)
        assert out.read_bytes() == DATA


def test_a_piece_rotten_before_staging_is_dropped_and_nothing_appears(tmp_path: Path) -> None:
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        flip(task.content_path, 2 * PIECE + 9)
        with staging(out) as staged:
            with pytest.raises(CorruptContentError) as caught:
                store.deliver_staged(TASK_ID, staged)
            assert caught.value.pieces == [2]
            assert not out.exists()
            assert list(tmp_path.glob(".model.bin*")) == []
            assert not task.has_piece(2)  # dropped: the download fetches it again
            task.write_piece(2, DATA[2 * PIECE : 3 * PIECE])
            store.deliver_staged(TASK_ID, staged)  # the same staged file, finished now
        assert out.read_bytes() == DATA


def test_an_output_that_appeared_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store):
        with staging(out) as staged:
            out.write_bytes(b"someone else's")
            with pytest.raises(OutputError, match="already exists"):
                store.deliver_staged(TASK_ID, staged)
        assert out.read_bytes() == b"someone else's"
        with staging(out, overwrite=True) as again:
            store.deliver_staged(TASK_ID, again)
        assert out.read_bytes() == DATA
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "store"]


def test_a_cut_content_file_leaves_its_pieces_unchecked(tmp_path: Path) -> None:
    """The origin changed mid-download and the task's file was cut: staging those pieces is
    no error, they are just not checked (``finish`` would return them as bad)."""
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        with staging(out) as staged:
            pieces = metas(task, 0, 1, 4)
            os.truncate(task.content_path, PIECE + 10)
            assert staged.copy_pieces(TASK_ID, task.content_path, pieces) == [1, 4]
            assert staged.checked(TASK_ID) == {0}
        assert not out.exists()


def test_directories_made_for_the_output_go_again_unless_it_is_delivered(
    tmp_path: Path,
) -> None:
    out = tmp_path / "new" / "deeper" / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store):
        with staging(out) as staged:
            assert out.parent.is_dir()  # made now: the unnamed file lives there
        assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # a failed download
        with staging(out) as staged:
            (tmp_path / "new" / "other.bin").write_bytes(b"another file's")  # not ours
        assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["other.bin"]
        with staging(out) as staged:
            store.deliver_staged(TASK_ID, staged)
        assert out.read_bytes() == DATA  # delivered: its directories stay


def test_another_task_starts_afresh(tmp_path: Path) -> None:
    """The origin changed and the download started again under a new task id: nothing
    checked for the old task counts, and the length is the new task's."""
    out = tmp_path / "model.bin"
    old_data = os.urandom(len(DATA) + 3 * PIECE)  # the old version: other bytes, longer
    with Store(tmp_path / "store") as store, complete_task(store):
        old_id = "6b" * 32
        with store.open_task(
            old_id, url="https://x/f", content_length=len(old_data), piece_length=PIECE
        ) as old:
            for number in range(old.piece_count):
                old.write_piece(number, old_data[number * PIECE : (number + 1) * PIECE])
            with staging(out) as staged:
                assert staged.copy_pieces(old_id, old.content_path, metas(old, *range(8))) == []
                assert staged.checked(old_id) == set(range(8))
                assert staged.checked(TASK_ID) == frozenset()
                store.deliver_staged(TASK_ID, staged)
        assert out.read_bytes() == DATA


def test_finish_closes_the_file(tmp_path: Path) -> None:
    """Once linked at the output nothing more is written through it."""
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        with staging(out) as staged:
            store.deliver_staged(TASK_ID, staged)
            with pytest.raises(ValueError, match="discarded"):
                staged.copy_pieces("6c" * 32, task.content_path, metas(task, 0))
        assert out.read_bytes() == DATA


async def test_where_linking_is_refused_the_store_copies_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox that refuses ``linkat`` through ``/proc`` (here: a /proc path that is not
    there once the file was staged) costs the early copy, not the download."""
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        delivery = StagedDelivery(store, out, overwrite=False)
        try:
            delivery.piece_recorded(task, meta(task, 0))
            assert await delivery.checked(TASK_ID) == {0}
            monkeypatch.setattr(staging_module, "_PROC_FDS", str(tmp_path / "no-proc"))
            assert await delivery.deliver(TASK_ID) is DeliveryMethod.COPY
        finally:
            await delivery.aclose()
        assert out.read_bytes() == DATA
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "store"]


def test_discarded_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.bin"
    out.parent.mkdir()
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        staged = StagedOutput.open(out, overwrite=False)
        assert staged is not None
        staged.copy_pieces(TASK_ID, task.content_path, metas(task, 0, 1))
        staged.discard()
        staged.discard()  # twice is fine
        assert list(out.parent.iterdir()) == []
        with pytest.raises(ValueError, match="discarded"):
            staged.copy_pieces(TASK_ID, task.content_path, metas(task, 2))


def test_a_killed_download_leaves_nothing_in_the_output_directory(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from damselfly.storage.staging import StagedOutput
        from damselfly.storage.store import Store
        store = Store(Path({str(tmp_path / "store")!r}))
        task = store.open_task({TASK_ID!r}, url="https://x/f", content_length={len(DATA)},
                               piece_length={PIECE})
        staged = StagedOutput.open(Path({str(out_dir / "model.bin")!r}), overwrite=False)
        staged.copy_pieces({TASK_ID!r}, task.content_path, [task.piece_meta(0)])
        print("staged", flush=True)
        time.sleep(60)
        """
    )
    with Store(tmp_path / "store") as store, complete_task(store):
        pass
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "staged"
            assert os.listdir(out_dir) == []
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert os.listdir(out_dir) == []


async def test_a_download_stages_pieces_as_they_are_recorded(tmp_path: Path) -> None:
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store:
        task = store.open_task(
            TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
        )
        delivery = StagedDelivery(store, out, overwrite=False)
        try:
            for number in (3, 0, 4, 1, 2):  # in the order a swarm gives them
                task.write_piece(number, DATA[number * PIECE : (number + 1) * PIECE])
                delivery.piece_recorded(task, meta(task, number))
            assert await delivery.checked(TASK_ID) == {0, 1, 2, 3, 4}
            task.mark_succeeded()
            flip(task.content_path, 7)  # after staging: must not reach the output
            assert await delivery.deliver(TASK_ID) is DeliveryMethod.COPY
        finally:
            await delivery.aclose()
            task.close()
        assert out.read_bytes() == DATA


async def test_without_an_unnamed_file_the_store_copies_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StagedOutput, "open", classmethod(lambda cls, dest, overwrite: None))
    out = tmp_path / "model.bin"
    with Store(tmp_path / "store") as store, complete_task(store) as task:
        delivery = StagedDelivery(store, out, overwrite=False)
        try:
            delivery.piece_recorded(task, meta(task, 0))  # nothing to stage into
            assert await delivery.checked(TASK_ID) == frozenset()
            assert await delivery.deliver(TASK_ID) is DeliveryMethod.COPY
        finally:
            await delivery.aclose()
        assert out.read_bytes() == DATA
