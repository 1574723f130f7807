"""``verification.bad_pieces``: the same answer whether the pieces are hashed on one thread or
several (delivery's re-hash of a large file runs on several)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from damselfly.core.digests import piece_digest
from damselfly.storage import verification
from damselfly.storage.content import ContentFile
from damselfly.storage.metadata import PieceMeta

PIECE = 64 * 1024
DATA = os.urandom(9 * PIECE + 11)


def pieces() -> list[PieceMeta]:
    spans = [(n, n * PIECE, min(PIECE, len(DATA) - n * PIECE)) for n in range(10)]
    return [PieceMeta(n, off, ln, piece_digest(DATA[off : off + ln])) for n, off, ln in spans]


@pytest.mark.parametrize("parallel_from", [0, 1 << 40])
def test_bad_pieces_found_in_order_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel_from: int
) -> None:
    monkeypatch.setattr(verification, "PARALLEL_FROM_BYTES", parallel_from)
    monkeypatch.setattr(verification, "HASH_THREADS", 3)
    damaged = bytearray(DATA)
    damaged[7 * PIECE + 1] ^= 1
    damaged[2 * PIECE] ^= 1
    damaged[-1] ^= 1
    path = tmp_path / "f"
    path.write_bytes(damaged)
    hashed_on: set[str] = set()
    real = ContentFile.digest_at

    def recording(self: ContentFile, offset: int, length: int, *rest: object) -> str:
        hashed_on.add(threading.current_thread().name)
        return real(self, offset, length, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(ContentFile, "digest_at", recording)
    assert verification.bad_pieces_in(path, pieces()) == [2, 7, 9]
    on_workers = all(name.startswith("verify") for name in hashed_on)
    assert on_workers is (parallel_from == 0)
