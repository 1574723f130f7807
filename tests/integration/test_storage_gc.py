"""Quota, LRU eviction, orphans, and files that are not ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from damselfly.core.errors import DiskFullError, NoSpaceError
from damselfly.storage.metadata import TaskMeta, TaskState
from damselfly.storage.store import Store, TaskStorage
from damselfly.testing.memory_metadata import MemoryMetadataStore

KB = 1000


def tid(name: str) -> str:
    return (name * 64)[:64]


def open_task(store: Store, name: str, length: int = KB) -> TaskStorage:
    return store.open_task(
        tid(name), url="https://x/" + name, content_length=length, piece_length=256
    )


def fill(store: Store, *names: str) -> None:
    for name in names:
        with open_task(store, name) as task:
            task.write_piece(0, os.urandom(256))


def held(store: Store) -> set[str]:
    return {task.task_id[:1] for task in store.list_tasks()}


def test_usage_counts_the_logical_size_of_content_files(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        fill(store, "a", "b")
        assert store.usage_bytes() == 2 * KB  # sparse files count at full length


def test_lru_task_is_evicted_first(tmp_path: Path) -> None:
    with Store(tmp_path, quota_bytes=3 * KB) as store:
        fill(store, "a", "b", "c")
        open_task(store, "a").close()  # a is now the most recently accessed
        fill(store, "d")
        assert held(store) == {"a", "c", "d"}
        assert not store.content_path(tid("b")).exists()
        assert store.usage_bytes() == 3 * KB


def test_open_task_is_never_evicted(tmp_path: Path) -> None:
    with Store(tmp_path, quota_bytes=2 * KB) as store:
        fill(store, "a", "b")
        with open_task(store, "a") as pinned:
            open_task(store, "b").close()  # b is more recent; a is LRU but open
            fill(store, "c")
            assert held(store) == {"a", "c"}
            assert pinned.has_piece(0)


def test_quota_impossible_raises_and_evicts_nothing(tmp_path: Path) -> None:
    with Store(tmp_path, quota_bytes=2 * KB) as store:
        fill(store, "b")
        with open_task(store, "a"):
            with pytest.raises(DiskFullError) as info:
                open_task(store, "c", length=1500)
            assert str(info.value) == (
                f"no space for 1500 bytes in {tmp_path} (free 1000 within its quota of 2000)"
            )
            assert isinstance(info.value, NoSpaceError)
            assert isinstance(info.value, OSError)
            assert held(store) == {"a", "b"}
            assert not store.content_path(tid("c")).exists()


def test_reopening_a_task_counts_its_own_file_once(tmp_path: Path) -> None:
    with Store(tmp_path, quota_bytes=KB) as store:
        fill(store, "a")
        with open_task(store, "a") as task:
            assert task.has_piece(0)


def test_collect_garbage_brings_usage_within_a_smaller_quota(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        fill(store, "a", "b", "c")
        assert store.collect_garbage() == 0
    with Store(tmp_path, quota_bytes=KB) as store:
        assert store.collect_garbage() == 2 * KB
        assert held(store) == {"c"}
        assert store.collect_garbage(needed_bytes=KB) == KB
        assert held(store) == set()


def test_foreign_files_survive_and_are_not_counted(tmp_path: Path) -> None:
    foreign = [
        tmp_path / "notes.txt",
        tmp_path / "content" / "README",
        tmp_path / "content" / "ab" / "not.ours",
        tmp_path / "content" / "zz" / ("ab" * 32),  # wrong shard for its name
        tmp_path / "content" / "abc" / ("ab" * 32),  # shard name too long
    ]
    with Store(tmp_path, quota_bytes=10 * KB) as store:
        for path in foreign:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * 5000)
        link = store.content_path(tid("e"))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(tmp_path / "notes.txt")
        fill(store, "a")
        assert store.usage_bytes() == KB
        assert store.collect_garbage(needed_bytes=10**9) == KB
        assert store.usage_bytes() == 0
    assert all(path.read_bytes() == b"x" * 5000 for path in foreign)
    assert link.is_symlink()


def test_orphan_file_and_orphan_row_are_removed(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        orphan = store.content_path(tid("f"))
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(b"y" * 700)
        fill(store, "a")
        store.content_path(tid("a")).unlink()
        assert store.collect_garbage() == 700
        assert not orphan.exists()
        assert store.list_tasks() == []


def test_remove_task(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        fill(store, "a")
        with open_task(store, "b"):
            assert store.remove_task(tid("b")) is False
        assert store.remove_task(tid("a")) is True
        assert held(store) == {"b"}


def test_gc_skips_a_file_pinned_by_another_descriptor(tmp_path: Path) -> None:
    # A second Store instance on the same root stands in for another thread or process.
    with Store(tmp_path) as first, Store(tmp_path, quota_bytes=KB) as second:
        with open_task(first, "a"):
            assert second.collect_garbage(needed_bytes=KB) == 0
            assert held(second) == {"a"}
        assert second.collect_garbage(needed_bytes=KB) == KB


def test_memory_metadata_store_works_for_gc(tmp_path: Path) -> None:
    meta = MemoryMetadataStore()
    with Store(tmp_path, quota_bytes=KB, metadata=meta) as store:
        fill(store, "a", "b")
        assert held(store) == {"b"}
    assert meta.calls["task_deleted"] >= 1
    assert isinstance(meta.tasks_by_access()[0], TaskMeta)
    assert meta.tasks_by_access()[0].state is TaskState.RUNNING
