"""What a delivery costs: hard link vs copy (or reflink) vs copy + re-hash of every piece.

    python bench/delivery/run.py DIR [--size-mib 1024] [--piece-mib 16]

Writes a random file of ``--size-mib`` in DIR, puts it in a ``Store`` as one task, then times
``Store.deliver`` with a hard link and with a copy (both re-hash every piece: the verification
of ``storage/verification.py``), and the bare kernel copy (``copy_file_range``) for
comparison. Prints one line per method; the figures go to ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from damselfly.storage.output import deliver_file
from damselfly.storage.store import Store

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--piece-mib", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        root = Path(work)
        task_id = fill_store(root / "store", args.size_mib * MiB, args.piece_mib * MiB)
        with Store(root / "store") as store:
            src = store.content_path(task_id)
            timed(
                "copy_file_range only",
                lambda d: deliver_file(src, d, overwrite=False, hard_link=False),
                root,
            )
            timed(
                "deliver: hard link + re-hash",
                lambda d: store.deliver(task_id, d, hard_link=True),
                root,
            )
            timed("deliver: copy + re-hash", lambda d: store.deliver(task_id, d), root)


def fill_store(root: Path, length: int, piece_length: int) -> str:
    task_id = "de" * 32
    with (
        Store(root) as store,
        store.open_task(
            task_id, url="bench://x", content_length=length, piece_length=piece_length
        ) as task,
    ):
        for number in range(task.piece_count):
            task.write_piece(number, os.urandom(min(piece_length, length - number * piece_length)))
        task.mark_succeeded()
    return task_id


def timed(name: str, deliver, root: Path) -> None:  # type: ignore[no-untyped-def]
    dest = root / "out.bin"
    started = time.perf_counter()
    deliver(dest)
    seconds = time.perf_counter() - started
    dest.unlink()
    print(f"{name:32s} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
