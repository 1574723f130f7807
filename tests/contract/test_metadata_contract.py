"""One suite, run against every MetadataStore: SqliteMetadataStore and the in-memory fake."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from damselfly.core.errors import StorageError
from damselfly.storage.metadata import (
    MetadataStore,
    PieceMeta,
    TaskMeta,
    TaskNotFoundError,
    TaskState,
)
from damselfly.storage.sqlite_metadata import SqliteMetadataStore
from damselfly.testing.memory_metadata import MemoryMetadataStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "memory"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[MetadataStore]:
    factories: dict[str, Callable[[], MetadataStore]] = {
        "sqlite": lambda: SqliteMetadataStore(tmp_path / "metadata.db", clock=clock),
        "memory": lambda: MemoryMetadataStore(clock=clock),
    }
    meta = factories[request.param]()
    yield meta
    meta.close()


def task(task_id: str = "t1", **changes: object) -> TaskMeta:
    values: dict[str, object] = {
        "task_id": task_id,
        "url": "https://example.com/model.bin",
        "content_length": 10_000,
        "piece_length": 4096,
        "state": TaskState.PENDING,
        "content_digest": "sha256:" + "ab" * 32,
        "created_at": 10.0,
        "accessed_at": 10.0,
    }
    values.update(changes)
    return TaskMeta(**values)  # type: ignore[arg-type]


def piece(number: int, digest: str = "blake3:00") -> PieceMeta:
    return PieceMeta(number, number * 4096, 4096, digest)


def test_registered_task_reads_back_equal(store: MetadataStore) -> None:
    store.task_registered(task())
    assert store.get_task("t1") == task()


def test_registered_task_without_digest(store: MetadataStore) -> None:
    store.task_registered(task(content_digest=None))
    got = store.get_task("t1")
    assert got is not None
    assert got.content_digest is None


def test_register_twice_keeps_the_first_row(store: MetadataStore) -> None:
    store.task_registered(task(url="https://first/"))
    store.task_registered(task(url="https://second/", content_length=1))
    assert store.get_task("t1") == task(url="https://first/")


def test_unknown_task_is_none(store: MetadataStore) -> None:
    assert store.get_task("nope") is None


@pytest.mark.parametrize(
    ("event", "state"),
    [
        ("task_started", TaskState.RUNNING),
        ("task_succeeded", TaskState.SUCCEEDED),
        ("task_failed", TaskState.FAILED),
    ],
)
def test_state_events(store: MetadataStore, event: str, state: TaskState) -> None:
    store.task_registered(task())
    getattr(store, event)("t1")
    got = store.get_task("t1")
    assert got is not None
    assert got.state is state


@pytest.mark.parametrize(
    "event", ["task_started", "task_succeeded", "task_failed", "task_accessed"]
)
def test_events_on_unknown_task_raise(store: MetadataStore, event: str) -> None:
    with pytest.raises(TaskNotFoundError) as info:
        getattr(store, event)("ghost")
    assert info.value.task_id == "ghost"
    assert isinstance(info.value, KeyError)


def test_task_accessed_bumps_accessed_at(store: MetadataStore, clock: FakeClock) -> None:
    store.task_registered(task())
    clock.now = 2000.0
    store.task_accessed("t1")
    got = store.get_task("t1")
    assert got is not None
    assert got.accessed_at == 2000.0
    assert got.created_at == 10.0


def test_tasks_by_access_is_least_recent_first(store: MetadataStore) -> None:
    for name in ("a1", "b1", "c1"):
        store.task_registered(task(name))
    store.task_accessed("a1")  # same clock tick as the others: order still strict
    assert [t.task_id for t in store.tasks_by_access()] == ["b1", "c1", "a1"]
    store.task_accessed("b1")
    assert [t.task_id for t in store.tasks_by_access()] == ["c1", "a1", "b1"]


def test_pieces_come_back_sorted(store: MetadataStore) -> None:
    store.task_registered(task())
    for number in (2, 0, 1):
        store.piece_finished("t1", piece(number))
    assert store.pieces("t1") == [piece(0), piece(1), piece(2)]
    assert store.get_piece("t1", 1) == piece(1)
    assert store.get_piece("t1", 7) is None


def test_piece_finished_twice_replaces(store: MetadataStore) -> None:
    store.task_registered(task())
    store.piece_finished("t1", piece(0, "blake3:aa"))
    store.piece_finished("t1", piece(0, "blake3:bb"))
    assert store.pieces("t1") == [piece(0, "blake3:bb")]


def test_piece_finished_on_unknown_task_raises(store: MetadataStore) -> None:
    with pytest.raises(TaskNotFoundError):
        store.piece_finished("ghost", piece(0))
    assert store.pieces("ghost") == []
    assert store.get_piece("ghost", 0) is None


def test_piece_dropped(store: MetadataStore) -> None:
    store.task_registered(task())
    store.piece_finished("t1", piece(0))
    store.piece_finished("t1", piece(1))
    store.piece_dropped("t1", 0)
    store.piece_dropped("t1", 0)  # idempotent
    store.piece_dropped("ghost", 0)  # unknown task: no-op
    assert store.pieces("t1") == [piece(1)]


def test_pieces_are_per_task(store: MetadataStore) -> None:
    store.task_registered(task("t1"))
    store.task_registered(task("t2"))
    store.piece_finished("t1", piece(0))
    store.piece_finished("t2", piece(5))
    assert store.pieces("t1") == [piece(0)]
    assert store.pieces("t2") == [piece(5)]


def test_task_deleted_removes_task_and_pieces(store: MetadataStore) -> None:
    store.task_registered(task())
    store.piece_finished("t1", piece(0))
    store.task_deleted("t1")
    store.task_deleted("t1")  # idempotent
    assert store.get_task("t1") is None
    assert store.tasks_by_access() == []
    store.task_registered(task())
    assert store.pieces("t1") == []


def test_calls_after_close_raise(store: MetadataStore) -> None:
    store.task_registered(task())
    store.close()
    with pytest.raises(StorageError):
        store.get_task("t1")
    with pytest.raises(StorageError):
        store.piece_finished("t1", piece(0))
    store.close()  # idempotent


def test_concurrent_piece_finished_from_threads(store: MetadataStore) -> None:
    store.task_registered(task(content_length=800 * 4096))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(first: int) -> None:
        barrier.wait()
        try:
            for number in range(first, 800, 8):
                store.piece_finished("t1", piece(number, f"blake3:{number:04x}"))
                store.get_piece("t1", number)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.pieces("t1") == [piece(n, f"blake3:{n:04x}") for n in range(800)]


# -- verified fingerprints -----------------------------------------------------------------------


def test_no_fingerprint_until_verified(store: MetadataStore) -> None:
    assert store.verified_fingerprint("ghost") is None
    store.task_registered(task())
    assert store.verified_fingerprint("t1") is None


def test_task_verified_reads_back_and_replaces(store: MetadataStore) -> None:
    store.task_registered(task())
    store.task_verified("t1", "size=1,mtime_ns=2,ino=3,dev=4")
    assert store.verified_fingerprint("t1") == "size=1,mtime_ns=2,ino=3,dev=4"
    store.task_verified("t1", "size=1,mtime_ns=9,ino=3,dev=4")
    assert store.verified_fingerprint("t1") == "size=1,mtime_ns=9,ino=3,dev=4"


def test_task_verified_on_unknown_task_raises(store: MetadataStore) -> None:
    with pytest.raises(TaskNotFoundError) as info:
        store.task_verified("ghost", "fp")
    assert info.value.task_id == "ghost"
    assert store.verified_fingerprint("ghost") is None


def delete_and_register_again(store: MetadataStore) -> None:
    store.task_deleted("t1")
    store.task_registered(task())


def change_another_task(store: MetadataStore) -> None:
    store.piece_finished("t2", piece(0))
    store.piece_dropped("t2", 0)
    store.task_started("t2")
    store.task_deleted("t2")


CLEARING_EVENTS: dict[str, Callable[[MetadataStore], None]] = {
    "piece_finished": lambda s: s.piece_finished("t1", piece(0, "blake3:ee")),
    "piece_dropped": lambda s: s.piece_dropped("t1", 1),
    "piece_dropped_not_held": lambda s: s.piece_dropped("t1", 7),
    "task_started": lambda s: s.task_started("t1"),
    "task_failed": lambda s: s.task_failed("t1"),
    "task_deleted": delete_and_register_again,
}
KEEPING_EVENTS: dict[str, Callable[[MetadataStore], None]] = {
    "task_succeeded": lambda s: s.task_succeeded("t1"),
    "task_accessed": lambda s: s.task_accessed("t1"),
    "task_registered_again": lambda s: s.task_registered(task(url="https://other/")),
    "other_task_changes": change_another_task,
}


def verified_task(store: MetadataStore) -> None:
    for name in ("t1", "t2"):
        store.task_registered(task(name))
        store.piece_finished(name, piece(0))
        store.piece_finished(name, piece(1))
        store.task_succeeded(name)
        store.task_verified(name, f"fp-{name}")


@pytest.mark.parametrize("event", sorted(CLEARING_EVENTS))
def test_events_that_change_the_task_clear_its_fingerprint(
    store: MetadataStore, event: str
) -> None:
    verified_task(store)
    CLEARING_EVENTS[event](store)
    assert store.verified_fingerprint("t1") is None
    assert store.verified_fingerprint("t2") == "fp-t2"  # per task


@pytest.mark.parametrize("event", sorted(KEEPING_EVENTS))
def test_events_that_keep_the_fingerprint(store: MetadataStore, event: str) -> None:
    verified_task(store)
    KEEPING_EVENTS[event](store)
    assert store.verified_fingerprint("t1") == "fp-t1"


def test_failed_piece_finished_keeps_the_fingerprint_of_other_tasks(store: MetadataStore) -> None:
    verified_task(store)
    with pytest.raises(TaskNotFoundError):
        store.piece_finished("ghost", piece(0))
    assert [store.verified_fingerprint(n) for n in ("t1", "t2")] == ["fp-t1", "fp-t2"]


def test_fingerprint_calls_after_close_raise(store: MetadataStore) -> None:
    verified_task(store)
    store.close()
    with pytest.raises(StorageError):
        store.verified_fingerprint("t1")
    with pytest.raises(StorageError):
        store.task_verified("t1", "fp")


def other_handles(kind: str, path: Path) -> tuple[MetadataStore, MetadataStore]:
    """Two handles of the same records: two connections, or the fake twice."""
    if kind == "sqlite":
        return SqliteMetadataStore(path), SqliteMetadataStore(path)
    memory = MemoryMetadataStore()
    return memory, memory


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_others_changes_moves_when_another_handle_commits(kind: str, tmp_path: Path) -> None:
    mine, theirs = other_handles(kind, tmp_path / "metadata.db")
    mine.task_registered(task())
    seen = mine.others_changes()
    assert mine.others_changes() == seen  # nothing committed since
    theirs.piece_finished("t1", piece(0))
    moved = mine.others_changes()
    assert moved != seen
    mine.get_piece("t1", 0)
    assert mine.others_changes() == moved  # reads change nothing
    theirs.piece_dropped("t1", 0)
    assert mine.others_changes() != moved
    mine.close()
    theirs.close()
