"""Two processes sharing one store root (dfget next to dfdaemon), and kill -9 durability."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from damselfly.storage.metadata import PieceMeta, TaskMeta, TaskState
from damselfly.storage.sqlite_metadata import SqliteMetadataStore
from damselfly.storage.store import Store

TASK_ID = "c9" * 32
PIECE = 64 * 1024
COUNT = 24
DATA = random.Random(7).randbytes(PIECE * COUNT - 999)

Spawn = Callable[..., subprocess.Popen[str]]

# argv: root, "wait" | "now", piece numbers (comma separated), "exit" | "hang"
CHILD = f"""
import random, sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from damselfly.storage.store import Store
root, start, numbers, end = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
data = random.Random(7).randbytes({PIECE} * {COUNT} - 999)
store = Store(Path(root))
task = store.open_task({TASK_ID!r}, url="https://x/f", content_length=len(data),
                       piece_length={PIECE})
print("ready", len(task.finished_pieces()), flush=True)
if start == "wait":
    sys.stdin.readline()
for n in map(int, filter(None, numbers.split(","))):
    task.write_piece(n, data[n * {PIECE}:(n + 1) * {PIECE}])
print("written", flush=True)
if end == "hang":
    sys.stdin.readline()
task.close()
store.close()
"""


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start child processes; kill any still running and close their pipes afterwards."""
    children: list[subprocess.Popen[str]] = []

    def start(root: Path, when: str, numbers: range, end: str = "exit") -> subprocess.Popen[str]:
        args = [sys.executable, "-c", CHILD, str(root), when, ",".join(map(str, numbers)), end]
        child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


def expect(child: subprocess.Popen[str], word: str) -> list[str]:
    assert child.stdout is not None
    line = child.stdout.readline().split()
    assert line[:1] == [word], f"child said {line!r}, expected {word!r}"
    return line


def finish(child: subprocess.Popen[str]) -> None:
    assert child.wait(timeout=20) == 0


def chunk(number: int) -> bytes:
    return DATA[number * PIECE : (number + 1) * PIECE]


def test_two_processes_write_different_pieces_of_one_task(tmp_path: Path, spawn: Spawn) -> None:
    children = [spawn(tmp_path, "wait", range(i, COUNT, 2)) for i in (0, 1)]
    for child in children:
        expect(child, "ready")
    for child in children:  # both have the task open; now write at the same time
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        expect(child, "written")
        finish(child)
    with (
        Store(tmp_path) as store,
        store.open_task(
            TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
        ) as task,
    ):
        assert task.finished_pieces() == frozenset(range(COUNT))
        assert task.read_range(0, len(DATA)) == DATA


@pytest.mark.parametrize("refresh", [True, False], ids=["refreshed", "succeeded-at-once"])
def test_second_process_joins_a_task_the_first_holds_open(
    tmp_path: Path, spawn: Spawn, refresh: bool
) -> None:
    with (
        Store(tmp_path) as store,
        store.open_task(
            TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
        ) as task,
    ):
        for number in range(10):
            task.write_piece(number, chunk(number))
        child = spawn(tmp_path, "now", range(10, COUNT))
        assert expect(child, "ready") == ["ready", "10"]  # saw and re-verified ours
        expect(child, "written")
        finish(child)
        assert task.read_piece(COUNT - 1) == chunk(COUNT - 1)  # one of theirs, looked up
        if refresh:  # the in-memory view reloads what another process recorded
            task.refresh()
            assert task.finished_pieces() == frozenset(range(COUNT))
        task.mark_succeeded()  # counted against the store, refreshed or not
        assert task.read_range(0, len(DATA)) == DATA


def test_kill_9_keeps_recorded_pieces_and_releases_the_pin(tmp_path: Path, spawn: Spawn) -> None:
    child = spawn(tmp_path, "now", range(5), end="hang")
    expect(child, "ready")
    expect(child, "written")
    with Store(tmp_path, quota_bytes=0) as other:
        assert other.collect_garbage(needed_bytes=1) == 0  # pinned by the live child
        assert other.get_task(TASK_ID) is not None
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    with Store(tmp_path) as store:
        with store.open_task(
            TASK_ID, url="https://x/f", content_length=len(DATA), piece_length=PIECE
        ) as task:
            assert task.finished_pieces() == frozenset(range(5))
            assert task.read_piece(4) == chunk(4)
        assert store.collect_garbage(needed_bytes=1) == len(DATA)  # pin died with the child
        assert store.get_task(TASK_ID) is None


def test_piece_finished_is_cheap(tmp_path: Path) -> None:
    meta = SqliteMetadataStore(tmp_path / "metadata.db")
    meta.task_registered(
        TaskMeta(TASK_ID, "https://x/", 1 << 40, PIECE, TaskState.RUNNING, None, 0.0, 0.0)
    )
    count = 2000
    started = time.perf_counter()
    for number in range(count):
        meta.piece_finished(TASK_ID, PieceMeta(number, number * PIECE, PIECE, "blake3:" + "0" * 64))
    rate = count / (time.perf_counter() - started)
    meta.close()
    assert rate > 1000, f"piece_finished: {rate:.0f}/s"  # ~20,000/s measured here
    assert os.path.getsize(tmp_path / "metadata.db") > 0
